"""Run a ``ctseg_core.edit`` operation in the plane of a slice view.

The core operations work on (z, y, x) arrays and treat axis 0 as "the slice" (2-D brush, polygon,
2-D fill). A coronal or sagittal view steps through another axis, so the arrays are viewed (no copy)
with axes (slice, row, column) of the plane, the operation runs there, and its delta is mapped back.
"""

from __future__ import annotations

import numpy as np

from ctseg_core.edit import Delta


def plane_axes(plane) -> tuple[int, int, int]:
    """Array axes (slice, row, column) of a view plane."""
    return plane.slice_axis, plane.row_axis, plane.col_axis


def to_plane(plane, point) -> tuple[float, float, float]:
    """A (k, j, i) array point (or spacing) in the plane's (slice, row, column) order."""
    return tuple(float(point[a]) for a in plane_axes(plane))


def stroke_point(ev) -> tuple[float, float, float]:
    """The mouse position as a voxel-centre coordinate (slice, row, column) in the plane.

    The view's fractional index puts voxel n between n and n+1 (centre n + 0.5); the core ops put voxel
    centres on integers, hence the half-voxel shift on the in-plane axes.
    """
    s, r, c = to_plane(ev.plane, ev.index)
    return float(ev.view.slice_index), r - 0.5, c - 0.5


def run_in_plane(plane, op, labels: np.ndarray, *arrays) -> Delta:
    """``op(labels_p, *arrays_p)`` on the arrays viewed in the plane's axes; the delta in array space.

    ``op`` must write one class value (all core paint/fill ops do).
    """
    perm = plane_axes(plane)
    if perm == (0, 1, 2):
        return op(labels, *arrays)
    view = [None if a is None else np.transpose(a, perm) for a in (labels, *arrays)]
    delta = op(*view)
    if not delta:
        return delta
    inverse = tuple(int(a) for a in np.argsort(perm))
    lo = delta.bbox[0::2]
    offset = [0, 0, 0]
    for p, axis in enumerate(perm):
        offset[axis] = lo[p]
    return Delta.write(labels, tuple(offset), np.transpose(delta.mask, inverse), int(delta.new[0]))
