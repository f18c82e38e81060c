"""The Window tool bar: window level and width in HU as numbers you can type, the presets, and the
overlay switch with its opacity (the habits of Slicer and ITK-SNAP users: W/L always visible; S shows or
hides the labels, A and D make them more transparent or more opaque)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox, QToolBar

from ctseg_core.windowing import PRESETS

LEVEL_RANGE = (-1024, 3071)
WIDTH_RANGE = (1, 4096)


def _spin(lo: int, hi: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSuffix(" HU")
    box.setToolTip(tip)
    box.setKeyboardTracking(False)  # apply on Enter / focus out, not on every digit
    box.setAccelerated(True)
    return box


class WindowBar(QToolBar):
    def __init__(self, session, parent=None):
        super().__init__("Window", parent)
        self.setObjectName("window_bar")
        self.session = session
        self.level = _spin(*LEVEL_RANGE, "window level (centre) in HU; right-drag in a view changes it too")
        self.width = _spin(*WIDTH_RANGE, "window width in HU; right-drag in a view changes it too")
        self.preset = QComboBox()
        self.preset.setToolTip("window presets (F1-F4)")
        self.preset.addItem("custom", None)
        for name, w in PRESETS.items():
            self.preset.addItem(f"{name} ({w.level:g}/{w.width:g})", name)
        self.addWidget(QLabel(" L "))
        self.addWidget(self.level)
        self.addWidget(QLabel(" W "))
        self.addWidget(self.width)
        self.addWidget(self.preset)
        self.level.valueChanged.connect(self._typed)
        self.width.valueChanged.connect(self._typed)
        self.preset.activated.connect(self._preset_chosen)
        session.window_changed.connect(self.sync)
        self.sync()

    def _typed(self, *_) -> None:
        self.session.set_window(self.level.value(), self.width.value())

    def _preset_chosen(self, index: int) -> None:
        name = self.preset.itemData(index)
        if name:
            self.session.set_window_preset(name)

    def sync(self, *_) -> None:
        w = self.session.window
        for box, value in ((self.level, w.level), (self.width, w.width)):
            box.blockSignals(True)
            box.setValue(int(round(value)))
            box.blockSignals(False)
        index = self.preset.findData(w.name if w.name in PRESETS else None)
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(max(index, 0))
        self.preset.blockSignals(False)
