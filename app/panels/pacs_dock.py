"""The Inbox / Outbox dock: what arrived from the PACS (per series: state, case) and what waits to go back.

Inbox: each received series, newest first: state, patient, study/series, images, time ("receiving", "queued",
"segmenting", "new, segmented", "failed: ..."); double-click (or Open case) opens a segmented series' case.
Instances kept aside (not CT, malformed) are counted below, their notes in the tooltip. Outbox: each item
with its case, destination, files and state ("pending", "retrying in 40 s (try 3)", "sent ...", "failed:
..."); Retry now and Remove. The listener's state and its toggle are at the top. Read from the workspace's
folders every 2 s while shown, and at once when the controller says something changed.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton, QTableWidget, QTableWidgetItem,
                               QTabWidget, QVBoxLayout, QWidget)
from app.panels.tables import read_only_table

from ctseg_core.errors import CtsegError
from ctseg_core.pacs.inbox import Inbox
from ctseg_core.pacs.outbox import Outbox

INBOX_COLUMNS = ("State", "Patient", "Study / series", "Images", "Received")
OUTBOX_COLUMNS = ("State", "Case", "To", "Files", "Queued")
STATE_COLOURS = {"receiving": (110, 110, 110), "queued": (200, 120, 0), "segmenting": (200, 120, 0),
                 "segmented": (30, 140, 50), "failed": (200, 40, 40), "pending": (200, 120, 0),
                 "sending": (200, 120, 0), "sent": (30, 140, 50)}
REFRESH_MS = 2000


def _table(columns, stretch: int) -> QTableWidget:
    t = read_only_table(columns, select_rows=True)
    t.setWordWrap(False)
    header = t.horizontalHeader()
    for col in range(len(columns)):
        header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.Stretch)
    return t


def _fill_row(table: QTableWidget, row: int, cells, tip: str, state: str) -> None:
    for col, text in enumerate(cells):
        item = QTableWidgetItem(str(text))
        item.setToolTip(tip)
        if col == 0:
            item.setForeground(QColor(*STATE_COLOURS.get(state, (200, 200, 200))))
        table.setItem(row, col, item)


class PacsDock(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.c = controller
        self.entries, self.items = [], []
        self.listen_label = QLabel()
        self.listen_button = QPushButton()
        self.listen_button.clicked.connect(lambda: controller.set_listening(not controller.listening))
        self.inbox_table = _table(INBOX_COLUMNS, stretch=2)
        self.inbox_table.cellDoubleClicked.connect(lambda row, _: self.open_row(row))
        self.aside_label = QLabel()
        self.aside_label.setWordWrap(True)
        self.open_button = QPushButton("Open case")
        self.open_button.clicked.connect(lambda: self.open_row(self.inbox_table.currentRow()))
        self.outbox_table = _table(OUTBOX_COLUMNS, stretch=1)
        self.retry_button = QPushButton("Retry now")
        self.retry_button.clicked.connect(self.retry_selected)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.send_button = QPushButton("Send results of this case")
        self.send_button.clicked.connect(controller.send_open_case)

        top = QHBoxLayout()
        top.addWidget(self.listen_label, 1)
        top.addWidget(self.listen_button)
        inbox = QWidget()
        lay = QVBoxLayout(inbox)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.inbox_table, 1)
        lay.addWidget(self.aside_label)
        lay.addWidget(self.open_button)
        outbox = QWidget()
        lay = QVBoxLayout(outbox)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.outbox_table, 1)
        row = QHBoxLayout()
        row.addWidget(self.send_button, 1)
        row.addWidget(self.retry_button)
        row.addWidget(self.remove_button)
        lay.addLayout(row)
        self.tabs = QTabWidget()
        self.tabs.addTab(inbox, "Inbox")
        self.tabs.addTab(outbox, "Outbox")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)

        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        controller.changed.connect(self.refresh)
        controller.listening_changed.connect(lambda _: self.refresh())
        self.refresh()

    # ---- reading the folders ----
    def refresh(self) -> None:
        if not self.isVisible() and self.entries:  # hidden: no need to read the folders every 2 s
            return
        c = self.c
        local = c.config.local
        self.listen_label.setText(f"Listening as {local.ae_title} on port {local.port}" if c.listening
                                  else "Listener off")
        self.listen_button.setText("Stop listening" if c.listening else "Start listening")
        root = c.workspace_root
        if root is None:
            return
        try:
            inbox, outbox = Inbox(root), Outbox(root)
            self.entries, aside, self.items = inbox.entries(), inbox.set_aside_notes(), outbox.items()
        except (CtsegError, OSError) as exc:
            self.aside_label.setText(f"cannot read the inbox/outbox: {exc}")
            return
        self._fill_inbox(aside)
        self._fill_outbox()

    def _fill_inbox(self, aside) -> None:
        t = self.inbox_table
        t.setRowCount(len(self.entries))
        for row, e in enumerate(self.entries):
            what = " / ".join(x for x in (e.study_description, e.series_description or f"series {e.series_number}")
                              if x)
            tip = (f"study {e.study_uid}\nseries {e.series_uid}\nfrom {e.calling_ae or '?'}, first "
                   f"{e.first_received.replace('T', ' ')}, last {e.last_received.replace('T', ' ')}"
                   + (f"\ncase {e.case_id}" if e.case_id else "")
                   + "".join(f"\n{h['time'][11:19]} {h['state']}" + (f": {h['note']}" if h.get("note") else "")
                             for h in e.history[-6:]))
            cells = (e.status_text, e.patient_name or e.patient_id, what, e.instances,
                     e.last_received[:16].replace("T", " "))
            _fill_row(t, row, cells, tip, e.state)
        if aside:
            self.aside_label.setText(f"{len(aside)} received instance(s) kept aside (not CT or malformed)")
            self.aside_label.setToolTip("\n".join(f"{p.name}: {n.splitlines()[-1]}" for p, n in aside[:20]))
        else:
            self.aside_label.setText("")
            self.aside_label.setToolTip("")

    def _fill_outbox(self) -> None:
        t = self.outbox_table
        t.setRowCount(len(self.items))
        for row, i in enumerate(self.items):
            tip = (f"{i.id}\n{i.description}\ntries: {i.attempts}"
                   + (f"\nlast error: {i.last_error}" if i.last_error else "")
                   + "".join(f"\n{h['time'][11:19]} {h['state']}" + (f": {h['note']}" if h.get("note") else "")
                             for h in i.history[-6:]))
            cells = (i.status_text(), i.case_id, i.destination, ", ".join(i.files), i.created[:16].replace("T", " "))
            _fill_row(t, row, cells, tip, i.state)

    # ---- actions ----
    def open_row(self, row: int) -> None:
        if not 0 <= row < len(self.entries):
            return
        entry = self.entries[row]
        if not entry.case_id:
            self.c.session.log(f"{entry.describe()} has no case yet ({entry.status_text})", "warning")
            return
        ws = self.c.store.workspace
        try:
            record = next(r for r in ws.cases() if r.id == entry.case_id)
        except StopIteration:
            self.c.session.log(f"case {entry.case_id} is not in the workspace", "error")
            return
        self.c.store.open_record(record)

    def _selected_item(self):
        row = self.outbox_table.currentRow()
        return self.items[row] if 0 <= row < len(self.items) else None

    def retry_selected(self) -> None:
        item = self._selected_item()
        if item is None:
            return
        try:
            Outbox(self.c.workspace_root).retry_now(item.id)
        except CtsegError as exc:
            self.c.session.log(str(exc), "warning")
            return
        if self.c.service is not None:
            self.c.service.sender.wake()
        self.refresh()

    def remove_selected(self) -> None:
        item = self._selected_item()
        if item is None:
            return
        if getattr(self.c.window, "interactive", True) and QMessageBox.question(
                self, "Remove from the outbox", f"Remove the results of case {item.case_id} ({item.status_text()}) "
                "from the outbox? They are not sent then (Send results of this case makes them again).") \
                != QMessageBox.Yes:
            return
        try:
            Outbox(self.c.workspace_root).remove(item.id)
        except CtsegError as exc:
            self.c.session.log(str(exc), "warning")
            return
        self.c.session.log(f"outbox item {item.id} (case {item.case_id}) removed")
        self.refresh()
