"""One 2-D slice view (axial, coronal or sagittal) of the session's scan, labels and uncertainty.

Three pyqtgraph ImageItems in a view box scaled to millimetres (true aspect ratio): HU with window
levels, labels with an RGBA lookup table (the overlay), and uncertainty. Crosshair lines follow the
session's position. Mouse: wheel = slices, Ctrl+wheel = zoom, Shift+wheel = the tool's size (brush),
right-drag = window/level, middle-drag = pan, left = the active tool (see app.viewer.interaction) or,
with no tool, click to move the crosshair and drag to pan; double-click (or the header's button) shows
the view alone. Keys: Up/Down, PageUp/PageDown (10 slices), Home/End.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

import app.viewer  # noqa: F401  (pyqtgraph configuration)
from ctseg_core.slices import location_text, slice_label, slice_number, source_text
from app.session import Session
from app.viewer.interaction import SliceMouseEvent
from app.viewer.overlay import class_lut, outline, uncertainty_lut
from app.viewer.plane import ViewPlane, view_plane

_PATIENT_LETTERS = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A", (2, 1): "S", (2, -1): "I"}
_COARSE_REDRAW_MS = 40  # coalesce bursts of label updates (inference fills slices quickly)


class _SliceViewBox(pg.ViewBox):
    """A view box that hands mouse input to its SliceView instead of pyqtgraph's defaults."""

    def __init__(self, owner: "SliceView"):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._owner = owner

    def wheelEvent(self, ev, axis=None):
        step = 1 if ev.delta() > 0 else -1
        if ev.modifiers() & Qt.ShiftModifier and self._owner.wheel_tool(step):
            ev.accept()  # Shift+wheel (also with Ctrl): the tool's size, as in Slicer / ITK-SNAP
        elif ev.modifiers() & Qt.ControlModifier:
            super().wheelEvent(ev, axis)
        else:
            self._owner.scroll(step)
            ev.accept()

    def mouseDragEvent(self, ev, axis=None):
        if not self._owner.handle_drag(ev):
            if ev.button() in (Qt.LeftButton, Qt.MiddleButton):
                self._pan(ev)

    def _pan(self, ev):
        ev.accept()
        tr = self.childGroup.transform()
        tr = pg.functions.invertQTransform(tr)
        delta = tr.map(ev.lastPos()) - tr.map(ev.pos())
        self.translateBy(x=delta.x(), y=delta.y())

    def mouseClickEvent(self, ev):
        self._owner.handle_click(ev)


