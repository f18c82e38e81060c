"""Review > Audit log: the workspace's audit trail (``ctseg_core.store.audit``) as a table, all cases or the
open one, with Export (CSV without voxel data, or JSON lines with everything)."""

from __future__ import annotations

from PySide6.QtWidgets import (QCheckBox, QDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableWidgetItem, QVBoxLayout)
from app.panels.tables import read_only_table

from ctseg_core.store.audit import CSV_FIELDS, summary_row

SHOWN = ("time", "op", "case", "who", "map", "slices", "model", "voxels", "details")


class AuditDialog(QDialog):
    def __init__(self, workspace, case_id: str | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Audit log")
        self.workspace, self.case_id = workspace, case_id
        self.only_case = QCheckBox(f"only case {case_id}" if case_id else "only the open case")
        self.only_case.setChecked(bool(case_id))
        self.only_case.setEnabled(bool(case_id))
        self.only_case.toggled.connect(lambda _: self.refresh())
        self.count = QLabel()
        self.table = read_only_table([c.capitalize() for c in SHOWN])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        export = QPushButton("Export...")
        export.clicked.connect(self._ask_export)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.only_case)
        top.addStretch(1)
        top.addWidget(self.count)
        top.addWidget(refresh)
        top.addWidget(export)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        self.resize(1100, 500)
        self.refresh()

    def _case(self) -> str | None:
        return self.case_id if self.only_case.isChecked() else None

    def refresh(self) -> None:
        entries = list(self.workspace.audit.entries(self._case()))
        index = [CSV_FIELDS.index(c) for c in SHOWN]
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(reversed(entries)):  # newest first
            cells = summary_row(entry)
            for col, i in enumerate(index):
                text = cells[i].replace("T", " ")[:23] if SHOWN[col] == "time" else cells[i]
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.count.setText(f"{len(entries)} entries")

    def export(self, path: str) -> int:
        return self.workspace.audit.export(path, case=self._case())

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the audit log", "audit.csv",
                                              "CSV (*.csv);;JSON lines (*.jsonl)")
        if path:
            self.export(path)
