"""Slice geometry: order along the slice normal, gantry tilt, spacing, and the orthogonal output grid.

Conventions (DICOM, LPS): ImageOrientationPatient = (r, c): r is the direction of increasing column index
(along a row), c of increasing row index. The slice normal is n = r x c. PixelSpacing = (row spacing
along c, column spacing along r). A slice's position along the normal is n . ImagePositionPatient.

Gantry tilt: the angle between the slice normal and the line through the slice positions. Its sign is the
rotation from the stack line to the normal about the image row axis r (positive for the GE HiSpeed head
series, whose GantryDetectorTilt tag is +18.5). A tilted stack is sheared: each slice is moved within its
own plane onto a grid whose axes are r, c and n, so the output has an orthonormal direction.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ctseg_core.errors import GeometryError
from ctseg_core.io.dicom_headers import SliceRef
from ctseg_core.volume import AIR_HU

SNAP_PX = 0.01  # in-plane shifts within 1/100 pixel of a whole pixel are taken as whole (no blur from rounding)


def orientation_axes(orientation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row direction r, column direction c and slice normal n from ImageOrientationPatient."""
    iop = np.asarray(orientation, dtype=float)
    r, c = iop[:3], iop[3:]
    r = r / np.linalg.norm(r)
    c = c / np.linalg.norm(c)
    n = np.cross(r, c)
    return r, c, n / np.linalg.norm(n)


def signed_tilt_deg(r: np.ndarray, c: np.ndarray, n: np.ndarray, line: np.ndarray) -> float:
    """Angle between the slice normal and the stack line (unit vectors), signed as described above."""
    if line @ n < 0:
        line = -line
    axis = np.cross(n, line)
    size = float(np.linalg.norm(axis))
    angle = math.degrees(math.atan2(size, float(line @ n)))
    if size < 1e-9:
        return 0.0
    about_r, about_c = float(axis @ r), float(axis @ c)
    sign = math.copysign(1.0, about_r if abs(about_r) >= abs(about_c) else about_c)
    return sign * angle


@dataclass
class Stack:
    """Slices of one series sorted along the slice normal, with what their positions say."""

    slices: list[SliceRef]
    r: np.ndarray
    c: np.ndarray
    n: np.ndarray
    t_mm: np.ndarray  # position along the normal, relative to the first slice (ascending)
    inplane_mm: np.ndarray  # (n, 2): offset of each slice's origin along (r, c) relative to the first slice
    pixel_spacing: tuple[float, float]  # (row, col)
    tilt_deg: float
    line_deviation_mm: float  # farthest slice origin from the line through the first and last

    @property
    def gaps(self) -> np.ndarray:
        return np.diff(self.t_mm)

    def spacing_range(self) -> tuple[float, float]:
        g = self.gaps
        return (float(g.min()), float(g.max())) if g.size else (0.0, 0.0)


def build_stack(slices: list[SliceRef]) -> Stack:
    """Sort slices along the normal (never by file name or InstanceNumber) and measure the stack.

    Raises GeometryError (naming a file) for missing geometry, mixed orientation or pixel spacing.
    """
    if not slices:
        raise GeometryError("no slices")
    first = slices[0]
    for s in slices:
        if s.orientation is None or s.position is None:
            raise GeometryError("no ImageOrientationPatient/ImagePositionPatient: the slice cannot be placed",
                                s.path)
        if s.pixel_spacing is None:
            raise GeometryError("no PixelSpacing", s.path)
    r, c, n = orientation_axes(first.orientation)
    for s in slices[1:]:
        r2, c2, _ = orientation_axes(s.orientation)
        if r2 @ r < 0.9999 or c2 @ c < 0.9999:
            raise GeometryError(f"orientation {np.round(s.orientation, 4).tolist()} differs from "
                                f"{first.label}'s {np.round(first.orientation, 4).tolist()}", s.path)
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-3, atol=1e-4):
            raise GeometryError(f"pixel spacing {s.pixel_spacing} differs from {first.label}'s "
                                f"{first.pixel_spacing}", s.path)
    pos = np.array([s.position for s in slices], dtype=float)
    order = np.argsort(pos @ n, kind="stable")
    slices = [slices[i] for i in order]
    pos = pos[order]
    rel = pos - pos[0]
    t = rel @ n
    _check_duplicates(slices, t)
    tilt, deviation = 0.0, 0.0
    if len(slices) > 1 and np.linalg.norm(rel[-1]) > 1e-6:
        line = rel[-1] / np.linalg.norm(rel[-1])
        tilt = signed_tilt_deg(r, c, n, line)
        along = rel @ line
        deviation = float(np.max(np.linalg.norm(rel - np.outer(along, line), axis=1)))
    tilt = 0.0 if abs(tilt) < 1e-3 else tilt
    return Stack(slices, r, c, n, t, np.stack([rel @ r, rel @ c], axis=1),
                 tuple(float(v) for v in first.pixel_spacing), tilt, deviation)


