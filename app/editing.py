"""Editing in the app: the tools, undo/redo, and the wiring into the main window.

``install_editing(window)`` adds the Tools tool bar, the tool options, the Cases dock and the menu items,
and returns the ``EditingController``, which owns the ``ctseg_core.edit.History`` of the open map
(undo/redo across tools and slices, changed voxels only, byte budget; every committed step is journaled
into the case) and the tools (``app.tools``). Its ``store`` (``app.case_store.CaseStore``) is the open
scan's case in the workspace: loading, recovery, autosave, review status.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QLabel

from ctseg_core.edit import History, PaintPolicy, ops
from ctseg_core.edit.history import DEFAULT_BUDGET_BYTES
from ctseg_core.store import default_root
from app.case_store import AUTOSAVE_MS, CaseStore
from app.session import FINAL
from app.tools import create_tools
from app.tools.options import BRUSH_STEP, OptionsBar, ToolOptions

REVIEW_STATUSES = {"in_review": "In review", "corrected": "Corrected", "approved": "Approved"}
REVIEWED_STATUSES = ("corrected", "adjudicated", "approved")  # a person has looked at every finding


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
    history_changed = Signal()

    def __init__(self, window, workspace_root: str | Path | None = None, autosave_ms: int = AUTOSAVE_MS,
                 budget_bytes: int | None = None):
        super().__init__(window)
        self.window, self.session = window, window.session
        if budget_bytes is None:  # undo memory per case (QSettings editing/undo_budget_mb)
            budget_bytes = int(float(window.settings.value("editing/undo_budget_mb", DEFAULT_BUDGET_BYTES / 2**20))
                               * 2**20)
        self.budget_bytes = budget_bytes
        self.options = ToolOptions(self)
        self.tools = create_tools(self)
        self._history: History | None = None
        self._labels = None  # the LabelMap the history edits (session.final when it was made)
        self.read_only = ""  # why the open case cannot be edited ("" when it can): no history, no tools
        self.options.changed.connect(self._on_options)
        self.session.labels_changed.connect(self._on_labels_replaced)
        self.store = CaseStore(self, autosave_ms)
        self.store.set_workspace(workspace_root or self.store.configured_root(), remember=False)

    # ---- history ----
    @property
    def history(self) -> History | None:
        """The undo history of the open map; None while a new scan's map is not yet taken over (the old
        history keeps the previous case's map until the store has saved it)."""
        final = self.session.final
        if final is None or self.read_only:
            return None
        if self._history is None:
            self.reset_history()
        elif self._history.labels is not final.array:
            return None
        return self._history

    def reset_history(self) -> None:
        """A fresh history on the session's corrected map, journaled into the open case."""
        self._labels = self.session.final
        self._history = None if self._labels is None else History(
            self._labels.array, budget_bytes=self.budget_bytes, on_change=self._on_change, journal=self.store.journal)
        self.history_changed.emit()

    def read_only_changed(self, why: str) -> None:
        """The store opened the case read-only (another program edits it) or editable again."""
        was, self.read_only = self.read_only, why
        if why:
            self.select_tool(None)
        bar = getattr(self, "toolbar", None)
        if bar is not None:
            bar.group.setEnabled(not why)
        label = getattr(self, "read_only_label", None)
        if label is not None:
            label.setText(f"READ-ONLY: {why.removeprefix('read-only: ')}" if why else "")
            label.setVisible(bool(why))
        take = getattr(self, "take_over_action", None)
        if take is not None:
            take.setEnabled(bool(why))
        if why and not was and hasattr(self.window, "show_error"):
            from ctseg_core.errors import CaseLockedError
            from app.workers import TaskError

            self.window.show_error("Case open read-only", TaskError(CaseLockedError(
                f"{why}. You can look at the case; edits, status changes and model results are not saved. "
                "Review > Take over the case makes it editable here (the other program then stops saving)."), ""))
        self.history_changed.emit()

    def forget_history(self) -> None:
        self._history, self._labels = None, None
        self.history_changed.emit()

    @property
    def edited_map(self):
        """The LabelMap the history edits (the previous scan's until the new case is open), or None."""
        return self._labels

    @property
    def in_stroke(self) -> bool:
        return self._history is not None and self._history.in_stroke

    def _on_change(self, box) -> None:
        self.session.notify_labels_edited(box)
        self.store.note_change()

    def _on_labels_replaced(self, which: str, box) -> None:
        """A whole new corrected map (e.g. File > Open label map): edit and save that one."""
        final = self.session.final
        if (which != FINAL or box is not None or self.store.opening or final is None or self._labels is None
                or final.array is self._labels.array):
            return
        self.reset_history()
        self.store.map_replaced()

    def step_names(self) -> tuple[str | None, str | None]:
        """Names of the steps undo and redo would take back (None: nothing to undo / redo)."""
        h = self._history
        return (h.undo_name if h and h.can_undo else None, h.redo_name if h and h.can_redo else None)

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

    def fill_between_slices(self, z: int | None = None, pair: tuple[int, int] | None = None):
        """Interpolate the active class between two axial slices: ``pair`` (0-based), or the nearest
        annotated slices around slice ``z`` (default: the current slice)."""
        history, cls = self.history, self.session.active_class
        if history is None:
            return None
        if cls == 0:
            self.session.log("fill between slices: choose a class (1-7) first", "warning")
            return None
        z = self.session.position[0] if z is None else z
        pair = slices_around(history.labels, cls, z) if pair is None else tuple(sorted(pair))
        if pair is None:
            self.session.log(f"fill between slices: draw class {cls} on two slices around slice {z + 1} first",
                             "warning")
            return None
        spacing = self.session.volume.spacing
        try:
            delta = ops.interpolate_slices(history.labels, cls, pair[0], pair[1], spacing, policy=self.policy())
        except ValueError as exc:
            self.session.log(f"fill between slices: {exc}", "warning")
            return None
        box = self.apply_step("fill between slices", delta)
        self.session.log(f"filled class {cls} between slices {pair[0] + 1} and {pair[1] + 1}")
        return box

    # ---- tools ----
    def select_tool(self, name: str | None) -> None:
        """Activate a registered tool by name ("navigate" or None: no tool)."""
        tool = self.tools.get(name) if name else None
        self.session.set_active_tool(tool)
        for view in self.window.views.values():
            view.graphics.viewport().setCursor(Qt.CrossCursor if tool is not None else Qt.ArrowCursor)
        bar = getattr(self, "options_bar", None)
        if bar is not None:
            bar.show_for(tool)

    def escape(self) -> None:
        """Esc: abort the tool's stroke or polygon; else back to navigation. It never cancels inference
        (that has its own button and shortcut, so that closing a popup cannot throw away a model run)."""
        tool = self.session.active_tool
        if tool is not None and hasattr(tool, "escape") and tool.escape():
            return
        if tool is not None:
            self.select_tool(None)

    def tell(self, text: str) -> None:
        """A short message for the user about a tool's click (status bar and log)."""
        self.window.statusBar().showMessage(text, 5000)
        self.session.log(text)

    def _on_options(self) -> None:
        tool = self.session.active_tool
        if hasattr(tool, "refresh_outline"):
            tool.refresh_outline()

    def request_status(self, status: str) -> None:
        """Set the status from the menu / case panel: ask for the annotator's name first if none is known."""
        if not self.store.annotator and getattr(self.window, "interactive", False):
            _ask_annotator(self.window, self)
        self.store.set_status(status)


