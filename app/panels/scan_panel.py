"""The Scan dock: patient, study and series, the geometry, and everything the loader did to the scan
(``ctseg_core.scan_info.describe_scan``, read off the GUI thread when a scan opens)."""

from __future__ import annotations

from shiboken6 import isValid
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from ctseg_core.scan_info import describe_scan
from app.workers import run_task


class ScanPanel(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.sections: list = []
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Field", "Value"])
        self.tree.setWordWrap(True)
        self.tree.setUniformRowHeights(False)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree)
        session.volume_changed.connect(self.refresh)

    def refresh(self) -> None:
        volume = self.session.volume
        if volume is None:
            return
        run_task(lambda: describe_scan(volume), lambda sections: self._show(volume, sections),
                 lambda e: self.session.log(f"scan information: {e.message()}", "warning") if isValid(self) else None)

    def _show(self, volume, sections) -> None:
        if not isValid(self) or volume is not self.session.volume:
            return  # the window closed, or another scan opened meanwhile
        self.sections = sections
        self.tree.clear()
        for title, rows in sections:
            top = QTreeWidgetItem([title])
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            for field, value in rows:
                child = QTreeWidgetItem([field, value])
                child.setToolTip(1, value)
                if not field:  # a sentence (a loader note): across both columns
                    child = QTreeWidgetItem([value])
                    child.setToolTip(0, value)
                top.addChild(child)
            self.tree.addTopLevelItem(top)
            for i, (field, _) in enumerate(rows):
                top.child(i).setFirstColumnSpanned(not field)
        self.tree.expandAll()

    def value(self, section: str, field: str) -> str | None:
        for title, rows in self.sections:
            if title == section:
                return next((v for f, v in rows if f == field), None)
        return None

