"""Measurements in the app: midline shift, lesion list, prior comparison and the report, wired into the window.

``install_measurements(window)`` adds the Lesions dock (``app.panels.lesions_panel``), the midline /
thickness overlay on the axial view (``app.viewer.measurement_overlay``), the prior comparison window
(``app.comparison``) and the actions: View > Show midline and thickness, View > Next / Previous lesion
(N, Shift+N), File > Write report..., File > Compare with prior scan... It returns the
``MeasurementsController``, which recomputes ``ctseg_core.measure.measure_scan`` for the displayed labels
off the GUI thread (debounced, one at a time, latest wins) and writes reports in a worker.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog

from ctseg_core.measure import measure_scan
from ctseg_core.volume import LabelMap
from app.panels.lesions_panel import LesionsPanel
from app.session import FINAL
from app.viewer.measurement_overlay import MeasurementOverlay
from app.workers import run_task

DEBOUNCE_MS = 500


class MeasurementsController(QObject):
    updated = Signal(object)  # ScanMeasurements of the displayed labels
    report_written = Signal(object)  # ctseg_core.report.ReportFiles
    report_failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window, self.session = window, window.session
        self.measurements = None
        self.busy = False
        self._again = False
        self.comparison = None
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        s = self.session
        self._source = s.show_source  # the label map the last computation measured
        s.labels_changed.connect(lambda which, box: self.schedule() if which == s.show_source else None)
        s.display_changed.connect(lambda: self.schedule() if s.show_source != self._source else None)
        s.volume_changed.connect(self._on_volume)

    @property
    def pending(self) -> bool:
        return self.busy or self._timer.isActive()

    def _on_volume(self) -> None:
        self.measurements = None
        self.schedule()

    def schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def recompute(self) -> None:
        labels = self.session.displayed_labels()
        volume = self.session.volume
        if labels is None or volume is None:
            return
        if self.busy:
            self._again = True
            return
        self.busy = True
        snapshot = LabelMap(labels.array.copy(), labels.geometry)
        source = self._source = self.session.show_source
        run_task(lambda: (volume, measure_scan(volume, snapshot, source=source, scan=volume.meta.description)),
                 self._on_result, self._on_error)

    def _on_result(self, result) -> None:
        self.busy = False
        volume, measurements = result
        if self._again:
            self._again = False
            self.recompute()
        if volume is not self.session.volume:
            return  # a result for a scan that is no longer open
        self.measurements = measurements
        self.updated.emit(measurements)

    def _on_error(self, error) -> None:
        self.busy = False
        self.session.log(f"measurements failed: {error.message()}", "error")

    # ---- report ----
    def model_name(self) -> str:
        """The name and version of the model that made the shown prediction (else the active one), or "" """
        model = self.session.prediction_model or self.session.model
        return model.label if model is not None else ""

    def write_report(self, folder: str) -> None:
        """Write the report folder for the displayed labels in a worker (with the change since the prior when a
        comparison is open)."""
        from ctseg_core.report import write_report

        volume, labels = self.session.volume, self.session.displayed_labels()
        if volume is None or labels is None:
            return
        snapshot = LabelMap(labels.array.copy(), labels.geometry)
        growth = None if self.comparison is None else self.comparison.growth
        model = self.model_name()
        source = "model prediction (not reviewed)" if self.session.show_source != FINAL else "final (reviewed) labels"
        scan = volume.meta.description or volume.meta.source_path
        self.session.log(f"writing the report into {folder}...")
        run_task(lambda: write_report(folder, volume, snapshot, model_version=model or None, model=model, scan=scan,
                                      labels_source=source, growth=growth),
                 self._on_report, lambda e: (self.session.log(f"report failed: {e.message()}", "error"),
                                             self.report_failed.emit(e.message())))

    def _on_report(self, files) -> None:
        written = [p.name for p in (files.html, files.json, files.csv, files.seg, files.sr) if p is not None]
        self.session.log(f"report written to {files.html.parent}: " + ", ".join(written))
        for note in files.notes:
            self.session.log(note, "warning")
        self.report_written.emit(files)

    def ask_report(self) -> None:
        if not self.session.has_volume():
            return
        folder = QFileDialog.getExistingDirectory(self.window, "Write the report into folder")
        if folder:
            self.write_report(folder)

    # ---- comparison ----
    def comparison_window(self):
        from app.comparison import ComparisonWindow

        if self.comparison is None:
            self.comparison = ComparisonWindow(self.window)
        return self.comparison

    def ask_compare(self) -> None:
        if not self.session.has_volume():
            return
        win = self.comparison_window()
        win.show()
        win.raise_()
        win.ask_prior()


def install_measurements(window) -> MeasurementsController:
    c = MeasurementsController(window)
    window.measurements = c
    c.panel = LesionsPanel(window.session)
    c.dock = window.add_dock(c.panel, "Lesions", tabify_with=getattr(window, "findings_dock", None))
    c.overlay = MeasurementOverlay(window.views["axial"])
    c.updated.connect(lambda m: c.panel.show_measurements(m, reviewed=window.session.show_source == FINAL))
    c.updated.connect(lambda m: c.overlay.set_midline(m.midline))
    c.panel.lesion_activated.connect(c.overlay.set_lesion)
    c.panel.report_requested.connect(c.ask_report)
    c.panel.compare_requested.connect(c.ask_compare)
    view = window.menu("&View")
    view.addAction(c.dock.toggleViewAction())
    c.show_action = _action(window, view, "Show midline and thickness", c.overlay.set_visible, "Ctrl+M", checkable=True)
    c.next_action = _action(window, view, "Next lesion", lambda: c.panel.step(+1), "N")
    c.previous_action = _action(window, view, "Previous lesion", lambda: c.panel.step(-1), "Shift+N")
    file = window.menu("&File")
    c.report_action = _action(window, file, "Write report (HTML, DICOM SR)...", c.ask_report)
    exporter = getattr(window, "exporter", None)
    if exporter is not None and exporter.menu is not None:  # File > Export lists the report too
        exporter.menu.addSeparator()
        exporter.menu.addAction(c.report_action)
    c.compare_action = _action(window, file, "Compare with prior scan...", c.ask_compare)
    return c


def _action(window, menu, text: str, slot, shortcut: str | None = None, checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.WindowShortcut)
    if checkable:
        action.setCheckable(True)
        action.setChecked(True)
        action.toggled.connect(slot)
    else:
        action.triggered.connect(lambda *_: slot())
    menu.addAction(action)
    return action
