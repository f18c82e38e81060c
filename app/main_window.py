"""The main window: assembles views, docks, menus and actions; the work is done elsewhere.

- ``Session`` (app.session) holds the case; views and panels read from it.
- ``ModelRunner`` (app.model_runner) loads and runs the model (its own thread), with progress and cancel.
- ``app.loading.ScanOpener`` opens scans off the GUI thread.
Other modules hook in with ``add_dock``, ``menu(name)`` and ``session.set_active_tool``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMenu, QMessageBox,
                               QSplitter, QVBoxLayout, QWidget)

from ctseg_core.windowing import PRESETS
from app.exporting import Exporter
from app.loading import ScanOpener
from app.panels.classes_panel import ClassesPanel
from app.panels.findings_panel import FindingsPanel
from app.panels.log_panel import LogPanel
from app.panels.notice_bar import NoticeBar
from app.panels.scan_panel import ScanPanel
from app.panels.window_bar import WindowBar
from app.session import Session
from app.viewer.slice_view import SliceView, describe_voxel
from app.viewer.triage_strip import TriageStrip
from app.viewer.volume_view import VolumeView
from app.model_menu import install_model_menu
from app.model_runner import CANCEL_SHORTCUT, ModelRunner
from app.workers import TaskError

MAX_RECENT = 10
PRESET_KEYS = {"brain": ("F1", "Alt+1"), "subdural": ("F2", "Alt+2"), "stroke": ("F3", "Alt+3"), "bone": ("F4", "Alt+4")}


class MainWindow(QMainWindow):
    pipeline_done = Signal(str)  # after opening a scan: "inferred", "stored", "no model", "not run", "failed", "cancelled"
    about_to_close = Signal()  # the window is closing: save, stop background work (before the model thread ends)

    def __init__(self, model_path: str | None = None, auto_infer: bool | None = None, enable_3d: bool = True,
                 settings: QSettings | None = None, interactive: bool = True):
        super().__init__()
        self.settings = settings or QSettings("ctseg", "ctseg-app")
        self.interactive = interactive  # False: no modal dialogs (series picker takes the recommendation)
        self._auto_override = auto_infer  # from the command line; not stored in the settings
        self.session = Session(self)
        self.model = ModelRunner(self.session, self.settings, self)
        self.inference = self.model.controller  # the inference thread's controller (signals: finished, ...)
        self.opener = ScanOpener(self.session, self)
        self.exporter = Exporter(self)
        self.error_boxes: list[QMessageBox] = []

        self._build_views()
        self._build_docks(enable_3d)
        self._build_status_bar()
        self._build_menus()
        from app.help import install_help

        install_help(self)
        self._connect()
        self.setAcceptDrops(True)
        self.resize(1600, 1000)
        self._update_title()
        self.model.load_model(model_path)

    # ---- assembly ----
    def _build_views(self) -> None:
        self.views = {name: SliceView(self.session, name) for name in ("axial", "coronal", "sagittal")}
        side = QSplitter(Qt.Vertical)
        side.addWidget(self.views["coronal"])
        side.addWidget(self.views["sagittal"])
        self.triage_strip = TriageStrip(self.session)  # shown when a triage model (RADnet) gave slice probabilities
        axial = QWidget()
        row = QHBoxLayout(axial)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.views["axial"], 1)
        row.addWidget(self.triage_strip)
        main = QSplitter(Qt.Horizontal)
        main.addWidget(axial)
        main.addWidget(side)
        main.setStretchFactor(0, 2)
        main.setStretchFactor(1, 1)
        main.setSizes([700, 350])
        self._side, self._main_splitter = side, main
        self.notice_bar = NoticeBar(self.session)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.notice_bar)
        layout.addWidget(main, 1)
        self.setCentralWidget(central)
        self.window_bar = WindowBar(self.session, self)
        self.addToolBar(Qt.TopToolBarArea, self.window_bar)
        self.maximised = None  # the view shown alone ("3d" for the 3-D view), or None

    def add_dock(self, widget: QWidget, title: str, area=Qt.RightDockWidgetArea, tabify_with: QDockWidget | None = None
                 ) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower())
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        if tabify_with is not None:
            self.tabifyDockWidget(tabify_with, dock)
        return dock

    def _build_docks(self, enable_3d: bool) -> None:
        self.classes_panel = ClassesPanel(self.session)
        self.findings_panel = FindingsPanel(self.session)
        self.log_panel = LogPanel(self.session)
        self.scan_panel = ScanPanel(self.session)
        self.volume_view = VolumeView(self.session, enabled=enable_3d and self.settings.value("view/3d", True, bool))
        self.classes_dock = self.add_dock(self.classes_panel, "Classes")
        self.findings_dock = self.add_dock(self.findings_panel, "Findings")
        self.volume_dock = self.add_dock(self.volume_view, "3D")
        self.log_dock = self.add_dock(self.log_panel, "Log", Qt.BottomDockWidgetArea)
        self.scan_dock = self.add_dock(self.scan_panel, "Scan", Qt.LeftDockWidgetArea)
        self.resizeDocks([self.classes_dock, self.findings_dock, self.volume_dock], [250, 400, 300], Qt.Vertical)
        self.resizeDocks([self.log_dock], [120], Qt.Vertical)
        self.resizeDocks([self.classes_dock], [460], Qt.Horizontal)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_label = QLabel()
        self.cursor_label = QLabel()
        bar.addWidget(self.cursor_label, 1)
        bar.addPermanentWidget(self.model.progress_text)
        bar.addPermanentWidget(self.model.progress)
        bar.addPermanentWidget(self.model.cancel_button)
        bar.addPermanentWidget(self.model_label)
        self._on_model_summary("")

    def menu(self, name: str) -> QMenu:
        """The top-level menu called ``name`` (created if new: at the end of the menu bar, before Help)."""
        bar = self.menuBar()
        for action in bar.actions():
            if action.menu() is not None and action.text().replace("&", "") == name.replace("&", ""):
                return action.menu()
        help_action = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
        if help_action is None:
            return bar.addMenu(name)
        menu = QMenu(name, bar)
        bar.insertMenu(help_action, menu)
        return menu

    def _action(self, menu: QMenu, text: str, slot, shortcut=None, checkable=False, checked=False) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcuts([QKeySequence(s) for s in (shortcut if isinstance(shortcut, tuple) else (shortcut,))])
            action.setShortcutContext(Qt.ApplicationShortcut)
        if checkable:
            action.setCheckable(True)
            action.setChecked(checked)
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        file = self.menu("&File")
        self._action(file, "Open DICOM folder...", self.ask_open_folder, "Ctrl+D")
        self._action(file, "Open image file (NIfTI, NRRD, MHA)...", self.ask_open_file, QKeySequence.Open)
        self._action(file, "Open label map (corrected labels)...", self.ask_open_labels, "Ctrl+Shift+O")
        self.recent_menu = file.addMenu("Open recent")
        self._fill_recent_menu()
        file.addSeparator()
        self.exporter.build_menu(file)
        self._action(file, "Save screenshot...", self.ask_screenshot)
        file.addSeparator()
        self._action(file, "Quit", self.close, QKeySequence.Quit)

        view = self.menu("&View")
        window = view.addMenu("Window")
        self.preset_actions = {}
        for name, keys in PRESET_KEYS.items():
            w = PRESETS[name]
            self.preset_actions[name] = self._action(
                window, f"{name.capitalize()} (L {w.level:g} / W {w.width:g})",
                lambda n=name: self.session.set_window_preset(n), keys)
        self._action(view, "Reset zoom", self.reset_zoom, "Ctrl+0")
        self.outline_action = self._action(view, "Outline labels", self.session.set_outline, "Ctrl+Shift+L", True)
        self.uncertainty_action = self._action(view, "Show model uncertainty", self.session.set_show_uncertainty,
                                               "Ctrl+U", True)
        self.labels_action = self._action(view, "Show labels (overlay)", self.session.set_show_labels, "S", True,
                                          self.session.show_labels)
        self._action(view, "Labels more transparent", lambda: self.session.set_opacity(self.session.opacity - 0.1),
                     "A")
        self._action(view, "Labels more opaque", lambda: self.session.set_opacity(self.session.opacity + 0.1), "D")
        self._action(view, "Show the axial view alone / all views", lambda: self.toggle_maximised("axial"), "Ctrl+1")
        self._action(view, "Show the 3-D view alone / all views", lambda: self.toggle_maximised("3d"), "Ctrl+3")
        view.addSeparator()
        for dock in (self.classes_dock, self.findings_dock, self.volume_dock, self.log_dock, self.scan_dock):
            view.addAction(dock.toggleViewAction())

        model = self.menu("&Model")
        self._action(model, "Load model checkpoint...", self.ask_load_model)
        self.run_action = self._action(model, "Run model on this scan (re-run keeps the result until done)",
                                       self.run_inference, "Ctrl+R")
        self.cancel_action = self._action(model, "Cancel inference", self.cancel_inference, CANCEL_SHORTCUT)
        self._action(model, "Run automatically when a scan opens", self._set_auto_infer,
                     checkable=True, checked=self.auto_infer)
        self.bundled_model_actions = install_model_menu(self)  # Model > Bundled model (aa_unet, BLAST-CT)

    def _connect(self) -> None:
        s = self.session
        s.model_changed.connect(self._on_model_summary)
        s.volume_changed.connect(self._update_title)
        s.display_changed.connect(self._sync_view_actions)
        for name, v in self.views.items():
            v.cursor_moved.connect(self._on_cursor)
            v.maximise_requested.connect(lambda n=name: self.toggle_maximised(n))
        self.volume_view.maximise_requested.connect(lambda: self.toggle_maximised("3d"))
        self.model.done.connect(self.pipeline_done)
        self.model.error.connect(self.show_error)
        self.findings_panel.class_activated.connect(self.go_to_class)
        self.findings_panel.rerun_requested.connect(self.run_inference)
        self.opener.opened.connect(self._on_scan_opened)
        self.opener.failed.connect(self._on_open_failed)

    # ---- opening scans ----
    @property
    def auto_infer(self) -> bool:
        if self._auto_override is not None:
            return self._auto_override
        return self.settings.value("inference/auto", True, bool)

    def _set_auto_infer(self, on: bool) -> None:
        self._auto_override = None
        self.settings.setValue("inference/auto", bool(on))

    def open_path(self, path, series_uid: str | None = None) -> None:
        """Open a DICOM folder (series picker if several) or an image file, off the GUI thread."""
        self.opener.open(str(path), series_uid, self if self.interactive else None)

    def ask_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._last_dir())
        if folder:
            self.open_path(folder)

    def ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image file", self._last_dir(),
                                              "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;All files (*)")
        if path:
            self.open_path(path)

    def ask_open_labels(self) -> None:
        if not self.session.has_volume():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open label map", self._last_dir(),
                                              "Label maps (*.nii *.nii.gz *.nrrd *.mha);;All files (*)")
        if path:
            self.open_labels(path)

    def open_labels(self, path: str) -> bool:
        """Show a label file (on this scan's grid) as the corrected map; inference will not overwrite it."""
        from ctseg_core.errors import CtsegError
        from ctseg_core.io.images import read_labels

        try:
            self.session.set_final(read_labels(path, like=self.session.volume))
        except CtsegError as exc:
            self.show_error("Could not open the label map", TaskError(exc, ""))
            return False
        self.session.log(f"labels from {path} shown as the corrected map")
        return True

    def _last_dir(self) -> str:
        recent = self.recent_files()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _add_recent(self, path: str) -> None:
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            self.recent_menu.addAction(path, lambda p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def _on_scan_opened(self, path: str) -> None:
        self._add_recent(path)
        self.views["axial"].setFocus()
        if self.auto_infer:
            self.model.request_run(reuse_stored=True)
        else:
            self.session.log("automatic inference is off (Model menu): viewing only")
            self.pipeline_done.emit("not run")

    def _on_open_failed(self, error: TaskError) -> None:
        self.show_error("Could not open the scan", error)
        self.pipeline_done.emit("failed")

    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev):
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_path(paths[0])

    # ---- model ----
    @property
    def model_state(self) -> str:
        return self.model.state

    def load_model(self, path: str | None) -> None:
        """Load a checkpoint in the inference thread (None: the configured or the bundled default model)."""
        self.model.load_model(path)

    def load_predictor(self, predictor) -> None:
        """Use an already built predictor (anything with .card.summary() and .predict(...))."""
        self.model.load_predictor(predictor)

    def ask_load_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model checkpoint", "", "Checkpoints (*.safetensors)")
        if path:
            self.settings.setValue("model/path", path)
            self.settings.setValue("model/members", 0)
            self.model.load_model(path)

    def run_inference(self) -> None:
        self.model.run()

    def cancel_inference(self) -> None:
        self.model.cancel()

    def _on_model_summary(self, summary: str) -> None:
        self.model_label.setText(f"Model: {summary} · not for clinical use" if summary else "No model: viewer only")
        self.model_label.setToolTip(summary or "no model is loaded; load one from the Model menu")
        self._update_title()

    # ---- view actions ----
    def go_to_class(self, class_id: int) -> bool:
        """Move the crosshair to the slice where ``class_id`` covers the largest area (its centre there)."""
        labels = self.session.displayed_labels()
        if labels is None:
            return False
        mask = labels.array == class_id
        areas = mask.sum(axis=(1, 2))
        if not areas.any():
            return False
        k = int(np.argmax(areas))
        js, is_ = np.nonzero(mask[k])
        self.session.set_position(k, int(np.median(js)), int(np.median(is_)))
        return True

    def go_to_largest_finding(self) -> bool:
        labels = self.session.displayed_labels()
        if labels is None:
            return False
        counts = np.bincount(labels.array.ravel(), minlength=256)[1:]
        visible = self.session.class_visible
        counts[[c - 1 for c in range(1, len(visible)) if not visible[c]]] = 0  # hidden labels (e.g. oedema)
        return bool(counts.any()) and self.go_to_class(int(np.argmax(counts)) + 1)

    def reset_zoom(self) -> None:
        for v in self.views.values():
            v.reset_zoom()

    def toggle_maximised(self, which: str) -> None:
        """Show one slice view (or "3d") alone in the window; the same again (or another) restores all."""
        target = None if self.maximised == which else which
        if self.maximised == "3d" or target == "3d":
            self._show_3d_alone(target == "3d")
        for name, view in self.views.items():
            view.setVisible(target in (None, "3d") or name == target)
        self._side.setVisible(target in (None, "3d", "coronal", "sagittal"))
        self.maximised = target

    def _show_3d_alone(self, alone: bool) -> None:
        """The 3-D dock takes the whole window (the slice views and other docks hide), or gives it back."""
        if alone:
            self._layout_before = self.saveState()  # dock places, sizes and visibility
            for dock in self.findChildren(QDockWidget):
                if dock is not self.volume_dock:
                    dock.hide()
            self.centralWidget().hide()
            self.volume_dock.show()
        else:
            self.centralWidget().show()
            self.restoreState(self._layout_before)

    def _sync_view_actions(self) -> None:
        for action, value in ((self.outline_action, self.session.outline),
                              (self.uncertainty_action, self.session.show_uncertainty),
                              (self.labels_action, self.session.show_labels)):
            if action.isChecked() != value:
                action.blockSignals(True)
                action.setChecked(value)
                action.blockSignals(False)

    def _on_cursor(self, voxel) -> None:
        if voxel is None or not self.session.has_volume():
            self.cursor_label.setText("")
        else:
            self.cursor_label.setText(describe_voxel(self.session.volume, *voxel))

    def _update_title(self, *_) -> None:
        scan = self.session.volume.meta.description or Path(self.session.volume.meta.source_path).name \
            if self.session.has_volume() else "no scan"
        model = self.session.model_summary or "no model"
        reader = getattr(self, "reader_title", "")  # set by app.editing: the reader's name and map
        self.setWindowTitle(f"ctseg - {scan} - model: {model}" + (f" - reader: {reader}" if reader else ""))

    # ---- export ----
    def export_findings(self, path: str) -> None:
        """Write the findings of the corrected labels (CSV, or JSON for a .json name) now."""
        self.exporter.export_now("json" if str(path).lower().endswith(".json") else "csv", path)
        self.session.log(f"findings written to {path}")

    def ask_save_path(self, title: str, suggested: str, file_filter: str) -> str:
        """A destination chosen by the user ("" when cancelled)."""
        path, _ = QFileDialog.getSaveFileName(self, title, suggested, file_filter)
        return path

    def save_screenshot(self, path: str) -> None:
        """The window as a PNG, with the 3-D scene painted in (a plain grab cannot read OpenGL pixels)."""
        pixmap = self.grab()
        scene = self.volume_view.snapshot()
        if scene is not None:
            from PySide6.QtCore import QPoint, QRect
            from PySide6.QtGui import QPainter

            widget = self.volume_view.vtk_widget
            painter = QPainter(pixmap)
            painter.drawImage(QRect(widget.mapTo(self, QPoint(0, 0)), widget.size()), scene)
            painter.end()
        if not pixmap.save(str(path)):
            raise OSError(f"could not write {path}")

    def ask_screenshot(self) -> None:
        path = self.ask_save_path("Save screenshot", "ctseg.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    # ---- errors ----
    def show_error(self, title: str, error: TaskError) -> None:
        """A readable, non-blocking dialog plus the details in the log (never a crash)."""
        self.session.log(f"{title}: {error.message()}", "error")
        if not error.expected and error.traceback:
            self.session.log(error.traceback, "error")
        box = QMessageBox(QMessageBox.Warning if error.expected else QMessageBox.Critical, title, error.message(),
                          QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose, False)
        box.setWindowModality(Qt.NonModal)
        self.error_boxes.append(box)
        box.show()

    def closeEvent(self, ev):
        self.about_to_close.emit()
        self.model.shutdown()
        super().closeEvent(ev)
