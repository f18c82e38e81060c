"""The Lesions dock: the midline shift and the lesion list of the displayed labels.

One row per lesion (``ctseg_core.measure.lesions``): class, side, location, volume, thickness, ABC/2,
slices (from 1). Clicking a row (or N / Shift+N for the next / previous lesion) centres all views on it.
The midline shift is shown above the list with its 5 mm reference, the thickness column with its 10 mm
reference: values beyond them are drawn in red (measurements, not advice). Values come from
``MeasurementsController`` (computed off the GUI thread); results not reviewed by a person (the model's
prediction on show) are marked as such in the caption.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from ctseg_core.labels import CLASSES
from ctseg_core.measure.lesions import THICKNESS_GUIDELINE_MM
from ctseg_core.measure.midline import GUIDELINE_MM
from app.panels.classes_panel import colour_icon
from app.panels.tables import read_only_table

COLUMNS = ["#", "Class", "Where", "mL", "Thick (mm)", "ABC/2", "Slices"]
TIPS = ["lesion number", "hemorrhage class", "side and rough location", "volume (mL, voxel count)",
        f"largest thickness perpendicular to the inner table (extra-axial collections; reference {THICKNESS_GUIDELINE_MM:g} mm)",
        "ABC/2 volume estimate (mL, ICH)", "slices (from 1)"]
FLAG = QColor(255, 90, 90)


class LesionsPanel(QWidget):
    lesion_activated = Signal(object)  # the Lesion chosen (row click, next / previous)
    report_requested = Signal()
    compare_requested = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.measurements = None
        self.midline_label = QLabel("Midline shift: -")
        self.midline_label.setWordWrap(True)
        self.table = read_only_table(COLUMNS, select_rows=True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        for col, tip in enumerate(TIPS):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.cellClicked.connect(lambda row, _col: self.activate(row))
        self.table.setToolTip("click a lesion to centre the views on it; N / Shift+N: next / previous lesion")
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: #999;")
        self.report_button = QPushButton("Report...")
        self.report_button.setToolTip("write the one-page report, the measurements and (DICOM scans) the DICOM SR")
        self.report_button.clicked.connect(self.report_requested)
        self.compare_button = QPushButton("Compare with prior...")
        self.compare_button.setToolTip("open an earlier scan of this patient side by side, aligned, with the change")
        self.compare_button.clicked.connect(self.compare_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.report_button)
        buttons.addWidget(self.compare_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.midline_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.caption)
        layout.addLayout(buttons)

    @property
    def lesions(self) -> list:
        return [] if self.measurements is None else self.measurements.lesions.lesions

    def show_measurements(self, measurements, reviewed: bool = True) -> None:
        selected = self.current_row()
        self.measurements = measurements
        self._show_midline(measurements.midline)
        self.table.setRowCount(len(self.lesions))
        for row, les in enumerate(self.lesions):
            thick = "" if les.thickness is None else f"{les.thickness.mm:.1f}"
            abc = "" if les.abc2 is None else f"{les.abc2.volume_ml:.1f}"
            slices = f"{les.slices[0] + 1}-{les.slices[-1] + 1}" if len(les.slices) > 1 else f"{les.slices[0] + 1}"
            where = " ".join(x for x in (les.side, les.location) if x)
            values = [str(les.number), les.key.upper(), where, f"{les.volume_ml:.2f}", thick, abc, slices]
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setIcon(colour_icon(CLASSES[les.class_id].colour))
                    item.setToolTip(les.name)
                if col in (0, 3, 4, 5):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if col == 2:
                    item.setToolTip(where)
                if col == 4 and les.thickness is not None and les.thickness.mm > THICKNESS_GUIDELINE_MM:
                    item.setForeground(FLAG)
                    item.setToolTip(f"thicker than the {THICKNESS_GUIDELINE_MM:g} mm reference")
                if col == 3:
                    item.setToolTip(f"largest diameter {les.diameter_mm:.0f} mm (3-D), "
                                    f"{les.axial_diameter_mm:.0f} mm on its largest slice")
                self.table.setItem(row, col, item)
        frag = sum(v["count"] for v in measurements.lesions.fragments.values())
        text = (f"Thickness reference {THICKNESS_GUIDELINE_MM:g} mm; pieces under "
                f"{measurements.lesions.min_volume_ml:g} mL not listed" + (f" ({frag})" if frag else "") + ".")
        if not reviewed:
            text = "Model prediction, not reviewed. " + text
        self.caption.setText(text)
        if 0 <= selected < len(self.lesions):
            self.table.selectRow(selected)

    def _show_midline(self, midline) -> None:
        if not midline.found:
            self.midline_label.setText(f"Midline shift: not measured ({midline.reason})")
            self.midline_label.setStyleSheet("")
            return
        side = f" to the {midline.side}" if midline.side else ""
        self.midline_label.setText(f"Midline shift: {midline.shift_mm:.1f} mm{side} "
                                   f"(reference {GUIDELINE_MM:g} mm; {midline.structure}, slice {midline.slice_index + 1})")
        self.midline_label.setStyleSheet("color: #ff5a5a; font-weight: bold;" if midline.shift_mm > GUIDELINE_MM else "")

    def current_row(self) -> int:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else -1

    def activate(self, row: int) -> bool:
        if not 0 <= row < len(self.lesions):
            return False
        self.table.selectRow(row)
        les = self.lesions[row]
        self.session.set_position(*les.centre)
        self.lesion_activated.emit(les)
        return True

    def step(self, delta: int) -> bool:
        """Go to the next (+1) or previous (-1) lesion, wrapping around."""
        if not self.lesions:
            return False
        row = self.current_row()
        row = (0 if delta > 0 else len(self.lesions) - 1) if row < 0 else (row + delta) % len(self.lesions)
        return self.activate(row)
