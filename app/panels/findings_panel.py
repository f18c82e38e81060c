"""The findings dock: per class volume (mL), slices, scan-level result, ABC/2 for ICH; live, debounced.
Rows of review labels (unassigned extra-axial blood, oedema) appear only when the labels hold them."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ctseg_core.findings import MIN_CONSECUTIVE_SLICES, Findings, compute_findings
from ctseg_core.labels import LABEL_CLASSES, REVIEW_CLASSES
from ctseg_core.volume import LabelMap
from app.panels.classes_panel import colour_icon, fit_rows
from app.workers import run_task

COLUMNS = ["Class", "Volume (mL)", "Slices", "Scan", "ABC/2 (mL)"]
DEBOUNCE_MS = 300


class FindingsPanel(QWidget):
    updated = Signal(object)  # Findings
    class_activated = Signal(int)  # a row was double-clicked: show that class

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.findings: Findings | None = None
        self._busy = False
        self._again = False
        self.rows = LABEL_CLASSES[1:]
        self.table = QTableWidget(len(self.rows), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        fit_rows(self.table)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        for row, cls in enumerate(self.rows):
            self.table.setItem(row, 0, QTableWidgetItem(colour_icon(cls.colour), cls.key.upper()))
            self.table.item(row, 0).setToolTip(cls.name + (f": {cls.note}" if cls in REVIEW_CLASSES else ""))
            self.table.setRowHidden(row, cls in REVIEW_CLASSES)
        self.table.cellDoubleClicked.connect(lambda row, col: self.class_activated.emit(self.rows[row].id))
        self.table.setToolTip("double-click a class to go to it")
        self.caption = QLabel(f"Scan: positive when present on {MIN_CONSECUTIVE_SLICES}+ consecutive slices. "
                              "Slices are 1-based.")
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: #999;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addWidget(self.caption)
        layout.addStretch(1)
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        session.labels_changed.connect(lambda which, box: self.schedule() if which == session.show_source else None)
        session.display_changed.connect(self.schedule)
        session.volume_changed.connect(self.schedule)

    def schedule(self) -> None:
        """Recompute within DEBOUNCE_MS (a burst of changes, e.g. inference filling slices, gives one update
        per interval rather than postponing it to the end)."""
        if not self._timer.isActive():
            self._timer.start()

    def recompute(self) -> None:
        """Compute the findings of the displayed labels in a worker (one at a time, latest wins)."""
        labels = self.session.displayed_labels()
        if labels is None:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        snapshot = LabelMap(labels.array.copy(), labels.geometry)
        source, scan = self.session.show_source, self.session.volume.meta.description
        model = self.session.prediction_model
        run_task(lambda: compute_findings(snapshot, source=source, scan=scan, model=model), self._on_result,
                 self._on_error)

    def _on_error(self, error) -> None:
        self._busy = False
        self.session.log(f"findings failed: {error.message()}", "error")

    def _on_result(self, findings: Findings) -> None:
        self._busy = False
        if self._again:
            self._again = False
            self.recompute()
        self.show_findings(findings)

    def show_findings(self, findings: Findings) -> None:
        self.findings = findings
        present = {c.class_id for c in findings.classes}
        for row, cls in enumerate(self.rows):
            self.table.setRowHidden(row, cls.id not in present)
        for c in findings.classes:
            row = next(i for i, cls in enumerate(self.rows) if cls.id == c.class_id)
            abc = "" if c.abc2 is None else f"{c.abc2.volume_ml:.1f}"
            slices = ", ".join(_one_based(part) for part in c.slices_text.split(", ")) if c.slices else "-"
            scan_result = ("POSITIVE" if c.hemorrhage else "present") if c.positive else "negative"
            values = [f"{c.volume_ml:.2f}", slices, scan_result, abc]
            for col, text in enumerate(values, start=1):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter if col in (1, 4) else Qt.AlignLeft | Qt.AlignVCenter)
                if col == 3 and c.positive and c.hemorrhage:
                    item.setForeground(QColor(255, 90, 90))
                self.table.setItem(row, col, item)
            if c.abc2 is not None:
                self.table.item(row, 4).setToolTip(
                    f"A {c.abc2.a_mm:.1f} mm x B {c.abc2.b_mm:.1f} mm x C {c.abc2.c_mm:.1f} mm / 2 "
                    f"(largest component, measured on slice {c.abc2.slice_index + 1}); voxel count: {c.volume_ml:.2f} mL")
        self.updated.emit(findings)


def _one_based(part: str) -> str:
    return "-".join(str(int(v) + 1) for v in part.split("-"))
