"""``generate_case``: one synthetic head CT with exact labels, deterministic by seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctseg_core.labels import CLASSES
from ctseg_core.synth import lesions as L
from ctseg_core.synth import tissues as T
from ctseg_core.synth.anatomy import (Head, crop_prepared, floor_height, frame_uv, inner_depth, prepare_extracranial, render_extracranial,
                                      render_table, sample_head)
from ctseg_core.synth.brain import MassEffect, deep_midline_shift, render_brain, sample_extras, shift_field
from ctseg_core.synth.fields import polar_wave_field, upsample_linear, wave_field
from ctseg_core.synth.physics import blur_inplane, correlated_noise, streaks, sub_plane_offsets, wrap_fill
from ctseg_core.volume import Geometry, LabelMap, Volume, VolumeMeta

P_NORMAL = 0.15  # probability that a case holds no lesion (when ``normal`` is None)


@dataclass
class SynthCase:
    volume: Volume  # HU float32 (whole numbers), LPS axial geometry
    labels: LabelMap  # uint8 class ids on the same grid
    lesions: list[dict]  # what was placed (JSON-able)
    seed: int
    tissue: np.ndarray | None = field(default=None, repr=False)  # uint8 tissue codes (ctseg_core.synth.tissues);
    # MIXED where the planes that make one slice disagree (partial volume along z)
    params: dict = field(default_factory=dict)  # head and acquisition parameters (JSON-able)


def generate_case(seed: int, *, thin: bool = False, shape_yx=(512, 512), pixel_spacing: float | None = None,
                  n_slices: int | None = None, lesion_classes: list[int] | None = None, normal: bool | None = None,
                  tilt_deg: float = 0.0, midline_shift_mm: float | None = None, lesion_scale: float = 1.0) -> SynthCase:
    """Generate the case of ``seed``. ``tilt_deg`` is recorded for writers (the volume itself is orthogonal).

    ``midline_shift_mm`` requests a mass effect of that peak shift, centred on the third ventricle at the
    level of the foramen of Monro, instead of the one the lesions imply (see ``lesions.forced_mass_effect``);
    everything else stays as the seed makes it. ``params["deep_midline_shift_mm"]`` records, for any case,
    where the septum pellucidum and third ventricle ended up (the truth for midline-shift measurements).
    ``lesion_scale`` grows (> 1) or shrinks the lesions the seed draws (``lesions.scale_lesions``), the same
    patient on a follow-up scan: anatomy, noise and positions are unchanged, the mass effect follows."""
    rng = np.random.default_rng(seed)
    ny, nx = (int(s) for s in shape_yx)
    if pixel_spacing is None:
        pixel_spacing = rng.uniform(0.40, 0.50) * 512.0 / max(ny, nx)
    ps = float(pixel_spacing)
    head = sample_head(rng, fov_mm=ps * min(ny, nx))
    extras = sample_extras(rng, head)
    hu_lut, amp_lut = T.hu_table(rng)
    dz = 1.0 if thin else 5.0
    bottom = head.centre_z - rng.uniform(60, 72)  # about the foramen magnum
    top = head.vertex_z + rng.uniform(0.0, 4.0)
    if n_slices is None:
        n_slices = int(np.ceil((top - bottom) / dz)) + 1
        z0 = bottom
    else:  # centre the requested coverage on the scanned range
        z0 = (bottom + top) / 2 - (n_slices - 1) * dz / 2
    origin = (-(nx - 1) / 2 * ps, -(ny - 1) / 2 * ps, float(z0))
    geom = Geometry((n_slices, ny, nx), (dz, ps, ps), origin)

    if normal is None:
        normal = lesion_classes is None and rng.random() < P_NORMAL
    classes = [] if normal else (sorted(set(int(c) for c in lesion_classes)) if lesion_classes is not None
                                 else L.choose_classes(rng))
    lesions = L.sample_lesions(rng, head, classes)
    if lesion_scale != 1.0:
        L.scale_lesions(lesions, lesion_scale)
    mass = L.mass_effect(head, lesions) if midline_shift_mm is None else L.forced_mass_effect(lesions, midline_shift_mm)

    hu, labels, tissue = _render(rng, head, extras, mass, lesions, hu_lut, amp_lut, geom)
    meta = VolumeMeta(modality="CT", description=f"ctseg synthetic head CT seed {seed}", series_uid="",
                      gantry_tilt_deg=0.0, notes=[f"synthetic (ctseg_core.synth), seed {seed}"])
    meta.extra["synth_tilt_deg"] = float(tilt_deg)
    params = dict(pixel_spacing=ps, slice_thickness=dz, head_angle_deg=float(np.rad2deg(head.angle)),
                  head_centre_xy=list(head.centre_xy), inner_half_length=head.half_length,
                  midline_shift_mm=abs(mass.shift_mm), tilt_deg=float(tilt_deg),
                  deep_midline_shift_mm=_deep_midline_truth(head, mass, geom), lesion_scale=float(lesion_scale))
    described = [L.describe(les, head) for les in lesions]
    return SynthCase(Volume(hu, geom, meta), LabelMap(labels, geom), described, int(seed), tissue, params)


def _deep_midline_truth(head: Head, mass: MassEffect, geom: Geometry) -> float | None:
    """Signed (+: to the patient's left) displacement of the septum / third ventricle on the slices' planes."""
    dz = geom.spacing[0]
    offs, _ = sub_plane_offsets(dz)
    zs = geom.origin[2] + dz * np.arange(geom.shape[0])
    shift = deep_midline_shift(head, mass, (zs[:, None] + offs[None, :]).ravel())  # +u is the patient's left
    return None if shift is None else round(float(shift), 3)


def _render(rng, head: Head, extras, mass: MassEffect, lesions, hu_lut, amp_lut, geom: Geometry):
    n, ny, nx = geom.shape
    dz, ps, _ = geom.spacing
    xs = geom.origin[0] + ps * np.arange(nx)
    ys = geom.origin[1] + ps * np.arange(ny)
    zs = geom.origin[2] + dz * np.arange(n)
    head.centre_z = 0.0  # head frame w == scanner z
    offs, wts = sub_plane_offsets(dz)
    (y0, y1), (x0, x1) = _head_box(head, xs, ys)
    cxs, cys = xs[x0:x1], ys[y0:y1]
    xx, yy = np.meshgrid(cxs, cys)
    u, v = frame_uv(head, xx, yy)
    w_all = (zs[:, None] + offs[None, :]).ravel()
    f_gyri = max(1, int(round(0.9 / ps)))
    f_tex = 2 * f_gyri
    uc, vc = u[::f_gyri, ::f_gyri], v[::f_gyri, ::f_gyri]
    wig = wave_field(rng, np.zeros(2), vc, uc, (14.0, 26.0), 8)  # wiggle the sulci: warp the polar coordinates
    rho, theta = np.hypot(uc, vc) + 3.0 * wig[0], np.arctan2(uc, -vc) + (3.5 / 70.0) * wig[1]
    gyri_c = polar_wave_field(rng, w_all, rho, theta, 70.0, (16.0, 24.0), 20, radial_scale=0.6)
    tex_c = wave_field(rng, w_all, v[::f_tex, ::f_tex], u[::f_tex, ::f_tex], (25.0, 70.0), 8)
    pre = prepare_extracranial(head, u, v)
    floor = (floor_height(head, u, v) + 1.0 * upsample_linear(tex_c[len(w_all) // 2], u.shape, f_tex)).astype(np.float32)
    shape_c = (n, len(cys), len(cxs))
    hu_crop = np.zeros(shape_c, np.float32)
    frac = {les["cls"]: np.zeros(shape_c, np.float32) for les in lesions}
    tissue_crop = np.zeros(shape_c, np.uint8)
    for k in range(n):
        for j, (_off, wt) in enumerate(zip(offs, wts)):
            p = k * len(offs) + j
            t_plane, hu_plane, masks = _plane(head, pre, extras, mass, lesions, hu_lut, amp_lut, u, v, float(w_all[p]),
                                              floor, upsample_linear(gyri_c[p], u.shape, f_gyri),
                                              upsample_linear(tex_c[p], u.shape, f_tex))
            hu_crop[k] += wt * hu_plane
            for cls, m in masks.items():
                frac[cls][k] += wt * m
            if j == 0:
                tissue_crop[k] = t_plane
            else:  # where the slab's planes disagree the voxel is a partial-volume mix
                tissue_crop[k][tissue_crop[k] != t_plane] = T.MIXED
    sigma_px = float(np.clip(0.3 / ps, 0.4, 0.9))
    hu_crop = blur_inplane(hu_crop, sigma_px)
    labels = np.zeros((n, ny, nx), np.uint8)
    _labels_from_fractions(frac, hu_crop, sigma_px, labels[:, y0:y1, x0:x1])
    for k in range(n):  # beam hardening at the skull base: dark bands between dense bone
        if zs[k] < -22 and rng.random() < 0.8:
            dense = (tissue_crop[k] == T.CORTICAL) & (floor > -60) & (floor < zs[k] + 8)
            hu_crop[k] += streaks(rng, dense, rng.uniform(4, 12), 4) * (tissue_crop[k] != T.AIR)
    hu = np.full((n, ny, nx), -1000.0, np.float32)
    tissue = np.zeros((n, ny, nx), np.uint8)
    if head.table:
        txx, tyy = np.meshgrid(xs, ys)
        table2d = blur_inplane(np.where(render_table(head, txx, tyy), hu_lut[T.TABLE], -1000.0).astype(np.float32),
                               sigma_px)
        hu[:] = table2d
        tissue[:, table2d > -500] = T.TABLE
    body = (tissue_crop != T.AIR) | (hu_crop > -990)
    np.copyto(hu[:, y0:y1, x0:x1], hu_crop, where=body)
    np.copyto(tissue[:, y0:y1, x0:x1], tissue_crop, where=body)
    noise = correlated_noise(rng, (n, y1 - y0, x1 - x0), rng.uniform(3.0, 4.0), 3 if ps < 0.7 else 2)
    # outside the head box the air gets the same grain, wrapped (cheaper than drawing the whole volume)
    hu[:, y0:y1, x0:x1] += noise
    _add_wrapped(hu, noise, y0, y1, x0, x1)
    np.clip(hu, -1024, 3071, out=hu)
    np.rint(hu, out=hu)
    return hu, labels, tissue


def _add_wrapped(hu: np.ndarray, noise: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> None:
    """Add ``noise`` (the head box's) to the four bands of ``hu`` around the box, by wrapped copies."""
    n, ny, nx = hu.shape
    h, w = noise.shape[1:]
    if y0 > h or ny - y1 > h or x0 > w or nx - x1 > w:  # bands wider than the box: the general way
        full = wrap_fill(noise, hu.shape, (y0, x0))
        full[:, y0:y1, x0:x1] = 0.0
        hu += full
        return
    hu[:, :y0, x0:x1] += noise[:, h - y0:, :]
    hu[:, y1:, x0:x1] += noise[:, : ny - y1, :]
    hu[:, :, :x0] += np.concatenate([noise[:, h - y0:, w - x0:], noise[:, :, w - x0:], noise[:, : ny - y1, w - x0:]], 1)
    hu[:, :, x1:] += np.concatenate([noise[:, h - y0:, : nx - x1], noise[:, :, : nx - x1], noise[:, : ny - y1, : nx - x1]], 1)


def _labels_from_fractions(frac: dict, clean_hu: np.ndarray, sigma_px: float, out: np.ndarray) -> None:
    """Label = the class covering at least half of a voxel's footprint (slice profile x in-plane blur),
    where the noise-free image shows that class's CT numbers (drops rims mixed with bone)."""
    best = np.zeros(out.shape, np.float32)
    for cls in sorted(frac):
        box = _bbox3(frac[cls] > 0, pad=4)
        if box is None:
            continue
        f = blur_inplane(frac[cls][box], sigma_px)
        lo, hi = CLASSES[cls].hu_range
        hu = clean_hu[box]
        sel = (f >= 0.5) & (f > best[box]) & (hu >= lo - 40) & (hu <= hi + 40)
        out[box][sel] = cls
        best[box] = np.maximum(best[box], f * sel)


def _head_box(head: Head, xs, ys):
    """Index ranges (rows, cols) of the scanner grid that hold the head (rotated bounding box + margin)."""
    hu_ = head.half_width + head.skull_mm + head.scalp_mm + 12
    hv = head.half_length + head.skull_mm + head.scalp_mm + 16
    c, s = np.cos(head.angle), np.sin(head.angle)
    ex = abs(c) * hu_ + abs(s) * hv
    ey = abs(s) * hu_ + abs(c) * hv
    cx, cy = head.centre_xy
    x0, x1 = np.searchsorted(xs, cx - ex), np.searchsorted(xs, cx + ex)
    y0, y1 = np.searchsorted(ys, cy - ey), np.searchsorted(ys, cy + ey)
    return (int(y0), int(y1)), (int(x0), int(x1))


def _bbox3(mask: np.ndarray, pad: int = 2):
    """Slices of the in-plane bounding box (all planes) of a 3-D mask, or None."""
    box = _bbox(mask.any(axis=0), pad)
    return None if box is None else (slice(None),) + box


def _bbox(mask: np.ndarray, pad: int = 2):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return (slice(max(rows[0] - pad, 0), rows[-1] + pad + 1), slice(max(cols[0] - pad, 0), cols[-1] + pad + 1))


def _plane(head, pre, extras, mass, lesions, hu_lut, amp_lut, u, v, w: float, floor, gyri, tex):
    """Tissue, HU and lesion masks (class -> float mask) of one plane at head-frame height ``w``.

    Above the face (w > -15) only the box around this plane's cross-section of the head is computed."""
    depth = inner_depth(head, u, v, w).astype(np.float32)
    hb = _bbox(depth > -(1.8 * head.skull_mm + head.scalp_mm + 8), pad=3) if w > -15 else None
    if hb is None:
        return _plane_box(head, pre, extras, mass, lesions, hu_lut, amp_lut, u, v, w, floor, gyri, tex, depth)
    t_b, hu_b, masks_b = _plane_box(head, crop_prepared(pre, hb), extras, mass, lesions, hu_lut, amp_lut, u[hb],
                                    v[hb], w, floor[hb], gyri[hb], tex[hb], depth[hb])
    tissue = np.zeros(u.shape, np.uint8)
    hu = np.full(u.shape, hu_lut[T.AIR], np.float32)
    tissue[hb], hu[hb] = t_b, hu_b
    masks = {}
    for c, m in masks_b.items():
        masks[c] = np.zeros(u.shape, np.float32)
        masks[c][hb] = m
    return tissue, hu, masks


def _plane_box(head, pre, extras, mass, lesions, hu_lut, amp_lut, u, v, w: float, floor, gyri, tex, depth):
    tissue = np.zeros(u.shape, np.uint8)
    if w < -15:  # an irregular skull base: the floor wobbles on the scale of the gyri field
        floor = floor + 1.5 * gyri
    render_extracranial(head, pre, w, depth, floor, tex, tissue, gyri)
    box = _bbox((depth > 0) & (w > floor - 1))
    ctx = None
    if box is not None:
        ctx = _brain_and_lesions(head, extras, mass, lesions, u[box], v[box], w, depth[box], floor[box], gyri[box],
                                 tex[box], tissue[box])
    hu = hu_lut[tissue] + amp_lut[tissue] * tex
    masks = {}
    if ctx is not None:
        hu_box = hu[box]  # a view: painting writes through
        for les, m in ctx["order"]:
            L.paint(les, m, hu_box, ctx)
        for c, m in ctx["by_cls"].items():
            f = np.zeros(u.shape, np.float32)
            f[box] = m
            masks[c] = f
    return tissue, hu, masks


def _brain_and_lesions(head, extras, mass, lesions, u, v, w, depth, floor, gyri, tex, tissue) -> dict | None:
    """Render the brain into ``tissue`` (a view); return the lesion context (None without lesions)."""
    thick = {}
    ext = np.zeros(u.shape, np.float32)
    for les in lesions:
        if les["cls"] in L.EXTRA_AXIAL:
            t = L.extra_axial_thickness(les, head, u, v, w)
            if t is not None:
                thick[id(les)] = t
                np.maximum(ext, t, out=ext)
    render_brain(head, extras, mass, u, v, w, depth - ext, floor, gyri, tex, tissue)
    ic = (depth > 0) & (w > floor)  # the intracranial cavity (brain plus extra-axial space)
    if thick:
        tissue[ic & (depth < ext)] = T.EXTRA_AXIAL
    if not lesions:
        return None
    um = u - shift_field(head, mass, u, v, w)
    Lh = head.half_length / 80.0
    fissure = (v < -34 * Lh) | (v > 36 * Lh) | (w > 24.0)
    ctx = dict(u=u, v=v, um=um, w=w, depth=depth, floor=floor, tissue=tissue, ic=ic, tex=tex, tex2=gyri,
               thick=thick, fissure=fissure)
    by_cls, order = {}, []
    for les in sorted(lesions, key=lambda le: L.PAINT_ORDER.index(le["cls"])):
        m = L.region(les, head, ctx) & (ic | (les["cls"] == L.PNEUMO) & (depth > 0))
        order.append((les, m))
        for other in by_cls.values():
            other &= ~m
        by_cls[les["cls"]] = by_cls.get(les["cls"], np.zeros(u.shape, bool)) | m
    ctx["order"] = order
    ctx["by_cls"] = by_cls
    return ctx
