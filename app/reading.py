"""Several readers in the app: who reads, their own map, adjudication, agreement and the audit log.

``install_reading(window, editing)`` adds to the Review menu: Double reading in this workspace (each
reader edits their own map of a case; ``Workspace.double_reading``), Start my reading from... (the
prediction, empty, or another reader's map), Finish my reading, Adjudicate... (``AdjudicationView``),
Edit my own map again (after redrawing the final map), Agreement statistics..., Audit log...; and shows the
reader, and which map they edit, in the title bar and the status bar. The reader's name comes from
``ctseg-app --reader``, Review > Reader name... or the operating system account (``CaseStore.annotator``).
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QLabel

from ctseg_core.errors import CtsegError
from ctseg_core.store.readers import ReaderCase, readers_of


class Reading(QObject):
    def __init__(self, window, editing):
        super().__init__(window)
        self.window, self.editing, self.store = window, editing, editing.store
        self.dialogs = []  # open non-modal dialogs (kept alive)
        self.label = QLabel()
        self.label.setStyleSheet("QLabel { padding: 0 6px; }")
        window.statusBar().addPermanentWidget(self.label)
        review = window.menu("&Review")
        review.addSeparator()
        self.double_action = QAction("Double reading in this workspace (each reader's own map)", window)
        self.double_action.setCheckable(True)
        self.double_action.toggled.connect(self.set_double_reading)
        review.addAction(self.double_action)
        self.start_action = self._add(review, "Start my reading from...", self.ask_start)
        self.finish_action = self._add(review, "Finish my reading", lambda: self.store.set_status("done"))
        self.adjudicate_action = self._add(review, "Adjudicate...", self.open_adjudication)
        self.own_map_action = self._add(review, "Edit my own map again", lambda: self.store.reopen(editing_final=False))
        review.addSeparator()
        self._add(review, "Agreement statistics...", self.open_agreement)
        self._add(review, "Audit log...", self.open_audit)
        for signal in (self.store.case_opened, self.store.annotator_changed, self.store.cases_changed):
            signal.connect(lambda *_: self.update())
        self.update()

    def _add(self, menu, text: str, slot) -> QAction:
        action = QAction(text, self.window)
        action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        return action

    # ---- state shown ----
    def what_i_edit(self) -> str:
        case = self.store.case
        if case is None:
            return ""
        if isinstance(case, ReaderCase):
            return "own map" + ("" if case.started else ", not saved yet")
        return "final map, adjudicating" if self.store.double_reading else "final map"

    def update(self) -> None:
        name, what, double = self.store.annotator, self.what_i_edit(), self.store.double_reading
        self.window.reader_title = f"{name} ({what})" if what else name
        self.window._update_title()
        self.label.setText(f"Reader: {name}" + (f" · {what}" if what else ""))
        self.label.setToolTip("your name as a reader (Review > Reader name...); recorded with every edit, save "
                              "and status change")
        self.double_action.blockSignals(True)
        self.double_action.setChecked(double)
        self.double_action.blockSignals(False)
        mine = isinstance(self.store.case, ReaderCase)
        self.start_action.setEnabled(mine and not self.store.case.started and not self.store.read_only)
        self.finish_action.setEnabled(mine and self.store.case.started and not self.store.read_only)
        self.adjudicate_action.setEnabled(double and self.store.case is not None)
        self.own_map_action.setEnabled(double and self.store.editing_final)

    # ---- actions ----
    def set_double_reading(self, on: bool) -> None:
        ws = self.store.workspace
        if ws is None or ws.double_reading == on:
            return
        try:
            ws.set_double_reading(on)
        except CtsegError as exc:
            self.store.session.log(f"could not change the reading mode: {exc}", "error")
            return
        self.store.session.log("double reading " + ("on: each reader edits their own map of a case"
                                                    if on else "off: the final map is edited"))
        self.store.reopen(editing_final=False)
        self.update()

    def start_from(self, source: str) -> bool:
        """Begin my map of the open case from ``source`` ("prediction", "empty", "reader:<name>")."""
        case, volume = self.store.case, self.store.session.volume
        if not isinstance(case, ReaderCase):
            return False
        try:
            case.start(volume, source)
        except CtsegError as exc:
            self.store.session.log(f"could not start the reading: {exc}", "error")
            return False
        self.store.session.log(f"case {case.id}: {case.reader} starts reading from "
                               + source.replace("reader:", "the map of "))
        self.store.reopen()
        return True

    def sources(self) -> list[str]:
        case = self.store.case
        others = [f"reader:{r.reader}" for r in readers_of(case.folder) if r.reader != case.reader] if case else []
        return ["prediction", "empty", *others]

    def ask_start(self) -> None:
        choices = self.sources()
        text, ok = QInputDialog.getItem(self.window, "Start my reading", "Begin your map of this case from:",
                                        [c.replace("reader:", "the map of ") for c in choices], 0, False)
        if ok:
            self.start_from(choices[[c.replace("reader:", "the map of ") for c in choices].index(text)])

    def open_adjudication(self):
        from app.panels.adjudication_view import AdjudicationView

        self.store.flush()
        view = AdjudicationView(self.store, self.window)
        self._show(view)
        return view

    def open_agreement(self):
        from app.panels.agreement_dialog import AgreementDialog

        if self.store.workspace is None:
            return None
        return self._show(AgreementDialog(self.store.workspace, self.window))

    def open_audit(self):
        from app.panels.audit_dialog import AuditDialog

        if self.store.workspace is None:
            return None
        case = self.store.case
        return self._show(AuditDialog(self.store.workspace, case.id if case is not None else None, self.window))

    def _show(self, dialog):
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.show()
        return dialog


def install_reading(window, editing) -> Reading:
    window.reading = Reading(window, editing)
    return window.reading
