"""Brush and eraser: a round brush (radius in mm) swept along the drag, a disc on the slice or a 3-D ball.

The outline of the brush follows the mouse in the view. With the HU limit on, only voxels within the
range are painted. One drag is one undo step.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPen, QColor
from PySide6.QtWidgets import QGraphicsEllipseItem

from ctseg_core.edit import ops
from app.tools.base import EditTool
from app.tools.options import BRUSH_STEP
from app.tools.plane_ops import run_in_plane, stroke_point, to_plane


class BrushTool(EditTool):
    name = "brush"
    title = "Brush"
    shortcut = "B"
    tip = "paint the active class (keys 1-7; 0 = background)"
    options = ("size", "sphere", "threshold", "mode")
    erases = False

    def __init__(self, editor):
        super().__init__(editor)
        self._last = None  # previous stroke point (plane coordinates)
        self._plane = None
        self._cursor = None  # (view, QGraphicsEllipseItem, pg.TextItem with the diameter)

    def value(self) -> int:
        return 0 if self.erases else self.session.active_class

    # ---- stroke ----
    def mouse_press(self, ev) -> bool:
        if not self.ready(ev):
            return False
        self.editor.history.begin_stroke(self.name)
        self._plane, self._last = ev.plane, None
        self._paint(ev)
        return True

    def mouse_drag(self, ev) -> None:
        if self._plane is not None and ev.view.plane == self._plane:
            self._paint(ev)
        self.mouse_move(ev)

    def mouse_release(self, ev) -> None:
        if self._plane is None:
            return
        if ev is not None and ev.view.plane == self._plane:
            self._paint(ev)
        self._plane, self._last = None, None
        self.editor.commit()

    def escape(self) -> bool:
        if self._plane is None:
            return False
        self._plane, self._last = None, None
        self.editor.abort()
        return True

    def _paint(self, ev) -> None:
        point = stroke_point(ev)
        segment = [point] if self._last is None else [self._last, point]
        self._last = point
        o, plane = self.opts, ev.plane
        spacing = to_plane(plane, self.session.volume.spacing)
        value, policy, hu_range = self.value(), self.editor.policy(), o.paint_range

        def op(labels, hu):
            return ops.brush(labels, segment, spacing, o.radius_mm, value, policy=policy, sphere=o.sphere,
                             hu=hu, hu_range=hu_range)

        history = self.editor.history
        history.apply(run_in_plane(plane, op, history.labels, self.session.volume.array))

    def wheel(self, step: int) -> bool:
        """Shift+wheel: one notch up makes the brush BRUSH_STEP times larger, down smaller."""
        self.editor.options.grow_brush(BRUSH_STEP ** step)
        return True

    # ---- outline ----
    def mouse_move(self, ev) -> None:
        if ev is None:
            return
        view = ev.view
        if self._cursor is not None and self._cursor[0] is not view:
            self._remove_cursor()
        if self._cursor is None:
            item = QGraphicsEllipseItem()
            colour = QColor(255, 255, 255, 200) if not self.erases else QColor(255, 120, 120, 220)
            pen = QPen(colour)
            pen.setCosmetic(True)
            pen.setStyle(Qt.DashLine if self.erases else Qt.SolidLine)
            item.setPen(pen)
            view.add_overlay_item(item)
            text = pg.TextItem(color=colour, anchor=(0, 1))
            view.add_overlay_item(text)
            self._cursor = (view, item, text)
        self._place_outline(*ev.view_pos)
        for item in self._cursor[1:]:
            item.setVisible(ev.inside)

    def _place_outline(self, x: float, y: float) -> None:
        r = self.opts.radius_mm
        self._cursor[1].setRect(x - r, y - r, 2 * r, 2 * r)
        self._cursor[2].setText(f"⌀ {2 * r:.1f} mm")
        self._cursor[2].setPos(x + 0.71 * r, y - 0.71 * r)

    def refresh_outline(self) -> None:
        """Resize the outline and its label after a size change (keeps its centre)."""
        if self._cursor is not None:
            c = self._cursor[1].rect().center()
            self._place_outline(c.x(), c.y())

    @property
    def outline(self):
        return None if self._cursor is None else self._cursor[1]

    @property
    def size_label(self):
        return None if self._cursor is None else self._cursor[2]

    def _remove_cursor(self) -> None:
        if self._cursor is not None:
            view, *items = self._cursor
            for item in items:
                view.remove_overlay_item(item)
            self._cursor = None

    def deactivate(self) -> None:
        self.escape()
        self._remove_cursor()


class EraserTool(BrushTool):
    name = "eraser"
    title = "Eraser"
    shortcut = "E"
    tip = "erase to background (locked classes are kept unless the paint mode is 'overwrite everything')"
    options = ("size", "sphere", "threshold", "mode")
    erases = True
