"""File > Export: the corrected labels as DICOM SEG or NIfTI, the findings as CSV or JSON.

``Exporter`` asks for a destination (``window.ask_save_path``; tests replace it), writes in a worker
through ``ctseg_core.export.export_result`` (the same code as ``ctseg export``) and says what it wrote:
a message box in the interactive app, always the log and the ``exported`` signal. A SEG marks the
segments as made by the model that made the prediction and then corrected; the findings carry the
model's confidence per class, each class's origin and the case's review state.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMessageBox

from ctseg_core.export import FORMATS, export_result
from ctseg_core.volume import LabelMap
from app.workers import TaskError, run_task


class Exporter(QObject):
    exported = Signal(str, str)  # (format key, path written)
    failed = Signal(str, object)  # (format key, TaskError)

    def __init__(self, window):
        super().__init__(window)
        self.window, self.session = window, window.session
        self.actions: dict[str, QAction] = {}
        self.menu: QMenu | None = None
        self.busy = False

    def build_menu(self, parent_menu: QMenu) -> QMenu:
        """File > Export with one action per format (other modules may add theirs, e.g. a report)."""
        self.menu = parent_menu.addMenu("Export")
        for key, fmt in FORMATS.items():
            action = QAction(f"{fmt.title}...", self.window)
            action.triggered.connect(lambda *_, k=key: self.ask(k))
            self.menu.addAction(action)
            self.actions[key] = action
        self.menu.aboutToShow.connect(self._update_actions)
        self.session.volume_changed.connect(self._update_actions)
        self._update_actions()
        return self.menu

    def _update_actions(self) -> None:
        s = self.session
        for action in self.actions.values():
            action.setEnabled(s.has_volume() and not self.busy)
        seg = self.actions.get("dicom-seg")
        if seg is not None and s.has_volume() and not s.volume.meta.extra.get("sop_instance_uids"):
            seg.setEnabled(False)
            seg.setToolTip("the scan was not loaded from DICOM: export NIfTI instead")
        elif seg is not None:
            seg.setToolTip("the corrected labels as a DICOM SEG referencing the source series")

    # ---- asking ----
    def suggested_name(self, key: str) -> str:
        s = self.session
        store = getattr(getattr(self.window, "editing", None), "store", None)
        base = store.case.id if store is not None and store.case is not None else \
            (s.volume.meta.description or Path(s.volume.meta.source_path or "scan").name)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("_") or "scan"
        stem = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.mha)$", "", stem)
        kind = "labels" if key in ("dicom-seg", "nifti") else "findings"
        return f"{stem}_{kind}{FORMATS[key].suffix}"

    def ask(self, key: str) -> None:
        if not self.session.has_volume():
            return
        fmt = FORMATS[key]
        folder = str(self.window.settings.value("export/folder", "") or Path.home())
        path = self.window.ask_save_path(f"Export {fmt.title.lower()}", str(Path(folder) / self.suggested_name(key)),
                                         fmt.file_filter)
        if path:
            self.window.settings.setValue("export/folder", str(Path(path).parent))
            self.export(key, path)

    # ---- writing ----
    def export(self, key: str, path: str) -> None:
        """Write the corrected labels (or their findings) as ``key`` to ``path`` in a worker."""
        if not self.session.has_volume() or self.busy:
            return
        job, labels = self._job(key, path)
        self.busy = True
        run_task(job, lambda out: self._done(key, str(out), labels), lambda e: self._failed(key, e))

    def export_now(self, key: str, path: str) -> Path:
        """The same, on the calling thread (scripts and tests); errors are raised."""
        job, _ = self._job(key, path)
        return job()

    def _job(self, key: str, path: str):
        """A function writing a snapshot of the open case (taken now, on the GUI thread)."""
        from ctseg_core.findings import reviewed_findings

        s = self.session
        labels = LabelMap(s.final.array.copy(), s.final.geometry)
        has_prediction = bool(s.predicted_slices.any())
        prediction = s.prediction.array.copy() if has_prediction else None
        uncertainty = s.uncertainty.copy() if has_prediction else None
        model = s.prediction_model.label if has_prediction and s.prediction_model is not None else ""
        review = self.window.findings_panel.review_text
        volume, scan = s.volume, s.volume.meta.source_path or s.volume.meta.description
        store = getattr(getattr(self.window, "editing", None), "store", None)
        annotator = store.annotator if store is not None else None

        def job():
            findings = None
            if key in ("csv", "json"):
                findings = reviewed_findings(labels, prediction, uncertainty, model=model, review=review,
                                             source="final (corrected)", scan=scan)
            return export_result(key, path, labels, volume, model_version=model or None, findings=findings,
                                 scan=scan, annotator=annotator)

        return job, labels

    def _done(self, key: str, path: str, labels) -> None:
        import numpy as np

        from ctseg_core.labels import CLASSES

        self.busy = False
        present = [CLASSES[int(c)].key.upper() for c in np.unique(labels.array) if c]
        what = "the corrected labels" if key in ("dicom-seg", "nifti") else "the findings of the corrected labels"
        text = (f"Exported {what} as {FORMATS[key].title.split(' as ')[-1]} to {path}"
                + (f" (classes: {', '.join(present)})" if present else " (no class is labelled)"))
        self.session.log(text)
        self.window.statusBar().showMessage(text, 10000)
        if self.window.interactive:
            box = QMessageBox(QMessageBox.Information, "Export finished", text, QMessageBox.Ok, self.window)
            box.setWindowModality(Qt.NonModal)
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.show()
        self.exported.emit(key, path)

    def _failed(self, key: str, error: TaskError) -> None:
        self.busy = False
        self.window.show_error(f"Could not export {FORMATS[key].title.lower()}", error)
        self.failed.emit(key, error)
