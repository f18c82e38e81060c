"""Editing in the app: the tools, undo/redo, and the annotation store of the open case.

``install_editing(window)`` adds the Tools tool bar, the tool options, the Cases dock and the menu items,
and returns the ``EditingController``, which
- owns the ``ctseg_core.edit.History`` of the open case (undo/redo across tools and slices, changed voxels
  only, byte budget) and journals every committed step into the case (``Case.journal_append``);
- opens the scan's case in the workspace when a scan opens (``Workspace.open_case``) and loads the map to
  edit (``Case.load_for_editing``: recovered > final > prediction > empty), telling the user in the log
  when unsaved edits were recovered after a crash;
- saves ``final`` a few seconds after the last edit (a copy, written off the GUI thread, with
  ``journal_upto``), and at once on case switch, status change and exit; source files are never written;
- stores the model's prediction with the model's summary when an inference run finishes;
- sets the review status and the annotator (kept in QSettings).
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog
from shiboken6 import isValid

from ctseg_core.edit import History, PaintPolicy, ops
from ctseg_core.edit.history import DEFAULT_BUDGET_BYTES
from ctseg_core.errors import CtsegError
from ctseg_core.store import Workspace, default_root
from ctseg_core.volume import LabelMap
from app.session import FINAL, PREDICTION
from app.tools import create_tools
from app.tools.options import OptionsBar, ToolOptions
from app.workers import run_task

AUTOSAVE_MS = 3000
BRUSH_STEP = 1.25  # [ and ] scale the brush radius by this factor
REVIEW_STATUSES = {"in_review": "In review", "corrected": "Corrected", "approved": "Approved"}


def slices_around(labels, class_id: int, z: int) -> tuple[int, int] | None:
    """The two slices to interpolate ``class_id`` between around slice ``z``: the nearest slice holding the
    class at or below ``z`` and the nearest one above it (when ``z`` is the top annotated slice, the one
    below it and ``z``). None when there are not two such slices."""
    present = [int(s) for s in (labels == class_id).any(axis=(1, 2)).nonzero()[0]]
    below = [s for s in present if s <= z]
    above = [s for s in present if s > z]
    if below and above:
        return below[-1], above[0]
    if len(below) >= 2:
        return below[-2], below[-1]
    return None


class EditingController(QObject):
    case_opened = Signal(object)  # ctseg_core.store.Case or None
    cases_changed = Signal()  # a case was created, saved or its status changed
    history_changed = Signal()
    annotator_changed = Signal(str)
    saved = Signal(str)  # case id

    def __init__(self, window, workspace_root: str | Path | None = None, autosave_ms: int = AUTOSAVE_MS,
                 budget_bytes: int | None = None):
        super().__init__(window)
        self.window, self.session, self.settings = window, window.session, window.settings
        if budget_bytes is None:  # undo memory per case (QSettings editing/undo_budget_mb)
            budget_bytes = int(float(self.settings.value("editing/undo_budget_mb", DEFAULT_BUDGET_BYTES / 2**20))
                               * 2**20)
        self.budget_bytes = budget_bytes
        self.options = ToolOptions(self)
        self.tools = create_tools(self)
        self.workspace: Workspace | None = None
        self.case = None
        self._history: History | None = None
        self._labels: LabelMap | None = None  # the map the history edits (session.final when it was opened)
        self._changes = 0  # edits since the case was opened (apply, undo, redo ...)
        self._saved_changes = 0  # _changes when the last save copied the map
        self._save_idle = threading.Event()
        self._save_idle.set()
        self.autosave_timer = QTimer(self, singleShot=True, interval=autosave_ms)
        self.autosave_timer.timeout.connect(self._autosave)
        self.options.changed.connect(self._on_options)
        self._opening = False
        self.session.volume_changed.connect(self._on_volume)
        self.session.labels_changed.connect(self._on_labels_replaced)
        window.inference.finished.connect(self._on_inference_finished)
        self._hook_close(window)
        root = workspace_root or self.settings.value("workspace/root", "") or default_root()
        self.set_workspace(root, remember=False)

    # ---- history ----
    @property
    def history(self) -> History | None:
        """The undo history of the open map (rebuilt if the session's map was replaced)."""
        final = self.session.final
        if final is None:
            return None
        if self._history is None or self._history.labels is not final.array:
            self._new_history(final)
        return self._history

    def _new_history(self, labels: LabelMap) -> None:
        self._labels = labels
        journal = self._journal if self.case is not None else None
        self._history = History(labels.array, budget_bytes=self.budget_bytes, on_change=self._on_change,
                                journal=journal)
        self.history_changed.emit()

    def _journal(self, deltas) -> None:
        try:
            self.case.journal_append(deltas)
        except OSError as exc:
            self.session.log(f"could not write the edit journal ({exc}); edits are saved by the autosave only",
                             "error")

    def _on_change(self, box) -> None:
        self.session.notify_labels_edited(box)
        self._changes += 1
        self.autosave_timer.start()

    def policy(self) -> PaintPolicy:
        return PaintPolicy(self.options.mode, frozenset(self.session.locked_classes()))

    def apply_step(self, name: str, delta):
        """Apply one delta as one undo step called ``name``; returns its box (None if nothing changed)."""
        history = self.history
        if history is None or not delta:
            return None
        history.begin_stroke(name)
        box = history.apply(delta)
        history.commit()
        self.history_changed.emit()
        return box

    def commit(self) -> None:
        if self._history is not None:
            self._history.commit()
            self.history_changed.emit()

    def abort(self) -> None:
        if self._history is not None:
            self._history.abort()
            self.history_changed.emit()

    def undo(self):
        history = self.history
        box = history.undo() if history is not None else None
        self.history_changed.emit()
        return box

    def redo(self):
        history = self.history
        box = history.redo() if history is not None else None
        self.history_changed.emit()
        return box

    def fill_between_slices(self, z: int | None = None):
        """Interpolate the active class between the nearest annotated axial slices around slice ``z``."""
        history, cls = self.history, self.session.active_class
        if history is None:
            return None
        if cls == 0:
            self.session.log("fill between slices: choose a class (1-7) first", "warning")
            return None
        z = self.session.position[0] if z is None else z
        pair = slices_around(history.labels, cls, z)
        if pair is None:
            self.session.log(f"fill between slices: draw class {cls} on two slices around slice {z + 1} first",
                             "warning")
            return None
        spacing = self.session.volume.spacing
        box = self.apply_step("fill between slices",
                              ops.interpolate_slices(history.labels, cls, pair[0], pair[1], spacing,
                                                     policy=self.policy()))
        self.session.log(f"filled class {cls} between slices {pair[0] + 1} and {pair[1] + 1}")
        return box

    # ---- tools ----
    def select_tool(self, name: str | None) -> None:
        """Activate a registered tool by name ("navigate" or None: no tool)."""
        tool = self.tools.get(name) if name else None
        self.session.set_active_tool(tool)
        bar = getattr(self, "options_bar", None)
        if bar is not None:
            bar.show_for(tool)

    def escape(self) -> None:
        """Esc: abort the tool's stroke or polygon; else back to navigation; else cancel a running inference."""
        tool = self.session.active_tool
        if tool is not None and hasattr(tool, "escape") and tool.escape():
            return
        if tool is not None:
            self.select_tool(None)
        elif self.session.inference_running:
            self.window.cancel_inference()

    def _on_options(self) -> None:
        tool = self.session.active_tool
        if hasattr(tool, "refresh_outline"):
            tool.refresh_outline()

    # ---- the store ----
    @property
    def dirty(self) -> bool:
        return self._changes != self._saved_changes

    def set_workspace(self, root, remember: bool = True) -> None:
        """Use the workspace folder ``root`` (created if needed); the open scan's case is opened there."""
        self.flush()
        try:
            self.workspace = Workspace(root)
        except CtsegError as exc:
            self.workspace = None
            self.session.log(f"workspace unavailable: {exc}", "error")
        if remember and self.workspace is not None:
            self.settings.setValue("workspace/root", str(self.workspace.root))
        if self.workspace is not None:
            self.session.log(f"workspace: {self.workspace.root}")
        self.case = None
        if self.session.has_volume():
            self._open_case()
        self.cases_changed.emit()

    def _on_volume(self) -> None:
        self.flush()  # the previous case (its map is still held by the history)
        self.case, self._history, self._labels = None, None, None
        self._changes = self._saved_changes = 0
        self._open_case()

    def _open_case(self) -> None:
        session, ws = self.session, self.workspace
        self._changes = self._saved_changes = 0
        if ws is None or not session.has_volume():
            return
        volume = session.volume
        self._opening = True
        try:
            self._load_case(ws, volume)
        finally:
            self._opening = False

    def _load_case(self, ws, volume) -> None:
        session = self.session
        try:
            case = ws.open_case(volume, volume.meta.source_path or None)
            pending = len(case.journal)
            labels, origin = case.load_for_editing(volume)
        except (CtsegError, OSError) as exc:
            session.log(f"the scan has no case in the workspace, edits are not saved: {exc}", "error")
            self.case = None
            self._new_history(session.final)
            self.case_opened.emit(None)
            return
        self.case = case
        if origin in ("recovered", "final"):
            session.set_final(labels)
            self._show_stored_prediction(case, volume)
        elif origin == "prediction":  # the stored model output is the map to edit until a final exists
            session.final.array[:] = labels.array
            session.prediction.array[:] = labels.array
            session.labels_changed.emit(PREDICTION, None)
            session.labels_changed.emit(FINAL, None)
        self._new_history(session.final)
        what = {"recovered": "the final map with unsaved edits recovered", "final": "the saved final map",
                "prediction": f"the stored prediction ({case.record.model_version or 'model unknown'})",
                "empty": "an empty map"}[origin]
        session.log(f"case {case.id} ({case.record.status}): editing {what}")
        if origin == "recovered":
            session.log(f"recovered {pending} edit step(s) of case {case.id} that were not saved when the app "
                        "last closed; they are saved now", "warning")
            self._changes += 1
            QTimer.singleShot(0, self._autosave)
        self.case_opened.emit(case)
        self.cases_changed.emit()

    def _on_labels_replaced(self, which: str, box) -> None:
        """A whole new corrected map (e.g. File > Open label map): edit and save that one."""
        final = self.session.final
        if (which != FINAL or box is not None or self._opening or final is None or self._labels is None
                or final.array is self._labels.array):
            return
        self._new_history(final)
        if self.case is not None:
            self._changes += 1
            self.autosave_timer.start()
            self.session.log(f"the new label map replaces the corrected map of case {self.case.id} "
                             "(saved in a few seconds; earlier steps cannot be undone)")

    def _show_stored_prediction(self, case, volume) -> None:
        """The stored model output, for comparing with the corrections (Labels: prediction)."""
        try:
            prediction = case.load_prediction(volume)
        except (CtsegError, OSError) as exc:
            self.session.log(f"the stored prediction could not be read: {exc}", "warning")
            return
        if prediction is not None:
            self.session.prediction.array[:] = prediction.array
            self.session.labels_changed.emit(PREDICTION, None)

    def _autosave(self) -> None:
        if self.case is None or self._history is None or not self.dirty:
            return
        if self._history.in_stroke or not self._save_idle.is_set():
            self.autosave_timer.start()  # try again after the stroke / the running save
            return
        self._save(background=True)

    def _save(self, background: bool) -> None:
        case, version = self.case, self._changes
        copy = LabelMap(self._labels.array.copy(), self._labels.geometry)
        upto = case.journal.last_seq

        def job():
            try:
                case.save_final(copy, journal_upto=upto)
                self._saved_changes = version
            finally:
                self._save_idle.set()

        self._save_idle.clear()
        if background:
            run_task(job, lambda _: self._on_saved(case), self._on_save_failed)
        else:
            try:
                job()
            except (CtsegError, OSError) as exc:
                self.session.log(f"could not save case {case.id}: {exc}", "error")
                return
            self._on_saved(case)

    def _alive(self) -> bool:
        """False once the window (and this controller) is gone while a background job was finishing."""
        return isValid(self) and isValid(self.session)

    def _log(self, text: str, level: str = "info") -> None:
        if self._alive():
            self.session.log(text, level)

    def _on_saved(self, case) -> None:
        if not self._alive():
            return
        self.session.log(f"case {case.id} saved")
        self.saved.emit(case.id)
        self.cases_changed.emit()

    def _on_save_failed(self, error) -> None:
        self._log(f"autosave failed: {error.message()} (the edit journal still holds the edits)", "error")

    def wait_for_save(self, timeout: float | None = 30.0) -> bool:
        return self._save_idle.wait(timeout)

    def flush(self) -> None:
        """Save now if there are unsaved edits (case switch, status change, exit)."""
        self.autosave_timer.stop()
        self.wait_for_save()
        if self.case is None or self._history is None or not self.dirty:
            return
        if self._history.in_stroke:
            self._history.commit()
        self._save(background=False)

    def save_now(self) -> None:
        """File > Save labels now: write the map even when nothing changed since the last save."""
        if self.case is not None and self._history is not None and not self.dirty:
            self._changes += 1
        self.flush()

    def _on_inference_finished(self, labels) -> None:
        case, volume = self.case, self.session.volume
        if case is None or volume is None or labels.shape != volume.shape:
            return
        copy = LabelMap(labels.copy(), volume.geometry)
        version = self.session.model_summary or "unknown model"
        run_task(lambda: case.save_prediction(copy, version),
                 lambda _: self._log(f"prediction stored in case {case.id}"),
                 lambda e: self._log(f"could not store the prediction: {e.message()}", "error"))

    # ---- review ----
    @property
    def annotator(self) -> str:
        return str(self.settings.value("review/annotator", "") or "")

    def set_annotator(self, name: str) -> None:
        self.settings.setValue("review/annotator", name.strip())
        self.annotator_changed.emit(name.strip())

    def set_status(self, status: str) -> None:
        if self.case is None:
            self.session.log("no case is open", "warning")
            return
        self.flush()
        try:
            self.case.set_status(status, self.annotator)
        except CtsegError as exc:
            self.session.log(str(exc), "error")
            return
        self.session.log(f"case {self.case.id}: {status.replace('_', ' ')}"
                         + (f" by {self.annotator}" if self.annotator else ""))
        self.cases_changed.emit()

    def request_status(self, status: str) -> None:
        """Set the status from the menu / case panel: ask for the annotator's name first if none is known."""
        if not self.annotator and getattr(self.window, "interactive", False):
            _ask_annotator(self.window, self)
        self.set_status(status)

    def open_record(self, record) -> None:
        """Open a case of the workspace (its source scan)."""
        if self.case is not None and record.id == self.case.id:
            return
        self.window.open_path(record.source.path, series_uid=record.source.series_uid or None)

    def open_next_unreviewed(self) -> None:
        """Open the oldest case still "new", other than the open one."""
        records = self.workspace.cases() if self.workspace is not None else []
        open_id = self.case.id if self.case is not None else None
        record = next((r for r in records if r.status == "new" and r.id != open_id), None)
        if record is None:
            self.session.log("no unreviewed case left in the workspace")
            return
        self.open_record(record)

    def _hook_close(self, window) -> None:
        """Save when the window closes (wraps its closeEvent; an event filter returning bools from Python
        corrupts the refcount of False in this PySide6 version and aborts the interpreter at exit)."""
        original = window.closeEvent

        def close_event(ev):
            self.flush()
            original(ev)

        window.closeEvent = close_event


# ---------------------------------------------------------------- installing into the main window
def _add(window, menu, text: str, slot, shortcuts=()) -> QAction:
    action = QAction(text, window)
    action.setShortcuts([QKeySequence(s) for s in shortcuts])
    action.triggered.connect(lambda *_: slot())
    menu.addAction(action)
    return action


def _take_over_escape(window, controller) -> QAction:
    """Esc belongs to the editor (abort stroke, leave tool) and falls back to cancelling inference."""
    esc = QKeySequence("Esc")
    for action in window.findChildren(QAction):
        if esc in action.shortcuts():
            action.setShortcuts([s for s in action.shortcuts() if s != esc])
            action.setText(action.text().split("\t")[0])
    action = QAction("Abort stroke / navigate", window)
    action.setShortcut(esc)
    action.triggered.connect(lambda *_: controller.escape())
    return action


def install_editing(window, workspace_root: str | Path | None = None) -> EditingController:
    """Add editing to a MainWindow: tool bars, Cases dock, Edit / Review / File menu items."""
    from app.panels.cases_panel import CasesPanel
    from app.tools.toolbar import ToolBar

    c = EditingController(window, workspace_root)
    window.editing = c
    c.toolbar = ToolBar(c, window)
    c.options_bar = OptionsBar(c.options, window)
    window.addToolBar(Qt.TopToolBarArea, c.toolbar)
    window.addToolBar(Qt.TopToolBarArea, c.options_bar)
    c.options_bar.show_for(None)
    c.cases_panel = CasesPanel(c)
    c.cases_dock = window.add_dock(c.cases_panel, "Cases", Qt.LeftDockWidgetArea)
    window.resizeDocks([c.cases_dock], [330], Qt.Horizontal)
    window.menu("&View").addAction(c.cases_dock.toggleViewAction())

    edit = window.menu("&Edit")
    c.undo_action = _add(window, edit, "Undo", c.undo, ("Ctrl+Z",))
    c.redo_action = _add(window, edit, "Redo", c.redo, ("Ctrl+Shift+Z", "Ctrl+Y"))
    edit.addSeparator()
    tools_menu = edit.addMenu("Tool")
    for action in c.toolbar.group.actions():
        tools_menu.addAction(action)
    c.escape_action = _take_over_escape(window, c)
    edit.addAction(c.escape_action)
    classes = edit.addMenu("Active class")
    for action in c.toolbar.class_actions:
        classes.addAction(action)
    edit.addSeparator()
    c.interpolate_action = _add(window, edit, "Fill between slices (active class)", c.fill_between_slices, ("I",))
    _add(window, edit, "Larger brush", lambda: c.options.grow_brush(BRUSH_STEP), ("]",))
    _add(window, edit, "Smaller brush", lambda: c.options.grow_brush(1 / BRUSH_STEP), ("[",))
    c.threshold_action = _add(window, edit, "HU limit on/off", lambda: c.options.set(threshold=not c.options.threshold),
                              ("T",))

    file = window.menu("&File")
    quit_action = next((a for a in file.actions() if a.text().replace("&", "").startswith("Quit")), None)
    for text, slot, keys in (("Set workspace...", lambda: _ask_workspace(window, c), ()),
                             ("Save labels now", c.save_now, ("Ctrl+S",))):
        action = QAction(text, window)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.triggered.connect(lambda *_, s=slot: s())
        file.insertAction(quit_action, action) if quit_action is not None else file.addAction(action)

    review = window.menu("&Review")
    for status, title in REVIEW_STATUSES.items():
        _add(window, review, f"Mark as {title.lower()}", lambda s=status: c.request_status(s))
    review.addSeparator()
    _add(window, review, "Annotator name...", lambda: _ask_annotator(window, c))
    _add(window, review, "Open next unreviewed case", c.open_next_unreviewed, ("Ctrl+N",))

    c.history_changed.connect(lambda: _update_undo_actions(c))
    _update_undo_actions(c)
    return c


def _update_undo_actions(c: EditingController) -> None:
    h = c._history
    c.undo_action.setEnabled(bool(h and h.can_undo))
    c.redo_action.setEnabled(bool(h and h.can_redo))
    c.undo_action.setText(f"Undo {h.undo_name}" if h and h.can_undo else "Undo")
    c.redo_action.setText(f"Redo {h.redo_name}" if h and h.can_redo else "Redo")


def _ask_workspace(window, c: EditingController) -> None:
    start = str(c.workspace.root) if c.workspace is not None else str(default_root())
    folder = QFileDialog.getExistingDirectory(window, "Workspace folder", start)
    if folder:
        c.set_workspace(folder)


def _ask_annotator(window, c: EditingController) -> None:
    name, ok = QInputDialog.getText(window, "Annotator", "Your name (stored with the review status):",
                                    text=c.annotator)
    if ok:
        c.set_annotator(name)
