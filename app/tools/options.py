"""Tool options shared by all tools (brush size, 2-D/3-D, HU threshold, paint mode) and their widgets.

``ToolOptions`` is the state (a QObject with a ``changed`` signal); ``OptionsBar`` is the tool-bar row
that edits it and shows only the options the active tool uses (``tool.options``).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QToolBar

from ctseg_core.edit import HU_PRESETS, PaintMode

PRESET_TITLES = {"fresh_blood": "Fresh blood 40 to 90 HU", "chronic_collection": "Chronic collection 0 to 30 HU",
                 "air": "Air below -200 HU", "custom": "Custom"}
MODE_TITLES = {PaintMode.OVERWRITE: "Overwrite everything", PaintMode.BACKGROUND_ONLY: "Only background",
               PaintMode.PROTECT_LOCKED: "Protect locked classes"}
MIN_RADIUS_MM, MAX_RADIUS_MM = 0.25, 50.0
BRUSH_STEP = 1.25  # [ and ], and each Shift+wheel notch, scale the brush by this factor
HU_MIN, HU_MAX = -3000.0, 4000.0


class ToolOptions(QObject):
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.radius_mm = 3.0
        self.sphere = False  # brush/eraser: 3-D ball instead of a disc on the slice
        self.fill_3d = False  # flood fill: through the volume instead of one slice
        self.component_3d = True  # component tool: the whole 3-D region (a hematoma), not only its slice
        self.threshold = False  # brush/polygon paint only voxels within the HU range
        self.preset = "fresh_blood"
        self.custom_range = (40.0, 90.0)
        self.mode = PaintMode.PROTECT_LOCKED

    def set(self, **values) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise AttributeError(key)
            setattr(self, key, value)
        self.radius_mm = float(min(max(self.radius_mm, MIN_RADIUS_MM), MAX_RADIUS_MM))
        self.mode = PaintMode(self.mode)
        self.changed.emit()

    @property
    def range(self) -> tuple[float, float]:
        """The HU range of the chosen preset (or the custom one); flood fill always uses it."""
        return HU_PRESETS[self.preset] if self.preset in HU_PRESETS else tuple(self.custom_range)

    @property
    def paint_range(self) -> tuple[float, float] | None:
        """The HU range that limits painting, or None with the threshold off."""
        return self.range if self.threshold else None

    def grow_brush(self, factor: float) -> None:
        self.set(radius_mm=self.radius_mm * factor)


def _spin(lo, hi, decimals, suffix, tip) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSuffix(suffix)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


class OptionsBar(QToolBar):
    """The options row: each widget group is shown only when the active tool lists it in ``options``."""

    def __init__(self, options: ToolOptions, parent=None):
        super().__init__("Tool options", parent)
        self.setObjectName("tool_options")
        self.opts = options
        self.size = _spin(2 * MIN_RADIUS_MM, 2 * MAX_RADIUS_MM, 1, " mm",
                          "brush diameter in mm ([ and ] or Shift+wheel change it; the circle shows it)")
        self.size.setSingleStep(1.0)
        self.sphere = QCheckBox("3-D ball")
        self.sphere.setToolTip("paint a ball across slices instead of a disc on this slice")
        self.fill_3d = QCheckBox("3-D")
        self.fill_3d.setToolTip("fill the connected region through the whole volume, not only this slice")
        self.component_3d = QCheckBox("3-D")
        self.component_3d.setToolTip("the region connected through the whole volume, not only on this slice")
        self.threshold = QCheckBox("HU limit")
        self.threshold.setToolTip("paint only voxels within the HU range (T)")
        self.preset = QComboBox()
        for key, title in PRESET_TITLES.items():
            self.preset.addItem(title, key)
        self.lo = _spin(HU_MIN, HU_MAX, 0, " HU", "lowest HU painted / filled")
        self.lo.setSpecialValueText("-inf")
        self.hi = _spin(HU_MIN, HU_MAX, 0, " HU", "highest HU painted / filled")
        self.mode = QComboBox()
        for mode, title in MODE_TITLES.items():
            self.mode.addItem(title, mode.value)
        self.mode.setToolTip("which voxels a stroke may change")
        self.groups = {
            "size": [self.addWidget(QLabel(" Diameter ")), self.addWidget(self.size)],
            "sphere": [self.addWidget(self.sphere)],
            "fill_3d": [self.addWidget(self.fill_3d)],
            "component_3d": [self.addWidget(self.component_3d)],
            "threshold": [self.addWidget(self.threshold)],
            "range": [self.addWidget(self.preset), self.addWidget(self.lo), self.addWidget(QLabel(" to ")),
                      self.addWidget(self.hi)],
            "mode": [self.addSeparator(), self.addWidget(QLabel(" Paint ")), self.addWidget(self.mode)],
        }
        self.hint = QLabel()  # always shown: keeps the bar's height when a tool has no options
        self.hint.setStyleSheet("color: #888; padding-left: 8px;")
        self.addWidget(self.hint)
        self.setMinimumHeight(self.sizeHint().height())  # all groups shown: the views do not move on tool changes
        self.size.valueChanged.connect(lambda v: self.opts.set(radius_mm=v / 2))
        self.sphere.toggled.connect(lambda on: self.opts.set(sphere=on))
        self.fill_3d.toggled.connect(lambda on: self.opts.set(fill_3d=on))
        self.component_3d.toggled.connect(lambda on: self.opts.set(component_3d=on))
        self.threshold.toggled.connect(lambda on: self.opts.set(threshold=on))
        self.preset.currentIndexChanged.connect(lambda _: self.opts.set(preset=self.preset.currentData()))
        self.lo.valueChanged.connect(self._custom_edited)
        self.hi.valueChanged.connect(self._custom_edited)
        self.mode.currentIndexChanged.connect(lambda _: self.opts.set(mode=self.mode.currentData()))
        options.changed.connect(self.sync)
        self.sync()

    def _custom_edited(self, *_) -> None:
        if self._syncing:
            return
        lo = -math.inf if self.lo.value() <= HU_MIN else self.lo.value()
        self.opts.set(preset="custom", custom_range=(lo, self.hi.value()))

    def sync(self) -> None:
        """Show the state of the options (after a shortcut or a programmatic change)."""
        self._syncing = True
        o = self.opts
        widgets = (self.size, self.sphere, self.fill_3d, self.component_3d, self.threshold, self.preset, self.lo,
                   self.hi, self.mode)
        for w in widgets:
            w.blockSignals(True)
        self.size.setValue(2 * o.radius_mm)
        self.sphere.setChecked(o.sphere)
        self.fill_3d.setChecked(o.fill_3d)
        self.component_3d.setChecked(o.component_3d)
        self.threshold.setChecked(o.threshold)
        self.preset.setCurrentIndex(self.preset.findData(o.preset))
        lo, hi = o.range
        self.lo.setValue(max(lo, HU_MIN))
        self.hi.setValue(min(hi, HU_MAX))
        self.mode.setCurrentIndex(self.mode.findData(PaintMode(o.mode).value))
        for w in widgets:
            w.blockSignals(False)
        self._syncing = False

    def show_for(self, tool) -> None:
        """Show the option groups the tool uses (none for navigation)."""
        used = set(getattr(tool, "options", ())) if tool is not None else set()
        if "threshold" in used or "fill_range" in used:
            used.add("range")
        self.hint.setText(f"{tool.title}: {tool.tip}" if tool is not None else
                          "Navigate: click moves the crosshair, drag pans; pick a tool (B E P F R) to edit")
        for name, actions in self.groups.items():
            for action in actions:
                action.setVisible(name in used)
