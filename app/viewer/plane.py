"""Which array axes a slice view shows, and how to flip them into radiological display orientation.

Array axes are (0, 1, 2) = (k, j, i) = (z, y, x) index axes. Each index axis is matched to the patient
axis (LPS x, y, z) its direction vector is closest to, so a scan stored in any orientation is shown:
- axial:    anterior at the top, patient's right on the image left (radiological convention),
- coronal:  superior at the top, patient's right on the image left,
- sagittal: superior at the top, anterior on the image left.
Flips are done by the view box (no copies of the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctseg_core.volume import Geometry

# per view: (patient axis across the slices, patient axis down the rows, patient axis along the columns,
#            patient direction that should point down the screen, ... that should point to the screen right)
_VIEWS = {
    "axial": (2, 1, 0, +1, +1),  # rows along y (posterior down), columns along x (patient left to the right)
    "coronal": (1, 2, 0, -1, +1),  # rows along z (inferior down), columns along x
    "sagittal": (0, 2, 1, -1, +1),  # rows along z, columns along y (posterior to the right)
}
ORIENTATIONS = tuple(_VIEWS)


@dataclass(frozen=True)
class ViewPlane:
    name: str
    slice_axis: int  # array axis (0=k, 1=j, 2=i) that the view steps through
    row_axis: int  # array axis shown down the image rows
    col_axis: int  # array axis shown along the image columns
    invert_y: bool  # view box shows row 0 at the top
    invert_x: bool  # view box shows column 0 at the right

    def slice_of(self, array: np.ndarray, index: int) -> np.ndarray:
        """The 2-D (rows, cols) view of ``array`` (z, y, x) at ``index`` along the slice axis (no copy)."""
        plane = np.take(array, index, axis=self.slice_axis) if self.slice_axis != 0 else array[index]
        return plane.T if self.row_axis > self.col_axis else plane

    def to_index(self, slice_index: float, row: float, col: float) -> tuple[float, float, float]:
        """Array index (k, j, i) of a point in this plane."""
        out = [0.0, 0.0, 0.0]
        out[self.slice_axis], out[self.row_axis], out[self.col_axis] = slice_index, row, col
        return tuple(out)

    def spacing(self, geometry: Geometry) -> tuple[float, float]:
        """(row spacing, column spacing) in mm."""
        return geometry.spacing[self.row_axis], geometry.spacing[self.col_axis]


def patient_axes(geometry: Geometry) -> tuple[list[int], list[int]]:
    """For each array axis (k, j, i): the patient axis (0=x, 1=y, 2=z) it runs along, and its sign."""
    d = geometry.direction_matrix  # column c: patient direction of index axis c in (i, j, k) order
    axes, signs = [0, 0, 0], [1, 1, 1]
    used: set[int] = set()
    for array_axis, ijk in ((0, 2), (1, 1), (2, 0)):
        col = d[:, ijk]
        order = np.argsort(-np.abs(col))
        p = int(next(a for a in order if a not in used))
        used.add(p)
        axes[array_axis], signs[array_axis] = p, (1 if col[p] >= 0 else -1)
    return axes, signs


def view_plane(name: str, geometry: Geometry) -> ViewPlane:
    slice_p, row_p, col_p, down, right = _VIEWS[name]
    axes, signs = patient_axes(geometry)
    array_axis = {p: a for a, p in enumerate(axes)}
    s, r, c = array_axis[slice_p], array_axis[row_p], array_axis[col_p]
    # rows increase towards the patient direction signs[r] * row_p; show row 0 on top when that is "down"
    invert_y = signs[r] == down
    invert_x = signs[c] != right
    return ViewPlane(name, s, r, c, invert_y, invert_x)
