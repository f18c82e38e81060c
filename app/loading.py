"""Opening scans off the GUI thread: scan a DICOM folder, let the user pick a series when there are
several, load the volume with progress, then hand it to the session (and log what the loader did)."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QProgressDialog

from ctseg_core.errors import LoadError
from ctseg_core.io import load_volume, resolve_scan_path
from ctseg_core.scan_info import loader_summary
from app.workers import TaskError, run_task


def _scan_folder(folder: str):
    """The folder's series (None when the DICOM scanner is not available)."""
    try:
        from ctseg_core.io.dicom import scan_folder
    except ImportError:
        return None
    return scan_folder(folder)


class ScanOpener(QObject):
    opened = Signal(str)  # the path, after session.set_volume
    failed = Signal(object)  # TaskError
    progress = Signal(int, int, str)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.busy = False
        self._dialog: QProgressDialog | None = None
        self._t0 = 0.0

    def open(self, path: str, series_uid: str | None = None, parent_widget=None) -> None:
        """Open ``path``; with ``parent_widget`` a progress dialog and, if needed, a series picker are shown."""
        if self.busy:
            self.session.log("a scan is already being opened; wait for it to finish", "warning")
            return
        self.busy = True
        self._t0 = time.perf_counter()
        self._parent = parent_widget
        self.session.log(f"opening {path}")
        try:
            where = resolve_scan_path(path)  # a missing path is an error, never its parent folder
        except LoadError as exc:
            self._fail(TaskError(exc, ""))
            return
        if where.kind == "dicom" and series_uid is None and where.file is None:
            run_task(lambda: _scan_folder(str(where.folder)), lambda scan: self._on_scanned(path, scan), self._fail)
        else:
            self._load(path, series_uid)  # an image file, a named series, or a DICOM file: its own series

    def _on_scanned(self, path: str, scan) -> None:
        if scan is None:  # no series scanner: let the loader decide
            self._load(path, None)
            return
        series = list(scan.series)
        if not series:
            self._fail(TaskError(LoadError("no DICOM image series found in this folder", path), ""))
            return
        skipped = getattr(scan, "skipped", None) or []
        if skipped:
            self.session.log(f"{len(skipped)} files in {path} skipped (not DICOM images)")
        recommended = scan.selected()
        uid = recommended.series_uid if recommended is not None else None
        if len(series) > 1:
            self.session.log(f"{len(series)} series in {path}; recommended: "
                             f"{recommended.description if recommended else 'none'}")
            if self._parent is not None:
                from app.panels.series_dialog import SeriesDialog

                dialog = SeriesDialog(scan, path, self._parent)
                if dialog.exec() != QDialog.Accepted:
                    self.busy = False
                    self.session.log("opening cancelled")
                    return
                uid = dialog.chosen_uid()
        if uid is None:
            self._fail(TaskError(LoadError("no series could be chosen (no axial CT series found)", path), ""))
            return
        self._load(path, uid)

    def _load(self, path: str, series_uid: str | None) -> None:
        if self._parent is not None:
            self._dialog = QProgressDialog("Loading scan...", None, 0, 100, self._parent)
            self._dialog.setMinimumDuration(300)
            self._dialog.setAutoClose(True)
        run_task(lambda progress: load_volume(path, series_uid=series_uid, progress=progress),
                 lambda vol: self._on_loaded(path, vol), self._fail, self._on_progress)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if self._dialog is not None and total > 0:
            self._dialog.setMaximum(total)
            self._dialog.setValue(done)
            if message:
                self._dialog.setLabelText(message)
        self.progress.emit(done, total, message)

    def _close_dialog(self) -> None:
        if self._dialog is not None:
            self._dialog.reset()
            self._dialog.deleteLater()
            self._dialog = None

    def _on_loaded(self, path: str, volume) -> None:
        self._close_dialog()
        self.busy = False
        self.session.set_volume(volume)
        shape, sp = volume.shape, volume.spacing
        self.session.log(f"opened {volume.meta.description or path}: {shape[2]} x {shape[1]} x {shape[0]} voxels, "
                         f"spacing {sp[2]:.3f} x {sp[1]:.3f} x {sp[0]:.3f} mm "
                         f"({time.perf_counter() - self._t0:.2f} s)")
        for note in volume.meta.notes:
            self.session.log(f"loader: {note}", "warning")
        changed = loader_summary(volume)
        if changed:
            self.session.notify(f"This scan was changed on loading: {changed}. Details: the Scan panel.")
        self.opened.emit(path)

    def _fail(self, error: TaskError) -> None:
        self._close_dialog()
        self.busy = False
        self.failed.emit(error)
