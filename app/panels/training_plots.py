"""Live plots of a training run for the Training dock, and a readable per-class Dice dialog.

``TrainingPlots``: the loss of every optimizer step (thin) with its running mean (thick), and the
validation Dice per class as bars (before: grey, after: the class colour) with the mean of each as a
dashed line, filled in as the training process reports them. ``DiceDialog``: the per-class Dice of a
run (or a model version) in a table wide enough to read, with the change.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

import app.viewer  # noqa: F401  (pyqtgraph configuration)
from ctseg_core.labels import CLASS_BY_KEY, LESION_CLASSES

SMOOTHING = 0.9  # exponential moving average of the loss


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


class TrainingPlots(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(background="#1a1a1a")
        self.loss_plot.setTitle("Loss per step", color="#ccc", size="9pt")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.2)
        self.loss_raw = self.loss_plot.plot(pen=pg.mkPen((120, 120, 140), width=1))
        self.loss_mean = self.loss_plot.plot(pen=pg.mkPen((80, 170, 255), width=2), name="running mean")
        self.dice_plot = pg.PlotWidget(background="#1a1a1a")
        self.dice_plot.setTitle("Dice (grey: before, colour: after)", color="#ccc", size="9pt")
        self.dice_plot.setYRange(0, 1)
        self.dice_plot.setMouseEnabled(x=False, y=False)
        self.dice_plot.showGrid(y=True, alpha=0.2)
        for plot in (self.loss_plot, self.dice_plot):
            plot.setMinimumHeight(110)
            plot.setMaximumHeight(170)
            plot.setMenuEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.dice_plot)
        self.reset()

    def reset(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.before: dict[str, float] = {}
        self.after: dict[str, float] = {}
        self.loss_raw.setData([], [])
        self.loss_mean.setData([], [])
        self._draw_dice()

    def add_step(self, step: int, loss: float) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        prev = self.smoothed[-1] if self.smoothed else float(loss)
        self.smoothed.append(SMOOTHING * prev + (1 - SMOOTHING) * float(loss) if self.smoothed else float(loss))
        self.loss_raw.setData(self.steps, self.losses)
        self.loss_mean.setData(self.steps, self.smoothed)

    def set_dice(self, before: dict | None = None, after: dict | None = None) -> None:
        if before is not None:
            self.before = dict(before)
        if after is not None:
            self.after = dict(after)
        self._draw_dice()

    def _draw_dice(self) -> None:
        plot = self.dice_plot
        plot.clear()
        keys = [c.key for c in LESION_CLASSES if c.key in self.before or c.key in self.after]
        plot.getAxis("bottom").setTicks([[(i, k.upper()[:6]) for i, k in enumerate(keys)]])
        if not keys:
            return
        x = np.arange(len(keys), dtype=float)
        b = [self.before.get(k, 0.0) for k in keys]
        plot.addItem(pg.BarGraphItem(x=x - 0.18, height=b, width=0.34, brush=(130, 130, 130)))
        if self.after:
            a = [self.after.get(k, 0.0) for k in keys]
            brushes = [pg.mkBrush(*CLASS_BY_KEY[k].colour) for k in keys]
            plot.addItem(pg.BarGraphItem(x=x + 0.18, height=a, width=0.34, brushes=brushes))
        for values, colour in ((self.before, (160, 160, 160)), (self.after, (80, 170, 255))):
            if values:
                mean = float(np.mean(list(values.values())))
                plot.addItem(pg.InfiniteLine(pos=mean, angle=0, pen=pg.mkPen(colour, width=1, style=Qt.DashLine)))
        plot.setXRange(-0.6, len(keys) - 0.4, padding=0)


class DiceDialog(QDialog):
    """Per-class validation Dice before and after a run, with the change, wide enough to read."""

    def __init__(self, title: str, before: dict, after: dict, note: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        keys = [c.key for c in LESION_CLASSES if c.key in before or c.key in after]
        self.table = QTableWidget(len(keys) + 1, 4)
        self.table.setHorizontalHeaderLabels(["Class", "Dice before", "Dice after", "Change"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        rows = [(CLASS_BY_KEY[k].name, before.get(k), after.get(k)) for k in keys]
        mean = lambda d: float(np.mean(list(d.values()))) if d else None  # noqa: E731
        rows.append(("Mean of the classes present", mean(before), mean(after)))
        for r, (name, b, a) in enumerate(rows):
            change = "-" if a is None or b is None else f"{a - b:+.3f}"
            for col, text in enumerate((name, _fmt(b), _fmt(a), change)):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if note:
            label = QLabel(note)
            label.setWordWrap(True)
            layout.addWidget(label)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(560, 90 + 26 * (len(rows) + 1))
