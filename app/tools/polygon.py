"""Polygon / lasso fill on one slice: drag to draw a lasso (filled on release), or click vertices and
close the polygon by clicking the first vertex again or double-clicking. Esc drops it. Honours the HU
limit and the paint mode."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QPointF

from ctseg_core.edit import ops
from app.tools.base import EditTool
from app.tools.plane_ops import run_in_plane, stroke_point

CLOSE_DISTANCE_PX = 8.0  # a click this close (screen pixels) to the first or the last vertex closes the polygon


class PolygonTool(EditTool):
    name = "polygon"
    title = "Polygon"
    shortcut = "P"
    tip = ("drag a lasso, or click vertices and close with a click on the first one or a double-click; "
           "the inside gets the active class")
    options = ("threshold", "mode")

    def __init__(self, editor):
        super().__init__(editor)
        self._view = None
        self._slice = None
        self._vertices: list[tuple[float, float]] = []  # (row, col) voxel-centre coordinates in the plane
        self._dragged = False
        self._curve = None

    def mouse_press(self, ev) -> bool:
        if not self.ready(ev):
            return False
        s, r, c = stroke_point(ev)
        if self._vertices and (ev.view is not self._view or s != self._slice):
            self.escape()
        if not self._vertices:
            self._view, self._slice = ev.view, s
        elif len(self._vertices) >= 3 and self._closes(r, c):
            self.close()
            return True
        self._dragged = False
        self._add(r, c)
        return True

    def mouse_drag(self, ev) -> None:
        if self._vertices and ev.view is self._view:
            self._dragged = True
            self._add(*stroke_point(ev)[1:])

    def mouse_release(self, ev) -> None:
        if not self._vertices:
            return
        if self._dragged:  # a lasso: close it now
            if ev is not None and ev.view is self._view:
                self._add(*stroke_point(ev)[1:])
            self.close()

    def _screen(self, r: float, c: float):
        x, y = self._view.index_to_view(r + 0.5, c + 0.5)
        return self._view.viewbox.mapViewToScene(QPointF(x, y))

    def _closes(self, r, c) -> bool:
        """A click on the first vertex (closing the loop) or on the last one (a double-click)."""
        p = self._screen(r, c)
        return any(math.hypot(p.x() - q.x(), p.y() - q.y()) <= CLOSE_DISTANCE_PX
                   for q in (self._screen(*self._vertices[0]), self._screen(*self._vertices[-1])))

    def _add(self, r: float, c: float) -> None:
        if self._vertices and self._vertices[-1] == (r, c):
            return
        self._vertices.append((r, c))
        self._draw()

    def close(self) -> None:
        """Fill the polygon drawn so far (at least 3 vertices) and start over."""
        vertices, plane, z = self._vertices, self._view.plane if self._view else None, self._slice
        self._clear()
        if len(vertices) < 3 or plane is None:
            return
        value, policy, hu_range = self.session.active_class, self.editor.policy(), self.opts.paint_range

        def op(labels, hu):
            return ops.polygon_fill(labels, int(z), vertices, value, policy=policy, hu=hu, hu_range=hu_range)

        history = self.editor.history
        self.editor.apply_step(self.name, run_in_plane(plane, op, history.labels, self.session.volume.array))

    @property
    def vertices(self) -> list[tuple[float, float]]:
        return list(self._vertices)

    def _draw(self) -> None:
        if self._curve is None:
            self._curve = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 0, 220), width=1.5))
            self._view.add_overlay_item(self._curve)
        pts = [self._view.index_to_view(r + 0.5, c + 0.5) for r, c in self._vertices]
        pts.append(pts[0])
        self._curve.setData([p[0] for p in pts], [p[1] for p in pts])

    def _clear(self) -> None:
        if self._curve is not None and self._view is not None:
            self._view.remove_overlay_item(self._curve)
        self._curve, self._view, self._slice, self._vertices, self._dragged = None, None, None, [], False

    def escape(self) -> bool:
        had = bool(self._vertices)
        self._clear()
        return had

    def deactivate(self) -> None:
        self._clear()