def _check_duplicates(slices: list[SliceRef], t: np.ndarray) -> None:
    for k in np.nonzero(np.diff(t) < 1e-3)[0]:
        a, b = slices[k], slices[k + 1]
        raise GeometryError(f"{a.label} and {b.label} lie at the same position along the slice normal "
                            f"({t[k]:.3f} mm): the series mixes several stacks", b.path)


def drop_repeated_instances(slices: list[SliceRef]) -> tuple[list[SliceRef], list[str]]:
    """Remove exact copies (same SOP instance and frame), keeping the first; say which were dropped."""
    seen, kept, notes = set(), [], []
    for s in slices:
        key = (s.header.sop_instance_uid, s.frame)
        if s.header.sop_instance_uid and key in seen:
            notes.append(f"{s.label} is a copy of an instance already read (same SOP Instance UID): ignored")
            continue
        seen.add(key)
        kept.append(s)
    return kept, notes


@dataclass
class GridPlan:
    """How the sorted source slices map onto the orthogonal, evenly spaced output grid."""

    stack: Stack
    shifts_px: np.ndarray  # (n, 2): (rows, cols) offset of each source slice in the output plane, >= 0
    out_rows: int
    out_cols: int
    t_out_mm: np.ndarray  # output slice positions along the normal, relative to the first source slice
    slice_spacing_mm: float
    origin: np.ndarray  # LPS of output voxel [0, 0, 0]
    notes: list[str] = field(default_factory=list)

    @property
    def shears(self) -> bool:
        return bool(np.any(self.shifts_px != 0))

    @property
    def resamples_along_normal(self) -> bool:
        t = self.stack.t_mm
        return len(self.t_out_mm) != len(t) or not np.allclose(self.t_out_mm, t, atol=1e-3)

    @property
    def direction(self) -> tuple[float, ...]:
        return tuple(np.column_stack([self.stack.r, self.stack.c, self.stack.n]).ravel())


def _snap(values: np.ndarray) -> np.ndarray:
    near = np.round(values)
    return np.where(np.abs(values - near) < SNAP_PX, near, values)


def plan_grid(stack: Stack, max_gap_factor: float = 2.5) -> GridPlan:
    """Choose the output grid: in-plane shifts for a tilted stack and uniform spacing along the normal.

    Raises GeometryError when a gap between neighbouring slices exceeds ``max_gap_factor`` times the
    chosen spacing (too much would have to be invented by interpolation).
    """
    first = stack.slices[0]
    rows, cols = first.header.rows, first.header.cols
    drow, dcol = stack.pixel_spacing
    a, b = stack.inplane_mm[:, 0], stack.inplane_mm[:, 1]
    shifts = np.stack([_snap((b - b.min()) / drow), _snap((a - a.min()) / dcol)], axis=1)
    out_rows = rows + int(math.ceil(shifts[:, 0].max() - 1e-6))
    out_cols = cols + int(math.ceil(shifts[:, 1].max() - 1e-6))
    p0 = np.asarray(first.position, dtype=float)
    origin = p0 + a.min() * stack.r + b.min() * stack.c
    notes: list[str] = []
    t_out, spacing = _plan_spacing(stack, max_gap_factor, notes)
    plan = GridPlan(stack, shifts, out_rows, out_cols, t_out, spacing, origin, notes)
    if plan.shears:
        notes.insert(0, _shear_note(plan, rows, cols))
    elif abs(stack.tilt_deg) > 0.01:
        notes.insert(0, f"slice positions lean {stack.tilt_deg:+.2f}° from the slice normal, less than a "
                        "pixel over the stack: no shear correction needed")
    if stack.line_deviation_mm > max(drow, dcol):
        notes.append(f"slice positions do not lie on one line (up to {stack.line_deviation_mm:.2f} mm off): "
                     "each slice was placed by its own position")
    return plan


def _shear_note(plan: GridPlan, rows: int, cols: int) -> str:
    return (f"gantry tilt {plan.stack.tilt_deg:+.2f}° (from ImageOrientationPatient and the slice positions): "
            f"each slice was shifted within its plane onto an orthogonal grid (shear correction, linear "
            f"interpolation); the plane grows from {rows}x{cols} to {plan.out_rows}x{plan.out_cols} pixels so "
            f"no part of any slice is cut; voxels outside the scanned region are air ({AIR_HU:.0f} HU, or the "
            f"scan's minimum if lower)")


