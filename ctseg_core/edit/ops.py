"""Edit operations on a label array (uint8, z, y, x). Each takes numpy arrays and returns a ``Delta``.

The operations do not modify ``labels``: the caller applies the delta, normally through
``History.apply`` (which records it for undo) or ``delta.apply(labels)``. Positions are voxel indices
(z, y, x) as floats (a mouse position mapped onto the slice); sizes are in mm and converted with the
scan's spacing (z, y, x), so a round brush is an ellipse in pixels where y and x spacing differ.

Which voxels a write may change is decided by ``ctseg_core.edit.policy.writable`` (one rule for all).
Threshold-limited painting: pass ``hu`` (the HU array) and ``hu_range`` (lo, hi, inclusive), e.g.
``HU_PRESETS["fresh_blood"]``; voxels outside the range are not painted.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from ctseg_core.edit.delta import Delta
from ctseg_core.edit.policy import OVERWRITE, PaintPolicy, passable, writable

HU_PRESETS: dict[str, tuple[float, float]] = {
    "fresh_blood": (40.0, 90.0),
    "chronic_collection": (0.0, 30.0),
    "air": (-math.inf, -200.0),
}

Point = Sequence[float]  # (z, y, x) voxel index, may be fractional


def _in_range(hu: np.ndarray | None, hu_range, region) -> np.ndarray | bool:
    if hu_range is None:
        return True
    if hu is None:
        raise ValueError("hu_range given without the HU array")
    vals = hu[region]
    return (vals >= hu_range[0]) & (vals <= hu_range[1])


def _proposal(labels, region, want, value, policy, hu, hu_range) -> Delta:
    """The delta writing ``value`` over ``want`` (bool over ``region``), limited by HU range and policy."""
    want = want & _in_range(hu, hu_range, region) & writable(labels[region], value, policy)
    return Delta.write(labels, tuple(s.start for s in region), want, value)


def _clip_box(lo, hi, shape) -> tuple[slice, slice, slice] | None:
    lo = [max(0, int(math.floor(v))) for v in lo]
    hi = [min(n, int(math.ceil(v)) + 1) for v, n in zip(hi, shape)]
    if any(h <= a for a, h in zip(lo, hi)):
        return None
    return tuple(slice(a, h) for a, h in zip(lo, hi))


def _segment_distance_sq(grid_mm, a_mm, b_mm) -> np.ndarray:
    """Squared distance (mm^2) of each grid point to the segment a-b; grid_mm: list of broadcastable axes."""
    ab = b_mm - a_mm
    denom = float(ab @ ab)
    rel = [g - a for g, a in zip(grid_mm, a_mm)]
    if denom == 0.0:
        t = 0.0
    else:
        t = np.clip(sum(r * d for r, d in zip(rel, ab)) / denom, 0.0, 1.0)
    return sum((r - t * d) ** 2 for r, d in zip(rel, ab))


def brush(labels: np.ndarray, points: Sequence[Point], spacing, radius_mm: float, value: int, *,
          policy: PaintPolicy = OVERWRITE, sphere: bool = False, hu: np.ndarray | None = None,
          hu_range=None) -> Delta:
    """Paint ``value`` (0 = erase) with a round brush swept along the polyline ``points``.

    A voxel is painted when its centre lies within ``radius_mm`` of the swept path, measured in mm.
    2-D mode (``sphere=False``): a disc on the slice of the first point (all points must be on it).
    3-D mode: a ball in mm across slices. Consecutive mouse positions are joined, so a fast drag
    leaves no gaps: call it with (previous position, current position) on every mouse move.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    if pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError("points must be a sequence of (z, y, x)")
    sp = np.asarray(spacing, dtype=float)
    if not sphere:
        z = int(round(pts[0, 0]))
        if np.any(np.round(pts[:, 0]) != z):
            raise ValueError("a 2-D brush stroke must stay on one slice")
        pts = pts.copy()
        pts[:, 0] = z
    reach = radius_mm / sp
    if not sphere:
        reach[0] = 0.0
    region = _clip_box(pts.min(0) - reach, pts.max(0) + reach, labels.shape)
    if region is None:
        return Delta.empty()
    axes = [np.arange(s.start, s.stop, dtype=float) * d for s, d in zip(region, sp)]
    grid = [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]
    pts_mm = pts * sp
    r2 = radius_mm * radius_mm * (1 + 1e-9)
    want = np.zeros(tuple(s.stop - s.start for s in region), dtype=bool)
    pairs = zip(pts_mm, pts_mm[1:]) if len(pts_mm) > 1 else [(pts_mm[0], pts_mm[0])]
    for a, b in pairs:
        want |= _segment_distance_sq(grid, a, b) <= r2
    return _proposal(labels, region, want, value, policy, hu, hu_range)


def polygon_fill(labels: np.ndarray, z: int, vertices_yx: Sequence[Sequence[float]], value: int, *,
                 policy: PaintPolicy = OVERWRITE, hu: np.ndarray | None = None, hu_range=None) -> Delta:
    """Fill the closed polygon (lasso) with (y, x) vertices on slice ``z``: voxels whose centre is inside
    (even-odd rule)."""
    v = np.asarray(vertices_yx, dtype=float)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
        raise ValueError("a polygon needs at least 3 (y, x) vertices")
    region = _clip_box((z, *v.min(0)), (z, *v.max(0)), labels.shape)
    if region is None or not (0 <= z < labels.shape[0]):
        return Delta.empty()
    inside = _polygon_mask(v, region[1], region[2])
    return _proposal(labels, region, inside[None], value, policy, hu, hu_range)