class SliceView(QWidget):
    cursor_moved = Signal(object)  # (k, j, i) voxel under the mouse, or None when off the image
    maximise_requested = Signal()  # double-click or the header's button: show this view alone (again: all)

    def __init__(self, session: Session, orientation: str = "axial", parent=None):
        super().__init__(parent)
        self.session = session
        self.orientation = orientation
        self.plane: ViewPlane | None = None
        self._slice_index = -1
        self._drag_tool = None
        self._wl_start = None
        self._hover_pos = None  # scene position of the mouse over this view (None: elsewhere)

        self.header = QLabel(orientation.capitalize())
        self.header.setStyleSheet("color: #ddd; background: #222; padding: 2px 6px;")
        self.header.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # a narrow view clips, never widens
        self.maximise_button = QToolButton()
        self.maximise_button.setText("⤢")
        self.maximise_button.setAutoRaise(True)
        self.maximise_button.setToolTip("show this view alone, or all views again (or double-click the image)")
        self.maximise_button.setStyleSheet("color: #ddd; background: #222;")
        self.maximise_button.clicked.connect(self.maximise_requested)
        header_row = QHBoxLayout()
        header_row.setContentsMargins(0, 0, 0, 0)
        header_row.setSpacing(0)
        header_row.addWidget(self.header, 1)
        header_row.addWidget(self.maximise_button)
        self.graphics = pg.GraphicsView(background="k")
        self.viewbox = _SliceViewBox(self)
        self.graphics.setCentralItem(self.viewbox)
        self.graphics.setFocusPolicy(Qt.StrongFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header_row)
        layout.addWidget(self.graphics, 1)
        self.setFocusProxy(self.graphics)
        self.graphics.keyPressEvent = self.keyPressEvent

        self.hu_item = pg.ImageItem(autoDownsample=False)
        self.label_item = pg.ImageItem()
        self.label_item.setLookupTable(class_lut(session.class_visible))
        self.uncertainty_item = pg.ImageItem()
        self.uncertainty_item.setLookupTable(uncertainty_lut())
        for z, item in enumerate((self.hu_item, self.label_item, self.uncertainty_item)):
            item.setZValue(z)
            self.viewbox.addItem(item)
        pen = pg.mkPen((80, 200, 255, 150), width=1)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        for line in (self.hline, self.vline):
            line.setVisible(False)  # until a scan is open
            line.setZValue(10)
            self.viewbox.addItem(line, ignoreBounds=True)
        self._edge_labels = {side: self._make_edge_label() for side in ("top", "bottom", "left", "right")}

        self._labels_timer = QTimer(self, singleShot=True, interval=_COARSE_REDRAW_MS)
        self._labels_timer.timeout.connect(self._redraw_labels)
        self._uncert_timer = QTimer(self, singleShot=True, interval=_COARSE_REDRAW_MS)
        self._uncert_timer.timeout.connect(self._redraw_uncertainty)

        session.volume_changed.connect(self._on_volume)
        session.position_changed.connect(self._on_position)
        session.window_changed.connect(self._on_window)
        session.labels_changed.connect(self._on_labels_changed)
        session.uncertainty_changed.connect(self._on_uncertainty_changed)
        session.display_changed.connect(self._on_display)
        self.graphics.scene().sigMouseMoved.connect(self._on_hover)
        if session.has_volume():
            self._on_volume()

    # ---- public ----
    @property
    def slice_index(self) -> int:
        return self._slice_index

    def slice_count(self) -> int:
        return self.session.volume.shape[self.plane.slice_axis] if self.plane else 0

    def scroll(self, step: int) -> None:
        if self.plane is None:
            return
        pos = list(self.session.position)
        pos[self.plane.slice_axis] += step
        self.session.set_position(*pos)

    def wheel_tool(self, step: int) -> bool:
        """Hand a Shift+wheel notch to the active tool (``tool.wheel(step)``); False when it has no use for it."""
        wheel = getattr(self.session.active_tool, "wheel", None)
        return bool(wheel is not None and wheel(step))

    def set_slice(self, index: int) -> None:
        if self.plane is None:
            return
        pos = list(self.session.position)
        pos[self.plane.slice_axis] = index
        self.session.set_position(*pos)

    def reset_zoom(self) -> None:
        self.viewbox.autoRange(padding=0.02)

    def add_overlay_item(self, item) -> None:
        """Let a tool draw (brush outline, polygon) above the overlay, in millimetre view coordinates."""
        item.setZValue(20)
        self.viewbox.addItem(item, ignoreBounds=True)

    def remove_overlay_item(self, item) -> None:
        self.viewbox.removeItem(item)

    def index_to_view(self, row: float, col: float) -> tuple[float, float]:
        """View-box coordinates (mm) of a fractional (row, col) pixel position in this plane."""
        sr, sc = self.plane.spacing(self.session.volume.geometry)
        return col * sc, row * sr

    def view_to_index(self, x: float, y: float) -> tuple[float, float, float]:
        sr, sc = self.plane.spacing(self.session.volume.geometry)
        return self.plane.to_index(self._slice_index, y / sr, x / sc)

    def rendered_overlay(self) -> np.ndarray | None:
        """The RGBA pixels the overlay item last rendered (for tests and checks)."""
        self.label_item.render()
        if self.label_item.qimage is None:
            return None
        from PySide6.QtGui import QImage

        rgba = self.label_item.qimage.convertToFormat(QImage.Format_RGBA8888)
        return pg.functions.ndarray_from_qimage(rgba).copy()

    # ---- session -> view ----
    def _on_volume(self) -> None:
        vol = self.session.volume
        self.plane = view_plane(self.orientation, vol.geometry)
        self.viewbox.invertY(self.plane.invert_y)
        self.viewbox.invertX(self.plane.invert_x)
        sr, sc = self.plane.spacing(vol.geometry)
        tr = QTransform.fromScale(sc, sr)
        for item in (self.hu_item, self.label_item, self.uncertainty_item):
            item.setTransform(tr)
        self._slice_index = -1
        self.hline.setVisible(True)
        self.vline.setVisible(True)
        self._update_edge_labels()
        self._on_position(*self.session.position)
        self._on_window(self.session.window.level, self.session.window.width)
        self.reset_zoom()

    def _on_position(self, k: int, j: int, i: int) -> None:
        if self.plane is None:
            return
        pos = (k, j, i)
        index = pos[self.plane.slice_axis]
        x, y = self.index_to_view(pos[self.plane.row_axis] + 0.5, pos[self.plane.col_axis] + 0.5)
        self.vline.setValue(x)
        self.hline.setValue(y)
        if index != self._slice_index:
            self._slice_index = index
            self.redraw()
            if self._hover_pos is not None:  # keys or the wheel changed the slice under a still mouse
                self._on_hover(self._hover_pos)

    def redraw(self) -> None:
        """Draw the current slice's HU, labels and uncertainty now."""
        self._redraw_hu()
        self._redraw_labels()
        self._redraw_uncertainty()
        self._update_header()

    def _redraw_hu(self) -> None:
        hu = self.plane.slice_of(self.session.volume.array, self._slice_index)
        w = self.session.window
        self.hu_item.setImage(hu, autoLevels=False, levels=(w.low, w.high))

    def _redraw_labels(self) -> None:
        self._labels_timer.stop()
        labels = self.session.displayed_labels()
        if labels is None or self.plane is None:
            return
        lab = self.plane.slice_of(labels.array, self._slice_index)
        if self.session.outline:
            lab = outline(lab)
        self.label_item.setImage(lab, autoLevels=False, levels=(0, 255))
        self.label_item.setOpacity(self.session.opacity)
        self.label_item.setVisible(self.session.show_labels)

    def _redraw_uncertainty(self) -> None:
        self._uncert_timer.stop()
        show = self.session.show_uncertainty and self.session.uncertainty is not None
        self.uncertainty_item.setVisible(show)
        if not show or self.plane is None:
            return
        u = np.nan_to_num(self.plane.slice_of(self.session.uncertainty, self._slice_index), nan=0.0)
        self.uncertainty_item.setImage(u, autoLevels=False, levels=(0.0, 1.0))

    def _on_window(self, level: float, width: float) -> None:
        if self.plane is not None:
            self.hu_item.setLevels((level - width / 2, level + width / 2))

    def _on_labels_changed(self, which: str, box) -> None:
        if self.plane is None or which != self.session.show_source or not self._box_hits_slice(box):
            return
        if self.session.inference_running:
            if not self._labels_timer.isActive():
                self._labels_timer.start()
        else:
            self._redraw_labels()

    def _on_uncertainty_changed(self, box) -> None:
        if self.session.show_uncertainty and self._box_hits_slice(box) and not self._uncert_timer.isActive():
            self._uncert_timer.start()

    def _on_display(self) -> None:
        self.label_item.setLookupTable(class_lut(self.session.class_visible))
        if self.plane is not None:
            self._redraw_labels()
            self._redraw_uncertainty()

    def _box_hits_slice(self, box) -> bool:
        if box is None or self.plane is None:
            return True
        a = self.plane.slice_axis
        return box[2 * a] <= self._slice_index < box[2 * a + 1]

    def _update_header(self) -> None:
        """ "Axial  slice 21 / 37 ≈ image 19 (1.1 mm away)  S 49.3 mm": 1-based, the nearest scanner image,
        and the plane's location (the same wherever the crosshair is on it)."""
        vol, axis, index = self.session.volume, self.plane.slice_axis, self._slice_index
        number = slice_label(vol, index) if axis == 0 else f"slice {slice_number(index)} / {self.slice_count()}"
        text = f"{self.orientation.capitalize()}   {number}   {location_text(vol.geometry, axis, index)}"
        self.header.setText(text)
        self.header.setToolTip(text)

    def _make_edge_label(self) -> QLabel:
        label = QLabel(self.graphics)
        label.setStyleSheet("color: #f0c040; font-weight: bold; background: transparent;")
        return label

    def _update_edge_labels(self) -> None:
        from app.viewer.plane import patient_axes

        axes, signs = patient_axes(self.session.volume.geometry)
        p = self.plane
        down = _PATIENT_LETTERS[(axes[p.row_axis], signs[p.row_axis] * (-1 if p.invert_y else 1) * -1)]
        right = _PATIENT_LETTERS[(axes[p.col_axis], signs[p.col_axis] * (-1 if p.invert_x else 1))]
        opposite = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
        texts = {"bottom": down, "top": opposite[down], "right": right, "left": opposite[right]}
        for side, text in texts.items():
            self._edge_labels[side].setText(text)
            self._edge_labels[side].adjustSize()
        self._place_edge_labels()

    def _place_edge_labels(self) -> None:
        w, h = self.graphics.width(), self.graphics.height()
        lab = self._edge_labels
        lab["top"].move((w - lab["top"].width()) // 2, 2)
        lab["bottom"].move((w - lab["bottom"].width()) // 2, h - lab["bottom"].height() - 2)
        lab["left"].move(4, (h - lab["left"].height()) // 2)
        lab["right"].move(w - lab["right"].width() - 4, (h - lab["right"].height()) // 2)

    def leaveEvent(self, ev):
        super().leaveEvent(ev)
        self._hover_pos = None
        self.cursor_moved.emit(None)

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self._place_edge_labels()

    # ---- mouse and keys -> session / tool ----
    def _mouse_event(self, scene_pos, button, modifiers) -> SliceMouseEvent | None:
        if self.plane is None:
            return None
        p = self.viewbox.mapSceneToView(QPointF(scene_pos))
        index = self.view_to_index(p.x(), p.y())
        shape = self.session.volume.shape
        inside = all(0 <= v < n for v, n in zip(index, shape))
        voxel = tuple(int(min(max(np.floor(v), 0), n - 1)) for v, n in zip(index, shape))
        return SliceMouseEvent(self, self.plane, index, voxel, inside, button, modifiers, (p.x(), p.y()))

    def handle_drag(self, ev) -> bool:
        """Window/level on right-drag, the active tool on left-drag; False lets the view box pan."""
        if self.plane is None:
            return False
        if ev.button() == Qt.RightButton:
            self._window_drag(ev)
            return True
        if ev.button() != Qt.LeftButton:
            return False
        tool = self.session.active_tool
        if ev.isStart():
            self._drag_tool = None
            press = self._mouse_event(ev.buttonDownScenePos(), ev.button(), ev.modifiers())
            if tool is not None and tool.mouse_press(press):
                self._drag_tool = tool
        if self._drag_tool is None:
            return False
        ev.accept()
        mev = self._mouse_event(ev.scenePos(), ev.button(), ev.modifiers())
        if ev.isFinish():
            self._drag_tool.mouse_release(mev)
            self._drag_tool = None
        else:
            self._drag_tool.mouse_drag(mev)
        return True

    def _window_drag(self, ev) -> None:
        ev.accept()
        if ev.isStart():
            self._wl_start = (self.session.window.level, self.session.window.width)
        if self._wl_start is None:
            return
        d = ev.screenPos() - ev.buttonDownScreenPos()
        level0, width0 = self._wl_start
        scale = max(width0, 20.0) / 200.0  # 200 px of motion = the current width
        self.session.set_window(level0 - d.y() * scale, width0 + d.x() * scale)
        if ev.isFinish():
            self._wl_start = None

    def handle_click(self, ev) -> None:
        if self.plane is None:
            return
        if ev.button() == Qt.LeftButton and ev.double():  # the first click already went to the tool
            ev.accept()
            self.maximise_requested.emit()
            return
        mev = self._mouse_event(ev.scenePos(), ev.button(), ev.modifiers())
        tool = self.session.active_tool
        if ev.button() == Qt.LeftButton:
            ev.accept()
            if tool is not None and tool.mouse_press(mev):
                tool.mouse_release(mev)
            elif mev.inside:
                self.session.set_position(*mev.voxel)
            self.graphics.setFocus()

    def _on_hover(self, scene_pos) -> None:
        mev = self._mouse_event(scene_pos, Qt.NoButton, Qt.NoModifier)
        if mev is None:
            return
        self._hover_pos = QPointF(scene_pos)
        self.cursor_moved.emit(mev.voxel if mev.inside else None)
        tool = self.session.active_tool
        if tool is not None:
            tool.mouse_move(mev)

    def keyPressEvent(self, ev):
        steps = {Qt.Key_Up: 1, Qt.Key_Down: -1, Qt.Key_PageUp: 10, Qt.Key_PageDown: -10}
        if self.plane is not None and ev.key() in steps:
            self.scroll(steps[ev.key()])
        elif self.plane is not None and ev.key() == Qt.Key_Home:
            self.set_slice(0)
        elif self.plane is not None and ev.key() == Qt.Key_End:
            self.set_slice(self.slice_count() - 1)
        else:
            QWidget.keyPressEvent(self, ev)
            return
        ev.accept()


def describe_voxel(volume, k: int, j: int, i: int) -> str:
    """Status-bar text for a voxel: slice (1-based, with the nearest source image), row and column
    (1-based), HU and LPS position in mm."""
    hu = float(volume.array[k, j, i])
    x, y, z = volume.geometry.index_to_physical(k, j, i)
    source = source_text(volume, k)
    return (f"slice {slice_number(k)}{' ' + source if source else ''}, row {j + 1}, column {i + 1}   HU {hu:.0f}"
            f"   LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")