def tilt_tag_note(tilt_deg: float, tags: list[float | None]) -> str | None:
    """A note when GantryDetectorTilt disagrees with the tilt computed from the geometry."""
    values = sorted({round(v, 2) for v in tags if v is not None})
    if not values:
        return None
    tag = values[0] if len(values) == 1 else None
    if tag is None:
        return f"GantryDetectorTilt varies between slices ({values}); tilt {tilt_deg:+.2f}° taken from the geometry"
    if abs(abs(tag) - abs(tilt_deg)) > 1.0:
        return (f"GantryDetectorTilt tag says {tag:+.1f}° but the slice geometry gives {tilt_deg:+.2f}°: "
                f"the geometry (ImageOrientationPatient, ImagePositionPatient) was used")
    if abs(tag) > 0.5 and math.copysign(1, tag) != math.copysign(1, tilt_deg):
        return (f"GantryDetectorTilt tag {tag:+.1f}° has the opposite sign to the geometry's {tilt_deg:+.2f}° "
                f"(vendor sign convention); the magnitude agrees")
    return None


def _runs(stack: Stack, gaps: np.ndarray) -> str:
    runs: list[list] = []
    for k, g in enumerate(gaps):
        if runs and abs(runs[-1][0] - g) <= max(0.02, 0.02 * g):
            runs[-1][1] += 1
            runs[-1][3] = k + 1
        else:
            runs.append([g, 1, k, k + 1])
    parts = [f"{g:.2f} mm x{n} ({stack.slices[i].label}–{stack.slices[j].label})" for g, n, i, j in runs[:6]]
    return ", ".join(parts) + (", ..." if len(runs) > 6 else "")


def _plan_spacing(stack: Stack, max_gap_factor: float, notes: list[str]) -> tuple[np.ndarray, float]:
    t = stack.t_mm
    if len(t) == 1:
        spacing = stack.slices[0].thickness or 1.0
        notes.append(f"single slice: slice spacing set to its thickness ({spacing:.2f} mm)")
        return t.copy(), float(spacing)
    gaps = stack.gaps
    median = float(np.median(gaps))
    _overlap_notes(stack, gaps, notes)
    if np.max(np.abs(gaps - median)) <= max(0.02, 0.02 * median):
        return t.copy(), float(t[-1] / (len(t) - 1))
    worst = int(np.argmax(gaps))
    if gaps[worst] > max_gap_factor * median:
        a, b = stack.slices[worst], stack.slices[worst + 1]
        raise GeometryError(
            f"gap of {gaps[worst]:.2f} mm between {a.label} and {b.label} is more than {max_gap_factor:g} times "
            f"the usual slice spacing ({median:.2f} mm): slices are missing; refusing to invent them "
            f"(raise max_gap_factor to interpolate anyway)", b.path)
    notes.append(f"uneven slice spacing along the slice normal ({gaps.min():.2f}–{gaps.max():.2f} mm): "
                 + _runs(stack, gaps))
    for k in np.nonzero((gaps > 1.5 * median) & ~_covered(stack, gaps))[0]:
        missing = int(round(gaps[k] / median)) - 1
        notes.append(f"about {max(missing, 1)} slice(s) appear to be missing between {stack.slices[k].label} and "
                     f"{stack.slices[k + 1].label} (gap {gaps[k]:.2f} mm): filled by interpolation")
    n_out = int(math.floor(t[-1] / median + 1e-3)) + 1
    t_out = np.arange(n_out) * median
    notes.append(f"resampled to a uniform {median:.2f} mm (the median gap) by linear interpolation along the "
                 f"slice normal: {len(t)} slices -> {n_out}")
    return t_out, median


def _reach(stack: Stack) -> tuple[np.ndarray, np.ndarray]:
    """Slice thicknesses (nan where unknown) and half the sum of each neighbouring pair's."""
    th = np.array([s.thickness if s.thickness else np.nan for s in stack.slices])
    return th, (th[:-1] + th[1:]) / 2


def _covered(stack: Stack, gaps: np.ndarray) -> np.ndarray:
    """Gaps that the neighbouring slices' thickness covers (tissue imaged even if the gap is large)."""
    _, reach = _reach(stack)
    return np.isfinite(reach) & (gaps <= reach + 0.05)


