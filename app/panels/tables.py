"""The read-only table the docks and dialogs list things in."""

from __future__ import annotations

from PySide6.QtWidgets import QTableWidget


def read_only_table(columns, select_rows: bool = False) -> QTableWidget:
    """A table with these column titles, no row numbers and no editing; ``select_rows``: clicks select one
    whole row."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.NoEditTriggers)
    if select_rows:
        table.setSelectionBehavior(QTableWidget.SelectRows)
        table.setSelectionMode(QTableWidget.SingleSelection)
    return table
