"""The classes dock: legend (colour, name), per-class visibility and lock, active class, overlay options.

The legend lists ctseg's seven classes (keys 1-7 pick the class to paint) and the review labels a model
with other classes draws (BLAST-CT): unassigned extra-axial blood, to reassign to SDH, EDH or SAH with the
component tool, and perilesional oedema, not blood, hidden until ticked."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPixmap, QIcon
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QHeaderView, QRadioButton,
                               QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ctseg_core.labels import CLASSES, LABEL_CLASSES, REVIEW_CLASSES
from app.session import FINAL, PREDICTION

COL_SHOW, COL_LOCK, COL_NAME = 0, 1, 2


def colour_icon(rgb, size: int = 14) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


class ClassesPanel(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.table = QTableWidget(len(LABEL_CLASSES) - 1, 3)
        self.table.setHorizontalHeaderLabels(["Show", "Lock", "Class"])
        self.table.verticalHeader().setVisible(False)
        fit_rows(self.table)
        self.table.horizontalHeader().setSectionResizeMode(COL_NAME, QHeaderView.Stretch)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.show_boxes: dict[int, QCheckBox] = {}
        self.lock_boxes: dict[int, QCheckBox] = {}
        for row, cls in enumerate(LABEL_CLASSES[1:]):
            show, lock = QCheckBox(), QCheckBox()
            show.setChecked(session.class_visible[cls.id])
            lock.setChecked(session.class_locked[cls.id])
            show.setToolTip(f"show {cls.name}")
            lock.setToolTip(f"lock {cls.name}: editing tools leave it unchanged")
            show.toggled.connect(lambda on, c=cls.id: session.set_class_visible(c, on))
            lock.toggled.connect(lambda on, c=cls.id: session.set_class_locked(c, on))
            self.table.setCellWidget(row, COL_SHOW, _centred(show))
            self.table.setCellWidget(row, COL_LOCK, _centred(lock))
            item = QTableWidgetItem(colour_icon(cls.colour), legend_text(cls))
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
            if cls in REVIEW_CLASSES:
                item.setToolTip(f"{cls.name}: {cls.note}")
            self.table.setItem(row, COL_NAME, item)
            self.show_boxes[cls.id], self.lock_boxes[cls.id] = show, lock
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(COL_NAME, QHeaderView.Stretch)
        self.table.currentCellChanged.connect(lambda row, *_: session.set_active_class(row + 1) if row >= 0 else None)
        session.active_class_changed.connect(self._on_active_class)
        session.class_lock_changed.connect(lambda c, on: self.lock_boxes[c].setChecked(on) if c in self.lock_boxes else None)

        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(session.opacity * 100))
        self.opacity.valueChanged.connect(lambda v: session.set_opacity(v / 100))
        self.filled = QRadioButton("filled")
        self.outlined = QRadioButton("outline")
        self.filled.setChecked(not session.outline)
        self.outlined.toggled.connect(session.set_outline)
        style = QHBoxLayout()
        style.addWidget(self.filled)
        style.addWidget(self.outlined)
        self.uncertainty = QCheckBox("show model uncertainty")
        self.uncertainty.toggled.connect(session.set_show_uncertainty)
        self.source = QComboBox()
        self.source.addItem("corrected (final)", FINAL)
        self.source.addItem("model prediction", PREDICTION)
        self.source.currentIndexChanged.connect(lambda i: session.set_show_source(self.source.itemData(i)))

        session.display_changed.connect(self._sync)

        form = QFormLayout()
        form.addRow("Opacity", self.opacity)
        form.addRow("Display", style)
        form.addRow("Labels", self.source)
        form.addRow(self.uncertainty)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addLayout(form)
        self._on_active_class(session.active_class)

    def _sync(self) -> None:
        """Follow display changes made elsewhere (menus, other panels) without echoing them back."""
        s = self.session
        for widget, value in ((self.outlined, s.outline), (self.uncertainty, s.show_uncertainty)):
            if widget.isChecked() != value:
                widget.setChecked(value)
        self.filled.setChecked(not s.outline)
        index = self.source.findData(s.show_source)
        if index != self.source.currentIndex():
            self.source.setCurrentIndex(index)
        for cid, box in self.show_boxes.items():
            if box.isChecked() != s.class_visible[cid]:
                box.setChecked(s.class_visible[cid])
        if self.opacity.value() != round(s.opacity * 100):
            self.opacity.setValue(round(s.opacity * 100))

    def _on_active_class(self, class_id: int) -> None:
        if 1 <= class_id < len(CLASSES) and self.table.currentRow() != class_id - 1:
            self.table.selectRow(class_id - 1)


def legend_text(cls) -> str:
    """A legend row: the key that picks a class to paint, or what a review label is."""
    if cls in REVIEW_CLASSES:
        return f"-  {cls.name}" + ("  (model result: reassign)" if cls.assign_to else "")
    return f"{cls.id}  {cls.name}"


def fit_rows(table: QTableWidget, row_height: int = 22) -> None:
    """Compact rows, and a height that shows every row without scrolling."""
    table.verticalHeader().setDefaultSectionSize(row_height)
    table.verticalHeader().setMinimumSectionSize(row_height)
    height = table.horizontalHeader().sizeHint().height() + row_height * table.rowCount() + 2 * table.frameWidth() + 2
    table.setMinimumHeight(height)
    table.setMaximumHeight(height)


def _centred(widget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setAlignment(Qt.AlignCenter)
    lay.addWidget(widget)
    return box