def _overlap_notes(stack: Stack, gaps: np.ndarray, notes: list[str]) -> None:
    th, reach = _reach(stack)
    known = np.isfinite(reach)
    overlap = known & (gaps < reach - 0.05)
    uncovered = known & (gaps > reach + 0.05)
    if overlap.all():
        lo, hi = np.nanmin(th), np.nanmax(th)
        thick = f"{lo:.2f} mm" if hi - lo < 0.01 else f"{lo:.2f}–{hi:.2f} mm"
        notes.append(f"overlapping slices: thickness {thick}, spacing {gaps.min():.2f}"
                     + (f"–{gaps.max():.2f}" if gaps.max() - gaps.min() > 0.01 else "") + " mm")
    elif overlap.any():
        k = int(np.nonzero(overlap)[0][0])
        notes.append(f"{int(overlap.sum())} pair(s) of neighbouring slices overlap (spacing less than the slice "
                     f"thickness), e.g. {stack.slices[k].label} ({th[k]:g} mm) and {stack.slices[k + 1].label} "
                     f"({th[k + 1]:g} mm) are {gaps[k]:.2f} mm apart")
    if uncovered.any():
        k = int(np.nonzero(uncovered)[0][0])
        notes.append(f"{int(uncovered.sum())} gap(s) wider than the slice thickness leave tissue unimaged, e.g. "
                     f"{gaps[k]:.2f} mm between {stack.slices[k].label} and {stack.slices[k + 1].label} "
                     f"({th[k]:g}/{th[k + 1]:g} mm thick)")


def _shift_rows_into(view: np.ndarray, a: np.ndarray, f: float, fill: float) -> None:
    """view (h+1 rows) = a moved down by a fraction f of a row: view[m] = (1-f) a[m] + f a[m-1], fill outside."""
    h = a.shape[0]
    np.multiply(a, np.float32(1 - f), out=view[:h])
    view[h] = (1 - f) * fill
    view[1:] += np.float32(f) * a
    view[0] += f * fill


def shift_into(dst: np.ndarray, src: np.ndarray, oy: float, ox: float, fill: float) -> None:
    """Write ``src`` into ``dst`` (already holding ``fill``) at offset (oy, ox) >= 0 pixels, with
    bilinear interpolation for fractional offsets: dst[y, x] = src(y - oy, x - ox), ``fill`` outside.
    ``dst`` must be large enough: rows >= floor(oy) + rows of src (+1 when oy is fractional), same for columns."""
    iy, fy = int(math.floor(oy)), oy - math.floor(oy)
    ix, fx = int(math.floor(ox)), ox - math.floor(ox)
    h, w = src.shape
    hh, ww = h + (fy > 0), w + (fx > 0)
    view = dst[iy:iy + hh, ix:ix + ww]
    if fx == 0:
        if fy == 0:
            view[...] = src
        else:
            _shift_rows_into(view, src, fy, fill)
        return
    rows = src
    if fy > 0:
        rows = np.empty((hh, w), dtype=np.float32)
        _shift_rows_into(rows, src, fy, fill)
    _shift_rows_into(view.T, rows.T, fx, fill)


def apply_plan(plan: GridPlan, stack_hu: np.ndarray) -> np.ndarray:
    """Voxels on the output grid from the sorted source slices (float32, HU; interpolated values are
    rounded to whole HU like the scanner's own)."""
    if not plan.shears and not plan.resamples_along_normal:
        return stack_hu
    out = _interpolate(plan, stack_hu)
    return np.rint(out, out=out)


def _interpolate(plan: GridPlan, stack_hu: np.ndarray) -> np.ndarray:
    fill = min(AIR_HU, float(stack_hu.min())) if stack_hu.size else AIR_HU
    aligned = stack_hu
    if plan.shears:
        aligned = np.full((stack_hu.shape[0], plan.out_rows, plan.out_cols), fill, dtype=np.float32)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # numpy releases the GIL
            list(pool.map(lambda k: shift_into(aligned[k], stack_hu[k], *map(float, plan.shifts_px[k]), fill),
                          range(len(stack_hu))))
    if not plan.resamples_along_normal:
        return aligned
    return resample_along_normal(aligned, plan.stack.t_mm, plan.t_out_mm)


def resample_along_normal(aligned: np.ndarray, t_src: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """Linear interpolation between the two source slices that bracket each output position."""
    out = np.empty((len(t_out),) + aligned.shape[1:], dtype=np.float32)
    for m, t in enumerate(t_out):
        k = int(np.clip(np.searchsorted(t_src, t, side="right") - 1, 0, len(t_src) - 2))
        w = float(np.clip((t - t_src[k]) / (t_src[k + 1] - t_src[k]), 0.0, 1.0))
        if w < 1e-4:
            out[m] = aligned[k]
        elif w > 1 - 1e-4:
            out[m] = aligned[k + 1]
        else:
            np.multiply(aligned[k], 1 - w, out=out[m])
            out[m] += w * aligned[k + 1]
    return out
