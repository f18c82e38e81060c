"""Measurements drawn on the axial view: the midline lines and distance, a lesion's thickness.

On every slice where the midline structures were found: the ideal midline (green, from the anterior to
the posterior inner table) and the midline points (orange); on the slice of the largest shift also the
perpendicular distance (red) with its value. For the lesion chosen in the Lesions dock with a thickness,
the thickness line (white) on its slice. Items live in the view box's millimetre coordinates.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

IDEAL_PEN = pg.mkPen((60, 220, 90), width=2)
POINTS_BRUSH = pg.mkBrush(255, 170, 40)
DISTANCE_PEN = pg.mkPen((255, 60, 60), width=3)
THICKNESS_PEN = pg.mkPen((255, 255, 255), width=2)


class MeasurementOverlay:
    def __init__(self, view):
        self.view = view  # the axial SliceView
        self.midline = None
        self.lesion = None
        self.visible = True
        self.ideal = pg.PlotCurveItem(pen=IDEAL_PEN)
        self.points = pg.ScatterPlotItem(size=4, pen=None, brush=POINTS_BRUSH)
        self.distance = pg.PlotCurveItem(pen=DISTANCE_PEN)
        self.label = pg.TextItem(color=(255, 90, 90), anchor=(0, 1))
        self.thickness = pg.PlotCurveItem(pen=THICKNESS_PEN)
        self.thickness_label = pg.TextItem(color=(255, 255, 255), anchor=(0, 0))
        self.items = (self.ideal, self.points, self.distance, self.label, self.thickness, self.thickness_label)
        for item in self.items:
            view.add_overlay_item(item)
        view.session.position_changed.connect(lambda *_: self.refresh())
        view.session.volume_changed.connect(self.clear)
        self.refresh()

    def set_midline(self, midline) -> None:
        self.midline = midline
        self.refresh()

    def set_lesion(self, lesion) -> None:
        self.lesion = lesion
        self.refresh()

    def set_visible(self, on: bool) -> None:
        self.visible = bool(on)
        self.refresh()

    def clear(self) -> None:
        self.midline = self.lesion = None
        self.refresh()

    def _xy(self, points) -> tuple[np.ndarray, np.ndarray]:
        """View coordinates of (row, col) pixel positions (voxel centres)."""
        xy = [self.view.index_to_view(r + 0.5, c + 0.5) for r, c in points]
        return np.array([p[0] for p in xy], float), np.array([p[1] for p in xy], float)

    def refresh(self) -> None:
        for item in self.items:
            item.setVisible(False)
        if not self.visible or self.view.plane is None or self.view.orientation != "axial":
            return
        k = self.view.slice_index
        m = self.midline
        here = m.slice(k) if m is not None and m.found else None
        if here is not None:
            self.ideal.setData(*self._xy(here.ideal_line))
            self.points.setData(*self._xy([(p.row, p.col) for p in here.points]))
            self.ideal.setVisible(True)
            self.points.setVisible(True)
            if k == m.slice_index:
                x, y = self._xy([m.foot, m.point])
                self.distance.setData(x, y)
                self.label.setText(f"{m.shift_mm:.1f} mm")
                self.label.setPos(float(x[1]) + 3, float(y[1]) - 3)
                self.distance.setVisible(True)
                self.label.setVisible(True)
        t = None if self.lesion is None else self.lesion.thickness
        if t is not None and int(t.slice_index) == k:
            x, y = self._xy([t.inner[1:], t.outer[1:]])
            self.thickness.setData(x, y)
            self.thickness_label.setText(f"{t.mm:.1f} mm")
            self.thickness_label.setPos(float(x.mean()) + 3, float(y.mean()) + 3)
            self.thickness.setVisible(True)
            self.thickness_label.setVisible(True)
