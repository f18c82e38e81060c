"""Prior / follow-up comparison: an earlier scan of the patient beside the open one, aligned, with the change.

``ComparisonWindow`` opens the prior (a DICOM folder or image file, with a label file or its reviewed labels
from the workspace), registers it rigidly onto the open scan in a worker (``ctseg_core.measure.growth``:
mutual information on the skull), resamples it onto the open scan's grid and shows both axial views side
by side. The cursors are linked: both views show the same place (same slice, same crosshair), and the
window level follows. Below: per-class and per-lesion volume change, new lesions, and the ICH expansion
criterion (growth > 6 mL or > 33 %) flagged. A different patient ID is said, not refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QFileDialog, QHeaderView, QLabel, QSplitter, QTableWidgetItem, QVBoxLayout, QWidget)

from ctseg_core.measure.growth import ICH_GROWTH_FRACTION, ICH_GROWTH_ML, compare_scans, resample_to
from ctseg_core.volume import LabelMap, Volume
from app.session import Session
from app.viewer.slice_view import SliceView
from app.workers import run_task
from app.panels.tables import read_only_table

FLAG = QColor(255, 90, 90)
COLUMNS = ["Class", "Lesion", "Prior (mL)", "Follow-up (mL)", "Change (mL)", "Change", "Status"]


def load_prior(path: str, labels_path: str | None, workspace) -> tuple[Volume, LabelMap, str]:
    """(volume, labels, where the labels came from) of the prior scan: the label file when given, else its
    case's reviewed (final) labels in the workspace."""
    from ctseg_core.errors import CtsegError
    from ctseg_core.io import load_volume
    from ctseg_core.io.images import read_labels

    volume = load_volume(path)
    if labels_path:
        return volume, read_labels(labels_path, like=volume), Path(labels_path).name
    if workspace is not None:
        from ctseg_core.store.source import describe_source

        case = workspace.find(describe_source(volume, path))
        labels = None if case is None else case.load_final(volume)
        if labels is not None:
            return volume, labels, f"workspace case {case.id} (final labels)"
    raise CtsegError("no labels for the prior scan: choose a label file, or review it in the workspace first", path)


def align_prior(prior: Volume, prior_labels: LabelMap, follow_up: Volume, follow_up_labels: LabelMap):
    """(growth, prior HU and prior labels on the follow-up's grid): the worker's job."""
    growth = compare_scans(prior, prior_labels, follow_up, follow_up_labels)
    hu = resample_to(follow_up.geometry, prior, growth.registration).astype(np.float32)
    labels = resample_to(follow_up.geometry, prior, growth.registration, labels=True, array=prior_labels.array)
    return growth, hu, labels.astype(np.uint8)