# ---------------------------------------------------------------- installing into the main window
def _add(window, menu, text: str, slot, shortcuts=()) -> QAction:
    action = QAction(text, window)
    action.setShortcuts([QKeySequence(s) for s in shortcuts])
    action.triggered.connect(lambda *_: slot())
    menu.addAction(action)
    return action


def _escape_action(window, controller) -> QAction:
    """Esc belongs to the editor (abort stroke, leave tool), in the main window only: Esc in a dialog or
    message box closes that popup and nothing else."""
    action = QAction("Abort stroke or leave the tool", window)
    action.setShortcut(QKeySequence("Esc"))
    action.setShortcutContext(Qt.WindowShortcut)
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
    c.read_only_label = QLabel()
    c.read_only_label.setStyleSheet("QLabel { color: white; background: #b00020; padding: 2px 8px; font-weight: bold; }")
    c.read_only_label.setVisible(False)
    window.statusBar().addPermanentWidget(c.read_only_label)
    c.cases_panel = CasesPanel(c.store, c.request_status)
    c.cases_dock = window.add_dock(c.cases_panel, "Cases", Qt.LeftDockWidgetArea,
                                   tabify_with=getattr(window, "scan_dock", None))
    c.cases_dock.raise_()
    window.resizeDocks([c.cases_dock], [330], Qt.Horizontal)
    window.menu("&View").addAction(c.cases_dock.toggleViewAction())

    edit = window.menu("&Edit")
    c.undo_action = _add(window, edit, "Undo", c.undo, ("Ctrl+Z",))
    c.redo_action = _add(window, edit, "Redo", c.redo, ("Ctrl+Shift+Z", "Ctrl+Y"))
    edit.addSeparator()
    tools_menu = edit.addMenu("Tool")
    for action in c.toolbar.group.actions():
        tools_menu.addAction(action)
    c.escape_action = _escape_action(window, c)
    edit.addAction(c.escape_action)
    classes = edit.addMenu("Active class")
    for action in c.toolbar.class_actions:
        classes.addAction(action)
    edit.addSeparator()
    c.interpolate_action = _add(window, edit, "Fill between slices around this one (active class)",
                                c.fill_between_slices, ("I",))
    _add(window, edit, "Fill between chosen slices...", lambda: _ask_slices(window, c), ("Shift+I",))
    _add(window, edit, "Larger brush", lambda: c.options.grow_brush(BRUSH_STEP), ("]",))
    _add(window, edit, "Smaller brush", lambda: c.options.grow_brush(1 / BRUSH_STEP), ("[",))
    c.threshold_action = _add(window, edit, "HU limit on/off", lambda: c.options.set(threshold=not c.options.threshold),
                              ("T",))

    file = window.menu("&File")
    quit_action = next((a for a in file.actions() if a.text().replace("&", "").startswith("Quit")), None)
    for text, slot, keys in (("Set workspace...", lambda: _ask_workspace(window, c), ()),
                             ("Save labels now", c.store.save_now, ("Ctrl+S",))):
        action = QAction(text, window)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.triggered.connect(lambda *_, s=slot: s())
        file.insertAction(quit_action, action) if quit_action is not None else file.addAction(action)

    review = window.menu("&Review")
    for status, title in REVIEW_STATUSES.items():
        _add(window, review, f"Mark as {title.lower()}", lambda s=status: c.request_status(s))
    review.addSeparator()
    _add(window, review, "Reader name...", lambda: _ask_annotator(window, c))
    _add(window, review, "Open next case (where the model is least sure)", c.store.open_next_unreviewed, ("Ctrl+N",))
    review.addSeparator()
    c.take_over_action = _add(window, review, "Take over the case (it is open read-only)",
                              lambda: _ask_take_over(window, c))
    c.take_over_action.setEnabled(bool(c.read_only))
    from app.review_keys import install_review_keys

    install_review_keys(window, c)

    for signal in (c.store.case_opened, c.store.cases_changed):
        signal.connect(lambda *_: _show_review_state(window, c.store))
    c.history_changed.connect(lambda: _update_undo_actions(c))
    _update_undo_actions(c)
    c.read_only_changed(c.store.read_only)
    return c


