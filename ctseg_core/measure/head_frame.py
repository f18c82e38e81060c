"""The skull's symmetry on each axial slice: the ideal midline and a head-aligned frame.

On every slice the intracranial cavity is the region the skull encloses (bone above ``BONE_HU``, closed
by a few millimetres and hole-filled). The skull is nearly mirror-symmetric about the midsagittal plane,
where the falx attaches to it (crista galli in front, internal occipital protuberance behind), so the
ideal midline is taken as the cavity's axis of mirror symmetry:
- its direction is shared by all slices: the angle (within +-``MAX_ANGLE_DEG`` of the image's
  anterior-posterior axis) that best maps the cavity outlines of the large slices onto themselves;
- its position on each slice passes through the cavity's centroid, smoothed along z by a straight-line
  fit (a head rolled to one side moves it linearly from slice to slice).
Where the skull is open (a craniectomy, or a craniotomy's saw cuts wider than the closing bridges) the bone
encloses nothing; there the cavity is the skull's convex hull less the bone (``open_skull``), which bounds the
brain for the measurements, but the midline is not placed by such slices: it comes from the closed ones.

Coordinates: in-plane millimetres ``x = column * sx``, ``y = row * sy`` of the array (z, y, x). The
head frame of a slice is ``lateral`` (mm, + towards the patient's left) and ``along`` (mm, + towards
posterior), both measured from the cavity centre on the ideal midline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ctseg_core.volume import Geometry, Volume

BONE_HU = 250.0
MAX_ANGLE_DEG = 30.0
WORK_PIXEL_MM = 1.4  # in-plane sampling for the cavity masks (coarser grids are strided down to this)
MIN_AREA_FRACTION = 0.45  # slices whose cavity is smaller than this fraction of the largest are not used
SYMMETRY_AREA_FRACTION = 0.7  # ... and for the symmetry angle, only the larger ones
OPEN_ENCLOSED_FRACTION = 0.3  # a skull enclosing less than this fraction of its convex hull's inside is open
SKULL_GAP_MM = 5.0  # bone pieces this close belong to one skull (a craniotomy's flap; the headrest lies further)
OPEN_BRAIN_FRACTION = 0.8  # ... and at least this fraction of that hull's inside shows brain-like CT numbers
BRAIN_HU = (-20.0, 100.0)


@dataclass
class HeadFrame:
    """The ideal midline of every axial slice (placed by the slices in ``used``, extended to the others)."""

    geometry: Geometry
    angle_rad: float  # direction of the midline: unit vector (sin a, cos a) in (x, y) mm, pointing down the rows
    offset_mm: np.ndarray  # (n,) the midline's signed offset along the normal n = (cos a, -sin a) (all slices:
    # a straight line in z fitted to the used slices)
    centre_along_mm: np.ndarray  # (n,) the cavity centre's position along the midline direction (the used
    # slices' median elsewhere)
    reach_mm: np.ndarray  # (n, 2) how far the cavity reaches from the centre along -direction and +direction
    area_mm2: np.ndarray  # (n,) cavity area (0 where none)
    left_sign: float  # +1 when the normal n points to the patient's left, else -1
    posterior_sign: float  # +1 when the midline direction points to posterior, else -1
    symmetry_mm: float  # mean mismatch (mm) of the mirrored cavity outlines at the chosen angle
    cavity: np.ndarray  # (n, h, w) bool intracranial cavity on the strided grid
    step: int  # the stride of that grid
    used: np.ndarray  # (n,) bool: slices whose cavity is large enough to place the midline by
    open_skull: np.ndarray | None = None  # (n,) bool: large slices whose skull is open (cavity: the skull's
    # convex hull less the bone); measured in, but the midline is not placed by them

    @property
    def measurable(self) -> np.ndarray:
        """(n,) bool: slices with a cavity to measure in (closed and large, or open and large)."""
        return self.used if self.open_skull is None else self.used | self.open_skull

    @property
    def reference_slice(self) -> int:
        """The slice with the largest cavity (near the lateral ventricles' level)."""
        return int(np.argmax(self.area_mm2))

    @property
    def direction(self) -> np.ndarray:
        return np.array([np.sin(self.angle_rad), np.cos(self.angle_rad)])

    @property
    def normal(self) -> np.ndarray:
        return np.array([np.cos(self.angle_rad), -np.sin(self.angle_rad)])

    @property
    def angle_deg(self) -> float:
        return float(np.rad2deg(self.angle_rad))

    def to_head(self, k: int, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """(lateral mm, + to the patient's left; along mm, + posterior) of pixel positions on slice k."""
        sy, sx = self.geometry.spacing[1:]
        x, y = np.asarray(cols, float) * sx, np.asarray(rows, float) * sy
        across = x * self.normal[0] + y * self.normal[1] - self.offset_mm[k]
        along = x * self.direction[0] + y * self.direction[1] - self.centre_along_mm[k]
        return across * self.left_sign, along * self.posterior_sign

    def to_pixel(self, k: int, lateral, along) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) fractional pixel positions of head-frame points on slice k (inverse of ``to_head``)."""
        sy, sx = self.geometry.spacing[1:]
        a = np.asarray(lateral, float) * self.left_sign + self.offset_mm[k]
        b = np.asarray(along, float) * self.posterior_sign + self.centre_along_mm[k]
        x = a * self.normal[0] + b * self.direction[0]
        y = a * self.normal[1] + b * self.direction[1]
        return y / sy, x / sx

    def half_length_mm(self, k: int) -> float:
        """Half the cavity's length along the midline on slice k."""
        return float(self.reach_mm[k].sum() / 2.0)

    def ideal_line(self, k: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """(row, col) of the midline's anterior and posterior ends at the inner table on slice k."""
        sy, sx = self.geometry.spacing[1:]
        ends = []
        for t in (-self.reach_mm[k, 0], self.reach_mm[k, 1]):
            p = self.offset_mm[k] * self.normal + (self.centre_along_mm[k] + t) * self.direction
            ends.append((float(p[1] / sy), float(p[0] / sx)))
        return tuple(ends) if self.posterior_sign > 0 else tuple(ends[::-1])


def work_step(geometry: Geometry) -> int:
    """In-plane stride that brings the pixel size near WORK_PIXEL_MM."""
    return max(1, int(round(WORK_PIXEL_MM / min(geometry.spacing[1:]))))


def cavity_masks(volume: Volume, step: int | None = None, with_open: bool = False):
    """(n, h, w) bool intracranial cavity per slice on the strided grid, and the stride used; with
    ``with_open`` also (n,) bool: the slices whose skull is open (their cavity is the skull's hull less bone)."""
    step = work_step(volume.geometry) if step is None else step
    hu_all = volume.array[:, ::step, ::step]
    bone_all = hu_all > BONE_HU
    px = min(volume.geometry.spacing[1:]) * step
    close_iter = max(1, int(round(2.0 / px)))
    gap_iter = max(1, int(round(SKULL_GAP_MM / 2 / px)))
    out = np.zeros(bone_all.shape, bool)
    opened = np.zeros(bone_all.shape[0], bool)
    for k in range(bone_all.shape[0]):
        out[k] = _slice_cavity(bone_all[k], close_iter)
        hull = _open_skull_cavity(hu_all[k], bone_all[k], out[k], gap_iter)
        if hull is not None:
            out[k], opened[k] = hull, True
    return (out, step, opened) if with_open else (out, step)


def _slice_cavity(bone: np.ndarray, close_iter: int) -> np.ndarray:
    if bone.sum() < 50:
        return np.zeros(bone.shape, bool)
    closed = ndimage.binary_closing(bone, iterations=close_iter, border_value=0)
    outside, _ = ndimage.label(~closed)  # the regions the closed bone encloses do not reach the border
    border = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    inside = (outside > 0) & ~np.isin(outside, border)
    return _largest(ndimage.binary_opening(inside, iterations=2))


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _open_skull_cavity(hu: np.ndarray, bone: np.ndarray, enclosed: np.ndarray, gap_iter: int) -> np.ndarray | None:
    """The cavity of an open skull (the convex hull of the largest bone piece, pieces within SKULL_GAP_MM
    joined, less the bone), or None when the skull encloses at least OPEN_ENCLOSED_FRACTION of it or the
    hull does not hold brain (the headrest's arc, the skull base's sinuses)."""
    ys, xs = np.nonzero(bone)
    if len(ys) < 50 or enclosed.sum() >= OPEN_ENCLOSED_FRACTION * np.ptp(ys) * np.ptp(xs):
        return None  # encloses enough of the bone's bounding box (which holds the hull): closed
    skull = _largest(ndimage.binary_dilation(bone, iterations=gap_iter)) & bone
    ys, xs = np.nonzero(skull)
    if len(ys) < 10 or np.ptp(ys) < 3 or np.ptp(xs) < 3:
        return None
    from scipy.spatial import ConvexHull, Delaunay

    pts = np.stack([ys, xs], 1).astype(float)
    hull = Delaunay(pts[ConvexHull(pts).vertices])
    box = np.s_[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    gy, gx = np.mgrid[box]
    inside = np.zeros(bone.shape, bool)
    inside[box] = (hull.find_simplex(np.stack([gy.ravel(), gx.ravel()], 1)) >= 0).reshape(gy.shape)
    inside = _largest(ndimage.binary_opening(inside & ~ndimage.binary_closing(bone, iterations=gap_iter), iterations=2))
    if enclosed.sum() >= OPEN_ENCLOSED_FRACTION * inside.sum():
        return None
    values = hu[inside]
    if np.mean((values > BRAIN_HU[0]) & (values < BRAIN_HU[1])) < OPEN_BRAIN_FRACTION:
        return None
    return inside


def head_frame(volume: Volume, masks: np.ndarray | None = None, step: int | None = None) -> HeadFrame | None:
    """The ideal midline of each slice of ``volume`` (None when no slice holds a closed skull)."""
    opened = None
    if masks is None:
        masks, step, opened = cavity_masks(volume, step, with_open=True)
    geom = volume.geometry
    sy, sx = geom.spacing[1] * step, geom.spacing[2] * step
    n = masks.shape[0]
    area_all = masks.sum(axis=(1, 2)) * sy * sx
    area = area_all if opened is None else np.where(opened, 0.0, area_all)  # closed skulls place the midline
    if area.max() < 2000.0:  # under 20 cm^2: no head cross-section
        return None
    use = area >= MIN_AREA_FRACTION * area.max()
    open_use = None if opened is None else _open_slices(opened & (area_all >= MIN_AREA_FRACTION * area.max()), use,
                                                        geom.direction_matrix[2, 2] >= 0)
    centroids = np.full((n, 2), np.nan)  # (x, y) mm
    outlines = {}
    for k in np.flatnonzero(use):
        ys, xs = np.nonzero(masks[k])
        centroids[k] = xs.mean() * sx, ys.mean() * sy
        if area[k] >= SYMMETRY_AREA_FRACTION * area.max():
            edge = masks[k] & ~ndimage.binary_erosion(masks[k])
            ey, ex = np.nonzero(edge)
            outlines[k] = (np.stack([ex * sx, ey * sy], 1), ndimage.distance_transform_edt(~edge, sampling=(sy, sx)))
    angle, mismatch = _symmetry_angle(outlines, centroids, (sy, sx))
    d = np.array([np.sin(angle), np.cos(angle)])
    nrm = np.array([np.cos(angle), -np.sin(angle)])
    ks = np.flatnonzero(use)
    offset = _line_fit(ks.astype(float), centroids[ks] @ nrm, np.arange(n, dtype=float))
    centre_along = np.full(n, float(np.median(centroids[ks] @ d)))
    centre_along[ks] = centroids[ks] @ d
    reach = np.full((n, 2), np.nan)
    for k in ks if open_use is None else np.flatnonzero(use | open_use):
        reach[k] = _reach_along(masks[k], (sy, sx), offset[k], centre_along[k], nrm, d)
    # patient directions of the in-plane axes: direction columns 0 (i, x) and 1 (j, y)
    dm = geom.direction_matrix
    normal_lps = dm[:, 0] * nrm[0] + dm[:, 1] * nrm[1]
    dir_lps = dm[:, 0] * d[0] + dm[:, 1] * d[1]
    return HeadFrame(geom, float(angle), offset, centre_along, reach, np.where(use, area, 0.0),
                     1.0 if normal_lps[0] >= 0 else -1.0, 1.0 if dir_lps[1] >= 0 else -1.0, float(mismatch),
                     masks, step, use, open_use)


def _open_slices(large_open: np.ndarray, use: np.ndarray, up: bool) -> np.ndarray:
    """The large open slices that continue the closed ones used (no gap between), above the lowest of those
    (not the skull base)."""
    runs, _ = ndimage.label(large_open | use)
    keep = np.isin(runs, np.unique(runs[use]))
    ks = np.flatnonzero(use)
    above = np.arange(len(use)) > ks.min() if up else np.arange(len(use)) < ks.max()
    return large_open & keep & above


def _symmetry_angle(outlines: dict, centroids: np.ndarray, spacing_yx) -> tuple[float, float]:
    """The midline angle (rad) minimising the mean distance between mirrored outlines and the outlines."""
    if not outlines:
        return 0.0, float("nan")

    def cost(a: float) -> float:
        nrm = np.array([np.cos(a), -np.sin(a)])
        total, count = 0.0, 0
        for k, (pts, dist) in outlines.items():
            s = (pts - centroids[k]) @ nrm
            mirrored = pts - 2.0 * s[:, None] * nrm[None, :]
            rc = np.stack([mirrored[:, 1] / spacing_yx[0], mirrored[:, 0] / spacing_yx[1]])
            total += float(ndimage.map_coordinates(dist, rc, order=1, mode="nearest").sum())
            count += len(pts)
        return total / max(count, 1)

    grid = np.deg2rad(np.arange(-MAX_ANGLE_DEG, MAX_ANGLE_DEG + 0.1, 2.0))
    costs = [cost(a) for a in grid]
    a0 = float(grid[int(np.argmin(costs))])
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(cost, bounds=(a0 - np.deg2rad(2.0), a0 + np.deg2rad(2.0)), method="bounded",
                          options={"xatol": np.deg2rad(0.05)})
    return float(res.x), float(res.fun)


def _line_fit(z: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A straight line fitted to (z, values), refitted without outliers (> 2 mm off), evaluated at ``at``."""
    if len(z) < 3:
        return np.full(len(at), float(np.median(values)))
    keep = np.ones(len(z), bool)
    b, a = np.polyfit(z, values, 1)
    for _ in range(2):
        new_keep = np.abs(values - (a + b * z)) < 2.0
        if new_keep.sum() < 3 or (new_keep == keep).all():
            break
        keep = new_keep
        b, a = np.polyfit(z[keep], values[keep], 1)
    return a + b * at


def _reach_along(mask: np.ndarray, spacing_yx, offset: float, centre: float, nrm, d) -> tuple[float, float]:
    """How far (mm) the cavity reaches from the centre along the midline, backwards (-d) and forwards (+d)."""
    t = np.arange(-200.0, 200.0, 0.5)
    p = (offset * nrm)[None, :] + (centre + t)[:, None] * d[None, :]
    rows, cols = p[:, 1] / spacing_yx[0], p[:, 0] / spacing_yx[1]
    inside = ndimage.map_coordinates(mask.astype(np.float32), [rows, cols], order=0, mode="constant") > 0.5
    if not inside.any():
        return float("nan"), float("nan")
    zero = int(np.argmin(np.abs(t)))
    lo = hi = zero
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(t) - 1 and inside[hi + 1]:
        hi += 1
    return -float(t[lo]), float(t[hi])
