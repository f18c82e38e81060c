"""The triage strip beside the axial view: a triage model's (RADnet's) probability of hemorrhage on each
axial slice, and the scan's call.

One bar per slice, slice 1 at the bottom; a bar's length is the slice's probability, red from the
threshold (0.5) up, with a line at the threshold; the slices of a positive run (3 or more consecutive
positive slices, the scan's rule) are marked at the left edge; the viewed slice is outlined. The top
reads the call and the scan's probability (``ctseg_core.triage``). Click or drag to go to a slice;
hovering tells the slice's number and probability. Hidden while the open scan has no slice
probabilities (segmentation models show their outlines instead).
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QToolTip, QWidget

from ctseg_core.triage import Triage

HEADER_PX = 40
MARGIN = 4
NEGATIVE = QColor(110, 140, 170)
POSITIVE = QColor(235, 70, 60)
CURRENT = QColor(240, 200, 60)


class TriageStrip(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.setFixedWidth(72)
        self.setMouseTracking(True)
        self.setToolTip("per-slice probability of hemorrhage (triage model); click to go to a slice")
        self.setVisible(False)
        session.triage_changed.connect(self._on_triage)
        session.volume_changed.connect(self._on_triage)
        session.position_changed.connect(lambda *_: self.update())

    # ---- state ----
    @property
    def triage(self) -> Triage | None:
        p = self.session.slice_probabilities
        return None if p is None else Triage(p)

    def _on_triage(self) -> None:
        self.setVisible(self.session.slice_probabilities is not None)
        self.update()

    # ---- geometry: slice 1 at the bottom ----
    def _strip_rect(self) -> QRectF:
        return QRectF(MARGIN, HEADER_PX, self.width() - 2 * MARGIN, self.height() - HEADER_PX - MARGIN)

    def slice_at(self, y: float) -> int | None:
        """The slice (0-based) drawn at height ``y``, or None above the strip."""
        p = self.session.slice_probabilities
        rect = self._strip_rect()
        if p is None or y < rect.top():
            return None
        n = len(p)
        row = int((rect.bottom() - y) / rect.height() * n)
        return int(min(max(row, 0), n - 1))

    def _row_rect(self, z: int, n: int) -> QRectF:
        rect = self._strip_rect()
        h = rect.height() / n
        return QRectF(rect.left(), rect.bottom() - (z + 1) * h, rect.width(), h)

    # ---- drawing ----
    def paintEvent(self, ev):
        triage = self.triage
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 24))
        if triage is None:
            painter.end()
            return
        self._draw_header(painter, triage)
        p = triage.slice_probabilities
        n = len(p)
        rect = self._strip_rect()
        in_run = triage.in_positive_run()
        for z in range(n):
            row = self._row_rect(z, n)
            bar = QRectF(row.left() + 6, row.top() + 0.15 * row.height(), (row.width() - 6) * float(p[z]),
                         max(1.0, 0.7 * row.height()))
            painter.fillRect(bar, POSITIVE if p[z] >= triage.threshold else NEGATIVE)
            if in_run[z]:
                painter.fillRect(QRectF(row.left(), row.top(), 3, row.height()), POSITIVE)
        x = rect.left() + 6 + (rect.width() - 6) * triage.threshold
        painter.setPen(QPen(QColor(200, 200, 200, 140), 1, Qt.DashLine))
        painter.drawLine(int(x), int(rect.top()), int(x), int(rect.bottom()))
        z = self.session.position[0]
        if 0 <= z < n:
            painter.setPen(QPen(CURRENT, 1.5))
            painter.drawRect(self._row_rect(z, n).adjusted(0.5, 0, -0.5, 0))
        painter.end()

    def _draw_header(self, painter: QPainter, triage: Triage) -> None:
        font = QFont(self.font())
        font.setBold(True)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        painter.setPen(POSITIVE if triage.positive else QColor(130, 200, 130))
        top = QRectF(0, 2, self.width(), HEADER_PX / 2)
        painter.drawText(top, Qt.AlignCenter, "POSITIVE" if triage.positive else "negative")
        font.setBold(False)
        painter.setFont(font)
        painter.setPen(QColor(220, 220, 220))
        painter.drawText(QRectF(0, HEADER_PX / 2, self.width(), HEADER_PX / 2 - 2), Qt.AlignCenter,
                         f"p {triage.probability:.2f}")

    # ---- mouse ----
    def mousePressEvent(self, ev):
        if ev.button() == Qt.LeftButton:
            self._go(ev.position().y())

    def mouseMoveEvent(self, ev):
        if ev.buttons() & Qt.LeftButton:
            self._go(ev.position().y())
        z = self.slice_at(ev.position().y())
        if z is not None:
            p = self.session.slice_probabilities
            QToolTip.showText(ev.globalPosition().toPoint(), f"slice {z + 1}: p {p[z]:.2f}", self)

    def _go(self, y: float) -> None:
        z = self.slice_at(y)
        if z is not None and self.session.has_volume():
            _, j, i = self.session.position
            self.session.set_position(z, j, i)