def _show_review_state(window, store) -> None:
    """Findings of a case a person marked corrected, adjudicated or approved are shown as reviewed."""
    case = store.case
    status = case.record.status if case is not None else "new"
    reviewed = status in REVIEWED_STATUSES
    who = f" by {case.record.annotator}" if case is not None and case.record.annotator else ""
    window.findings_panel.set_review(reviewed, f"{status.replace('_', ' ')}{who}" if reviewed else "not reviewed")


def _update_undo_actions(c: EditingController) -> None:
    undo, redo = c.step_names()
    c.undo_action.setEnabled(undo is not None)
    c.redo_action.setEnabled(redo is not None)
    c.undo_action.setText(f"Undo {undo}" if undo else "Undo")
    c.redo_action.setText(f"Redo {redo}" if redo else "Redo")


def _ask_workspace(window, c: EditingController) -> None:
    ws = c.store.workspace
    folder = QFileDialog.getExistingDirectory(window, "Workspace folder", str(ws.root if ws else default_root()))
    if folder:
        c.store.set_workspace(folder)


def _ask_slices(window, c: EditingController) -> None:
    if not c.session.has_volume():
        return
    n, here = c.session.volume.shape[0], c.session.position[0] + 1
    first, ok = QInputDialog.getInt(window, "Fill between slices", "From axial slice:", max(1, here - 1), 1, n)
    if not ok:
        return
    last, ok = QInputDialog.getInt(window, "Fill between slices", "To axial slice:", min(n, here + 1), 1, n)
    if ok:
        c.fill_between_slices(pair=(first - 1, last - 1))


def _ask_take_over(window, c: EditingController) -> None:
    """Take the case lock over; when its owner still looks alive, only after the user confirms."""
    case = c.store.case
    if case is None or not c.read_only:
        return
    from ctseg_core.store.lock import is_stale, lock_path

    owner, path = case.lock_owner(), lock_path(case.folder, case.reader)
    if owner is not None and not is_stale(path, owner) and getattr(window, "interactive", False):
        from PySide6.QtWidgets import QMessageBox

        answer = QMessageBox.question(window, "Take over the case",
                                      f"{owner.describe()} is editing this case and its lock is fresh. Take it "
                                      "over anyway? That program will stop saving this case.")
        if answer != QMessageBox.Yes:
            return
    c.store.take_over()


def _ask_annotator(window, c: EditingController) -> None:
    name, ok = QInputDialog.getText(window, "Reader", "Your name (recorded with every edit, save and status "
                                    "change; empty: the system account):", text=c.store.stored_reader)
    if ok:
        c.store.set_annotator(name)
