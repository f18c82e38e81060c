"""The Cases dock: every case of the workspace with its review status, annotator, findings summary and,
where a triage model (RADnet) ran, the scan's probability of hemorrhage.

Filter by status, click a column title to sort (the probability column puts the likeliest scans first
when sorted descending), double-click (or Open) to open a case, "Next case" opens the case to review where
the model is least sure (``ctseg_core.review_order``); the status of the open case and the reader's name are
set here too (also in the Review menu). A case read by several readers shows how many have finished ("read
(2 readers)") and who; the list follows changes other people make to the workspace
(``CaseStore.check_for_changes``). The "Val." column marks the workspace's validation set (chosen by the
first training run, then frozen); "Validation set: in/out" moves the selected case in or out of it (recorded
with the reader's name; the versions are then compared only once re-scored on the new set).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QTableWidgetItem, QVBoxLayout, QWidget)
from app.panels.tables import read_only_table

from ctseg_core.errors import CtsegError
from ctseg_core.store import STATUSES
from ctseg_core.store.readers import readers_of
from ctseg_core.training import validation_set

COLUMNS = ("Case", "Status", "Findings", "Triage p", "Val.")
FINDINGS_COLUMN = COLUMNS.index("Findings")
TRIAGE_COLUMN = 3
VAL_COLUMN = 4
STATUS_TITLES = {"new": "new", "in_review": "in review", "read": "read", "adjudicated": "adjudicated",
                 "corrected": "corrected", "approved": "approved"}
STATUS_COLOURS = {"new": (110, 110, 110), "in_review": (200, 120, 0), "read": (150, 80, 200),
                  "adjudicated": (20, 130, 150), "corrected": (30, 100, 200), "approved": (30, 140, 50)}
SETTABLE = ("in_review", "corrected", "approved")  # read and adjudicated follow from the readers / adjudication


def readers_text(records) -> str:
    """'alice ✓, bob' (✓: finished their reading)."""
    return ", ".join(r.reader + (" ✓" if r.status == "done" else "") for r in records)


def triage_text(triage: dict) -> str:
    """'0.93 POS' / '0.12 neg' from a case record's triage summary, '' when no triage model ran."""
    if not triage or triage.get("probability") is None:
        return ""
    return f"{triage['probability']:.2f} {'POS' if triage.get('positive') else 'neg'}"


class SortItem(QTableWidgetItem):
    """A cell that sorts by its sort key (a number for the probability column) instead of its text."""

    def __init__(self, text: str, key):
        super().__init__(text)
        self.key = key

    def __lt__(self, other):
        if isinstance(other, SortItem) and type(self.key) is type(other.key):
            return self.key < other.key
        return super().__lt__(other)


def record_findings_text(rec) -> str:
    """The Findings cell: the saved map's findings once a person saved one; before that the model's,
    marked as such ('model: SDH 0.3 mL*'); '-' when neither exists (not segmented yet)."""
    if rec.final_saved:
        return findings_text(rec.findings)
    if rec.prediction_saved:
        return "model: " + ("not summarised" if rec.model_findings is None else findings_text(rec.model_findings))
    return "-"


def findings_text(findings: dict) -> str:
    """'SDH 12.3 mL, ICH 0.4 mL*' (* = below the 3-consecutive-slice rule) or 'none'."""
    parts = []
    for key, f in sorted(findings.items(), key=lambda kv: -kv[1].get("volume_ml", 0.0)):
        short = key.upper() if len(key) <= 4 else key.capitalize()
        parts.append(f"{short} {f.get('volume_ml', 0.0):.1f} mL" + ("" if f.get("positive", True) else "*"))
    return ", ".join(parts) if parts else "none"