class ComparisonWindow(QWidget):
    aligned = Signal(object)  # Growth, once the prior is aligned and shown
    failed = Signal(str)

    def __init__(self, window):
        super().__init__(None, Qt.Window)
        self.setWindowTitle("ctseg - compare with prior scan")
        self.main = window
        self.session = window.session
        self.prior_session = Session(self)
        self.growth = None
        self._linking = False
        self._note = self._source = ""  # patient-ID remark and where the prior's labels came from
        self.prior_view = SliceView(self.prior_session, "axial")
        self.follow_view = SliceView(self.session, "axial")
        self.status = QLabel("Choose the prior scan.")
        self.status.setWordWrap(True)
        self.table = read_only_table(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        views = QSplitter(Qt.Horizontal)
        views.addWidget(self._titled(self.prior_view, "Prior"))
        views.addWidget(self._titled(self.follow_view, "Follow-up (the open scan)"))
        below = QWidget()
        bl = QVBoxLayout(below)
        bl.setContentsMargins(4, 4, 4, 4)
        bl.addWidget(self.status)
        bl.addWidget(self.table)
        split = QSplitter(Qt.Vertical)
        split.addWidget(views)
        split.addWidget(below)
        split.setSizes([600, 220])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self.resize(1400, 900)
        self.session.position_changed.connect(self._follow_moved)
        self.prior_session.position_changed.connect(self._prior_moved)
        self.session.window_changed.connect(self.prior_session.set_window)

    @staticmethod
    def _titled(view, title: str) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QLabel(title)
        head.setStyleSheet("color: #eee; background: #333; padding: 2px 6px; font-weight: bold;")
        lay.addWidget(head)
        lay.addWidget(view, 1)
        return w

    # ---- linked cursors ----
    def _follow_moved(self, k: int, j: int, i: int) -> None:
        if not self._linking and self.prior_session.has_volume():
            self._linking = True
            self.prior_session.set_position(k, j, i)
            self._linking = False

    def _prior_moved(self, k: int, j: int, i: int) -> None:
        if not self._linking:
            self._linking = True
            self.session.set_position(k, j, i)
            self._linking = False

    # ---- opening the prior ----
    def ask_prior(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Prior scan: DICOM folder (cancel to choose an image file)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Prior scan: image file", "",
                                                  "Images (*.nii *.nii.gz *.nrrd *.mha);;All files (*)")
        if not path:
            return
        labels, _ = QFileDialog.getOpenFileName(self, "Labels of the prior (cancel: its reviewed labels in the "
                                                "workspace)", str(Path(path).parent),
                                                "Label maps (*.nii *.nii.gz *.nrrd *.mha);;All files (*)")
        self.open_prior(path, labels or None)

    def open_prior(self, path: str, labels_path: str | None = None) -> None:
        store = getattr(getattr(self.main, "editing", None), "store", None)
        workspace = getattr(store, "workspace", None)
        self.status.setText(f"Loading {path}...")
        run_task(lambda: load_prior(path, labels_path, workspace), lambda r: self.show_prior(r[0], r[1], r[2]),
                 self._on_error)

    def show_prior(self, prior: Volume, prior_labels: LabelMap, source: str = "") -> None:
        """Align ``prior`` (with its labels) onto the open scan in a worker, then show it."""
        follow = self.session.volume
        labels = self.session.displayed_labels()
        if follow is None or labels is None:
            self._on_error("open the follow-up scan first")
            return
        snapshot = LabelMap(labels.array.copy(), labels.geometry)
        note = ""
        pid_a, pid_b = prior.meta.patient_id, follow.meta.patient_id
        if pid_a and pid_b and pid_a != pid_b:
            note = f" Patient IDs differ ({pid_a} vs {pid_b}): chosen by you."
        self.status.setText("Aligning the prior with this scan (rigid registration on the skull)..." + note)
        self._note = note
        self._source = source
        run_task(lambda: align_prior(prior, prior_labels, follow, snapshot),
                 lambda r: self._on_aligned(prior, *r), self._on_error)

    def _on_aligned(self, prior: Volume, growth, hu: np.ndarray, labels: np.ndarray) -> None:
        follow = self.session.volume
        if follow is None or hu.shape != follow.shape:
            return  # the open scan changed meanwhile
        self.growth = growth
        meta = prior.meta
        self.prior_session.set_volume(Volume(hu, follow.geometry, meta))
        self.prior_session.set_final(LabelMap(labels, follow.geometry))
        self.prior_session.set_window(self.session.window.level, self.session.window.width)
        self.prior_session.set_position(*self.session.position)
        self.prior_view.reset_zoom()
        self._fill_table(growth)
        reg = growth.registration
        crit = f"growth > {ICH_GROWTH_ML:g} mL or > {100 * ICH_GROWTH_FRACTION:.0f} %"
        verdict = "MET" if growth.ich_expansion else "not met"
        self.status.setText(f"Prior: {meta.description or meta.source_path} ({self._source}). Aligned: rotation "
                            f"{reg.angle_deg:.1f} deg, translation {np.linalg.norm(reg.translation):.1f} mm. "
                            f"ICH expansion ({crit}): {verdict}. New lesions: {len(growth.new_lesions)}." + self._note)
        self.status.setStyleSheet("color: #ff5a5a;" if growth.ich_expansion or growth.new_lesions else "")
        self.aligned.emit(growth)

    def _fill_table(self, growth) -> None:
        rows = []
        for c in growth.classes:
            if c.prior_ml or c.follow_up_ml:
                rows.append((c.key.upper(), "all", c.prior_ml, c.follow_up_ml, c.change_ml, c.change_pct,
                             "expansion" if c.expansion else "", c.expansion))
        for les in growth.lesions:
            name = f"{les.prior or '-'} -> {les.follow_up or '-'}"
            rows.append((les.key.upper(), name, les.prior_ml, les.follow_up_ml, les.change_ml, les.change_pct,
                         les.status + (", expansion" if les.expansion else ""), les.expansion or les.status == "new"))
        self.table.setRowCount(len(rows))
        for r, (cls, lesion, a, b, d, pct, status, flag) in enumerate(rows):
            cells = [cls, lesion, f"{a:.2f}", f"{b:.2f}", f"{d:+.2f}", "" if pct is None else f"{pct:+.0f} %", status]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if 2 <= col <= 5:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if flag and col == 6:
                    item.setForeground(FLAG)
                self.table.setItem(r, col, item)

    def _on_error(self, error) -> None:
        text = error if isinstance(error, str) else error.message()
        self.status.setText(f"Could not compare: {text}")
        self.status.setStyleSheet("color: #ff5a5a;")
        self.session.log(f"comparison failed: {text}", "error")
        self.failed.emit(text)