def _polygon_mask(v: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Even-odd inside test of pixel centres: per edge, the crossings of each row toggle a prefix of columns."""
    ys = np.arange(rows.start, rows.stop, dtype=float)
    width = cols.stop - cols.start
    toggles = np.zeros((len(ys), width + 1), dtype=np.int32)
    a, b = v, np.roll(v, -1, axis=0)
    for (ya, xa), (yb, xb) in zip(a, b):
        crosses = (ya > ys) != (yb > ys)
        if not crosses.any():
            continue
        rows_hit = np.flatnonzero(crosses)
        x_at = xa + (ys[rows_hit] - ya) * (xb - xa) / (yb - ya)
        n_left = np.clip(np.ceil(x_at) - cols.start, 0, width).astype(int)  # columns with centre < x_at
        np.add.at(toggles, (rows_hit, 0), 1)
        np.add.at(toggles, (rows_hit, n_left), -1)
    return (np.cumsum(toggles[:, :width], axis=1) % 2).astype(bool)


def _slab(labels_shape, seed, three_d: bool) -> tuple[slice, slice, slice]:
    if three_d:
        return (slice(0, labels_shape[0]), slice(0, labels_shape[1]), slice(0, labels_shape[2]))
    z = int(seed[0])
    return (slice(z, z + 1), slice(0, labels_shape[1]), slice(0, labels_shape[2]))


def _component(mask: np.ndarray, seed_local) -> np.ndarray:
    """The face-connected component of ``mask`` holding ``seed_local`` (empty if the seed is not in it)."""
    if not mask[seed_local]:
        return np.zeros_like(mask)
    comp, _ = ndimage.label(mask)
    return comp == comp[seed_local]


def _seed(labels, seed) -> tuple[int, int, int]:
    s = tuple(int(round(c)) for c in seed)
    if not all(0 <= c < n for c, n in zip(s, labels.shape)):
        raise ValueError(f"seed {s} lies outside the volume {labels.shape}")
    return s


def flood_fill(labels: np.ndarray, hu: np.ndarray, seed: Point, hu_range, value: int, *,
               policy: PaintPolicy = OVERWRITE, three_d: bool = False) -> Delta:
    """Fill from ``seed`` the connected region of voxels with HU in ``hu_range`` (inclusive).

    The region spreads through voxels the policy lets ``value`` be written on (and voxels that hold it
    already), on the seed's slice (2-D) or through the volume (3-D, face connectivity).
    """
    s = _seed(labels, seed)
    region = _slab(labels.shape, s, three_d)
    local = (s[0] - region[0].start, s[1], s[2])
    ok = _in_range(hu, hu_range, region) & passable(labels[region], value, policy)
    comp = _component(ok, local)
    return _proposal(labels, region, comp, value, policy, None, None)


def relabel_component(labels: np.ndarray, seed: Point, value: int, *, policy: PaintPolicy = OVERWRITE,
                      three_d: bool = True) -> Delta:
    """Give the connected component of the class under ``seed`` the class ``value`` (0 removes it)."""
    s = _seed(labels, seed)
    cls = labels[s]
    if cls == 0:
        return Delta.empty()
    region = _slab(labels.shape, s, three_d)
    local = (s[0] - region[0].start, s[1], s[2])
    comp = _component(labels[region] == cls, local)
    return _proposal(labels, region, comp, value, policy, None, None)


def interpolate_slices(labels: np.ndarray, class_id: int, z0: int, z1: int, spacing, *,
                       policy: PaintPolicy = OVERWRITE) -> Delta:
    """Fill ``class_id`` on the slices strictly between ``z0`` and ``z1`` by shape-based interpolation.

    Signed distance maps (mm, negative inside) of the class on both slices are blended linearly by
    slice position; voxels where the blend is < 0 get the class. Both slices must hold the class.
    """
    z0, z1 = sorted((int(z0), int(z1)))
    a, b = labels[z0] == class_id, labels[z1] == class_id
    if not a.any() or not b.any():
        raise ValueError(f"class {class_id} must be drawn on both slices {z0} and {z1}")
    if z1 - z0 < 2:
        return Delta.empty()
    rows, cols = np.nonzero(a | b)
    pad = 2
    ys = slice(max(0, rows.min() - pad), min(labels.shape[1], rows.max() + 1 + pad))
    xs = slice(max(0, cols.min() - pad), min(labels.shape[2], cols.max() + 1 + pad))
    sampling = tuple(float(s) for s in spacing[1:])
    da, db = _signed_distance(a[ys, xs], sampling), _signed_distance(b[ys, xs], sampling)
    t = (np.arange(z0 + 1, z1) - z0) / (z1 - z0)
    want = ((1 - t)[:, None, None] * da[None] + t[:, None, None] * db[None]) < 0
    region = (slice(z0 + 1, z1), ys, xs)
    return _proposal(labels, region, want, class_id, policy, None, None)


def _signed_distance(mask: np.ndarray, sampling) -> np.ndarray:
    """Signed distance in mm: positive outside (distance to the shape), negative inside."""
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    return outside - inside
