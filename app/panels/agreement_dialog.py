"""Review > Agreement statistics: the workspace's inter-reader, reader-vs-final and model-vs-final agreement
per class (``ctseg_core.agreement``; the same numbers as ``ctseg agreement --json``), computed off the GUI
thread, with Export JSON."""

from __future__ import annotations

import json

from PySide6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidgetItem, QVBoxLayout)

from ctseg_core.atomic import atomic_write_text
from app.workers import run_task
from app.panels.tables import read_only_table

COLUMNS = ("Comparison", "Class", "n", "Dice", "Bias mL", "SD mL", "Limits of agreement mL")
KIND_TITLES = {"inter_reader": "reader vs reader", "reader_vs_final": "reader vs final",
               "model_vs_final": "model vs final"}


def table_rows(report: dict) -> list[tuple[str, ...]]:
    """The rows shown (only classes with at least one pair)."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = []
    for kind, classes in report["summary"].items():
        for key, r in classes.items():
            if r["n"]:
                loa = r["limits_of_agreement_ml"]
                rows.append((KIND_TITLES[kind], key.upper(), str(r["n"]), num(r["dice_mean"], ".3f"),
                             num(r["volume_bias_ml"], "+.2f"), num(r["volume_sd_ml"], ".2f"),
                             f"{loa[0]:+.2f} .. {loa[1]:+.2f}" if loa else "-"))
    return rows


class AgreementDialog(QDialog):
    def __init__(self, workspace, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Agreement statistics")
        self.workspace, self.report = workspace, None
        self.status = QLabel("computing...")
        self.status.setWordWrap(True)
        self.table = read_only_table(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.export_button = QPushButton("Export JSON...")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._ask_export)
        refresh = QPushButton("Recompute")
        refresh.clicked.connect(self.compute)
        buttons = QHBoxLayout()
        buttons.addWidget(refresh)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.resize(760, 420)
        self.compute()

    def compute(self) -> None:
        from ctseg_core.agreement import workspace_agreement

        self.status.setText("computing...")
        run_task(lambda: workspace_agreement(self.workspace), self.show_report,
                 lambda e: self.status.setText(f"could not compute the agreement: {e.message()}"))

    def show_report(self, report: dict) -> None:
        self.report = report
        rows = table_rows(report)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for col, text in enumerate(row):
                self.table.setItem(i, col, QTableWidgetItem(text))
        self.status.setText(f"{report['cases']} case(s) with comparisons in {report['workspace']}. Dice: mean "
                            "over the pairs where either map has the class (n); bias and limits of agreement "
                            "(Bland-Altman, ±1.96 SD) of the volume difference, first minus second."
                            + "".join(f"\nleft out: {p}" for p in report["problems"]))
        self.export_button.setEnabled(True)

    def export(self, path: str) -> None:
        atomic_write_text(path, json.dumps(self.report, indent=1))

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export agreement", "agreement.json", "JSON (*.json)")
        if path:
            self.export(path)