class CasesPanel(QWidget):
    def __init__(self, store, request_status, parent=None):
        """``store``: app.case_store.CaseStore; ``request_status(status)`` sets the open case's status."""
        super().__init__(parent)
        self.store = store
        self.records = []  # shown rows, in table order
        self.filter = QComboBox()
        self.filter.addItem("All cases", None)
        for status in STATUSES:
            self.filter.addItem(STATUS_TITLES[status].capitalize(), status)
        self.filter.currentIndexChanged.connect(lambda _: self.refresh())
        self.next_button = QPushButton("Next case")
        self.next_button.setToolTip("open the case to review where the model is least sure (its expected error "
                                    "from the stored uncertainty; cases without one after, oldest first)")
        self.next_button.clicked.connect(store.open_next_unreviewed)
        self.table = read_only_table(COLUMNS, select_rows=True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Interactive)  # the user may widen it; long names are elided
        self.table.setColumnWidth(0, 110)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(FINDINGS_COLUMN, QHeaderView.Stretch)  # the rest of the width; the tooltip
        # holds the whole text, so a long list of findings never pushes Triage p and Val. out of sight
        header.setSectionResizeMode(TRIAGE_COLUMN, QHeaderView.ResizeToContents)
        self.table.horizontalHeaderItem(TRIAGE_COLUMN).setToolTip(
            "probability of hemorrhage from a triage model (RADnet): the largest, over 3 consecutive slices, of "
            "their smallest slice probability; POS = 3+ consecutive slices at 0.5 or more")
        header.setSortIndicator(-1, Qt.AscendingOrder)  # the workspace's order until a column title is clicked
        self.table.setSortingEnabled(True)
        header.setSectionResizeMode(VAL_COLUMN, QHeaderView.ResizeToContents)
        self.table.setWordWrap(False)
        self.table.cellDoubleClicked.connect(lambda row, _: self.open_row(row))
        self.status = QComboBox()
        for status in SETTABLE:
            self.status.addItem(STATUS_TITLES[status].capitalize(), status)
        self.set_status_button = QPushButton("Set status")
        self.set_status_button.setToolTip("review status of the open case (saved with the annotator's name)")
        self.set_status_button.clicked.connect(lambda: request_status(self.status.currentData()))
        self.validation_button = QPushButton("Validation set: in/out")
        self.validation_button.setToolTip("move the selected case into the validation set, or out of it to training "
                                          "(recorded; versions are compared again only after re-scoring)")
        self.validation_button.clicked.connect(lambda: self.toggle_validation())
        self.annotator = QLineEdit(store.stored_reader)
        self.annotator.setPlaceholderText(f"reader name (now {store.annotator})")
        self.annotator.setToolTip("your name as a reader: recorded with every edit, save and status change")
        self.annotator.editingFinished.connect(lambda: store.set_annotator(self.annotator.text()))
        self.current = QLabel()
        self.current.setWordWrap(True)
        self.workspace_label = QLabel()
        self.workspace_label.setWordWrap(True)
        self.workspace_label.setStyleSheet("color: #888;")

        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.next_button)
        top.addWidget(self.validation_button)
        review = QHBoxLayout()
        review.addWidget(self.status, 1)
        review.addWidget(self.set_status_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.current)
        layout.addLayout(review)
        layout.addWidget(self.annotator)
        layout.addWidget(self.workspace_label)
        store.cases_changed.connect(self.refresh)
        store.annotator_changed.connect(self._on_reader)
        store.case_opened.connect(lambda _: self.refresh())
        self.refresh()

    def _on_reader(self, name: str) -> None:
        if self.store.stored_reader != self.annotator.text():
            self.annotator.setText(self.store.stored_reader)
        self.annotator.setPlaceholderText(f"reader name (now {name})")

    def refresh(self) -> None:
        ws = self.store.workspace
        self.workspace_label.setText(f"Workspace: {ws.root}" if ws is not None else "No workspace")
        wanted = self.filter.currentData()
        try:
            records = ws.cases() if ws is not None else []
        except Exception as exc:  # a damaged case.json must not break the panel
            self.store.session.log(f"could not list the cases: {exc}", "error")
            records = []
        self.records = [r for r in records if wanted is None or r.status == wanted]
        members = self.validation_members()
        open_id = self.store.case.id if self.store.case is not None else None
        self.table.setSortingEnabled(False)  # fill the rows in place, then sort them once
        # columns that would be empty for every case take no width from the findings
        self.table.setColumnHidden(TRIAGE_COLUMN, not any(triage_text(r.triage) for r in self.records))
        self.table.setColumnHidden(VAL_COLUMN, not any(r.id in members for r in self.records))
        self.table.setRowCount(len(self.records))
        for row, rec in enumerate(self.records):
            status = STATUS_TITLES.get(rec.status, rec.status)
            readers = readers_of(ws.cases_dir / rec.id)
            if rec.status == "read":
                done = sum(r.status == "done" for r in readers)
                status += f" ({done} reader{'s' if done != 1 else ''})"
            if rec.status == "new" and rec.prediction_saved:
                status += ", segmented"  # e.g. received from the PACS and segmented in the background
            cells = (rec.description or rec.id, status, record_findings_text(rec), triage_text(rec.triage),
                     "✓" if rec.id in members else "")
            tip = (f"{rec.id}\nsource: {rec.source.path}\nstatus: {STATUS_TITLES.get(rec.status, rec.status)}"
                   + (f" by {rec.annotator}" if rec.annotator else "")
                   + (f"\nreaders: {readers_text(readers)}" if readers else "")
                   + f"\nmodified: {(rec.modified or '')[:19].replace('T', ' ')}\nfindings: {cells[2]}"
                   + ("\n* = on fewer than 3 consecutive slices" if "*" in cells[2] else "")
                   + ("\nmodel: what the model drew, not reviewed by a person yet" if cells[2].startswith("model")
                      else "")
                   + ("\nin the validation set (the models are scored on it, never trained on it)"
                      if rec.id in members else ""))
            for col, text in enumerate(cells):
                item = SortItem(text, _sort_key(rec, col, text))
                item.setData(Qt.UserRole, rec.id)
                item.setToolTip(tip)
                if col == 1:
                    item.setForeground(QColor(*STATUS_COLOURS.get(rec.status, (200, 200, 200))))
                font = item.font()
                font.setBold(rec.id == open_id)
                font.setItalic(col == FINDINGS_COLUMN and text.startswith("model"))  # not reviewed: looks different
                item.setFont(font)
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        case = self.store.case
        if case is None:
            self.current.setText("Open case: none")
        else:
            self.current.setText(f"Open case: {case.record.description or case.id} "
                                 f"({STATUS_TITLES.get(case.record.status, case.record.status)})")
            index = self.status.findData(case.record.status)
            if index >= 0:
                self.status.setCurrentIndex(index)
        self.set_status_button.setEnabled(case is not None)

    def record_at(self, row: int):
        """The case record shown in table row ``row`` (rows follow the chosen sort order)."""
        item = self.table.item(row, 0)
        case_id = item.data(Qt.UserRole) if item is not None else None
        return next((r for r in self.records if r.id == case_id), None)

    def validation_members(self) -> set[str]:
        ws = self.store.workspace
        try:
            vs = validation_set.ValidationSet.load(ws.root) if ws is not None else None
        except CtsegError as exc:
            self.store.session.log(str(exc), "warning")
            return set()
        return set(vs.cases) if vs is not None else set()

    def selected_record(self):
        rows = self.table.selectionModel().selectedRows()
        return self.record_at(rows[0].row()) if rows else None

    def toggle_validation(self, case_id: str | None = None) -> bool:
        """Move a case (default: the selected row) into the validation set or out of it; recorded."""
        ws = self.store.workspace
        if case_id is None:
            rec = self.selected_record()
            case_id = rec.id if rec is not None else None
        if ws is None or case_id is None:
            return False
        inside = case_id in self.validation_members()
        try:
            validation_set.change(ws.root, add=[] if inside else [case_id], remove=[case_id] if inside else [],
                                  by=self.store.annotator, known=[r.id for r in ws.cases()])
        except CtsegError as exc:
            self.store.session.log(f"the validation set was not changed: {exc}", "error")
            return False
        self.store.session.log(f"case {case_id} moved {'out of' if inside else 'into'} the validation set; model "
                               "versions are compared again once re-scored on the new set (Training > Re-score)")
        self.store.cases_changed.emit()
        return True

    def open_row(self, row: int) -> None:
        record = self.record_at(row)
        if record is not None:
            self.store.open_record(record)


def _sort_key(rec, col: int, text: str):
    """Numbers for the probability column (scans without triage sort below every probability), text elsewhere."""
    if col == TRIAGE_COLUMN:
        p = (rec.triage or {}).get("probability")
        return -1.0 if p is None else float(p)
    return text.lower()
