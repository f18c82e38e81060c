"""``generate_case``: one synthetic head CT with exact labels, deterministic by seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctseg_core.labels import CLASSES
from ctseg_core.synth import lesions as L
from ctseg_core.synth import tissues as T
from ctseg_core.synth.acquisition import Acquisition, legacy_acquisition
from ctseg_core.synth.anatomy import Head, floor_height, frame_uvw, place_head, render_table, sample_head
from ctseg_core.synth.brain import MassEffect, deep_midline_shift, sample_extras
from ctseg_core.synth.fields import draw_polar_waves, draw_waves, upsample_linear
from ctseg_core.synth.physics import (correlated_noise, ghost, metal_streaks, outside_circle, point_spread, skull_shading,
                                      streaks, sub_plane_offsets, wrap_fill)
from ctseg_core.synth.planes import PlaneScene, render_plane
from ctseg_core.synth.surgery import sample_surgery
from ctseg_core.volume import Geometry, LabelMap, Volume, VolumeMeta

P_NORMAL = 0.15  # probability that a case holds no lesion (when ``normal`` is None)
FIELD_BLOCK = 4  # slices per evaluation of the random fields (keeps a slab bitwise equal to the whole case)


@dataclass
class SynthCase:
    volume: Volume  # HU float32 (whole numbers), LPS axial geometry
    labels: LabelMap  # uint8 class ids on the same grid
    lesions: list[dict]  # what was placed (JSON-able)
    seed: int
    tissue: np.ndarray | None = field(default=None, repr=False)  # uint8 tissue codes (ctseg_core.synth.tissues);
    # MIXED where the planes that make one slice disagree (partial volume along z)
    params: dict = field(default_factory=dict)  # head and acquisition parameters (JSON-able)
    structures: np.ndarray | None = field(default=None, repr=False)  # uint16 bits (tissues.STRUCTURE_BIT) of
    # what any plane of the voxel's slice held; see ctseg_core.synth.hard_negatives


def generate_case(seed: int, *, thin: bool = False, shape_yx=(512, 512), pixel_spacing: float | None = None,
                  n_slices: int | None = None, lesion_classes: list[int] | None = None, normal: bool | None = None,
                  tilt_deg: float = 0.0, acquisition: Acquisition | None = None, midline_shift_mm: float | None = None,
                  lesion_scale: float = 1.0) -> SynthCase:
    """Generate the case of ``seed``.

    The scan is ``acquisition`` (see ``ctseg_core.synth.acquisition``; ``sample_acquisition(rng)`` draws the
    training distribution) or, without it, the legacy keywords ``thin`` (1 mm instead of 5 mm slices),
    ``shape_yx``, ``pixel_spacing``, ``n_slices`` and ``tilt_deg`` (recorded for writers only). The anatomy
    and the lesions depend on the seed alone (and, for the legacy scan, on the field of view the head is
    fitted into), so one seed scanned two ways is the same head.

    ``midline_shift_mm`` requests a mass effect of that peak shift, centred on the third ventricle at the
    level of the foramen of Monro, instead of the one the lesions imply (see ``lesions.forced_mass_effect``);
    everything else stays as the seed makes it. ``params["deep_midline_shift_mm"]`` records, for any case,
    where the septum pellucidum and third ventricle ended up (the truth for midline-shift measurements).
    ``lesion_scale`` grows (> 1) or shrinks the lesions the seed draws (``lesions.scale_lesions``), the same
    patient on a follow-up scan: anatomy, noise and positions are unchanged, the mass effect follows."""
    if acquisition is None:
        acquisition = legacy_acquisition(thin, shape_yx, pixel_spacing, n_slices, tilt_deg)
    elif thin or tuple(shape_yx) != (512, 512) or pixel_spacing is not None or n_slices is not None or tilt_deg:
        raise ValueError("give the scan either as acquisition= or as the keywords thin/shape_yx/pixel_spacing/"
                         "n_slices/tilt_deg, not both")
    acq = acquisition
    rng = np.random.default_rng(seed)  # anatomy and lesions
    rng_scan = np.random.default_rng([seed, 1])  # scan choices: pixel spacing, slab height
    ny, nx = (int(s) for s in acq.shape_yx)
    ps = float(acq.pixel_spacing_mm or rng_scan.uniform(0.40, 0.50) * 512.0 / max(ny, nx))
    head = sample_head(rng, fov_mm=ps * min(ny, nx), scale=acq.head_scale)
    extras = sample_extras(rng, head)
    hu_lut, amp_lut = T.hu_table(rng, acq.hu_spread)
    bottom = head.centre_z - rng.uniform(60, 72)  # about the foramen magnum
    top = head.vertex_z + rng.uniform(0.0, 4.0)
    head.surgery = sample_surgery(rng, head)
    # sulci and textures: drawn before the lesions, so that forcing classes keeps the head
    waves = (draw_waves(rng, (14.0, 26.0), 8), draw_polar_waves(rng, 70.0, (16.0, 24.0), 20, radial_scale=0.6),
             draw_waves(rng, (25.0, 70.0), 8))
    if normal is None:
        normal = lesion_classes is None and rng.random() < P_NORMAL
    classes = [] if normal else (sorted(set(int(c) for c in lesion_classes)) if lesion_classes is not None
                                 else L.choose_classes(rng))
    lesions = L.sample_lesions(rng, head, classes)
    if lesion_scale != 1.0:
        L.scale_lesions(lesions, lesion_scale)
    mass = L.mass_effect(head, lesions) if midline_shift_mm is None else L.forced_mass_effect(lesions, midline_shift_mm)
    place_head(head, acq.yaw_deg, acq.roll_deg, acq.pitch_deg, acq.head_offset_mm)

    dz = acq.spacing_z_mm
    bottom, top = _z_extent(head, bottom, top)
    n_full = acq.n_slices or int(np.ceil((top - bottom) / dz)) + 1
    z0 = bottom if acq.n_slices is None else (bottom + top) / 2 - (n_full - 1) * dz / 2
    ks = _slab(acq, rng_scan, z0, dz, n_full)
    origin = (-(nx - 1) / 2 * ps, -(ny - 1) / 2 * ps, float(z0 + dz * ks[0]))
    geom = Geometry((len(ks), ny, nx), (dz, ps, ps), origin)

    hu, labels, tissue, structures = _render(waves, seed, acq, head, extras, mass, lesions, hu_lut, amp_lut, geom,
                                             ks, z0)
    meta = VolumeMeta(modality="CT", description=f"ctseg synthetic head CT seed {seed}", series_uid="",
                      gantry_tilt_deg=0.0, notes=[f"synthetic (ctseg_core.synth), seed {seed}"])
    meta.extra["synth_tilt_deg"] = float(acq.gantry_tilt_deg)
    params = dict(pixel_spacing=ps, slice_thickness=float(acq.slice_thickness_mm), slice_spacing=dz,
                  head_angle_deg=float(np.rad2deg(head.angle)), head_centre_xy=list(head.centre_xy),
                  inner_half_length=head.half_length, midline_shift_mm=abs(mass.shift_mm),
                  tilt_deg=float(acq.gantry_tilt_deg), atrophy=round(head.atrophy, 3),
                  first_slice=int(ks[0]), full_slices=int(n_full), surgery=head.surgery.describe(),
                  deep_midline_shift_mm=_deep_midline_truth(head, mass, geom, acq.slice_thickness_mm),
                  lesion_scale=float(lesion_scale),
                  calcifications=dict(choroid=extras.choroid_calc, pineal=extras.pineal_calc, basal=extras.basal_calc,
                                      falx=len(extras.falx_calc)),
                  acquisition=acq.as_dict())
    described = [L.describe(les, head) for les in lesions]
    return SynthCase(Volume(hu, geom, meta), LabelMap(labels, geom), described, int(seed), tissue, params, structures)


def _deep_midline_truth(head: Head, mass: MassEffect, geom: Geometry, thickness_mm: float) -> float | None:
    """Signed (+: to the patient's left) displacement of the septum / third ventricle on the slices' planes."""
    offs, _ = sub_plane_offsets(thickness_mm)
    zs = geom.origin[2] + geom.spacing[0] * np.arange(geom.shape[0])
    shift = deep_midline_shift(head, mass, (zs[:, None] + offs[None, :]).ravel())  # +u is the patient's left
    return None if shift is None else round(float(shift), 3)


def _z_extent(head: Head, bottom: float, top: float) -> tuple[float, float]:
    """Scanner z range to cover: foramen magnum to vertex, widened where roll or pitch tip the head."""
    tip = abs(np.sin(head.roll)) * (head.half_width + 10) + abs(np.sin(head.pitch)) * (head.half_length + 10)
    return bottom - 0.3 * tip, top + 0.6 * tip


def _slab(acq: Acquisition, rng_scan, z0: float, dz: float, n_full: int) -> np.ndarray:
    """Indices (into the whole scan) of the slices to render: all, those in ``z_range_mm``, and at most
    ``max_slices`` adjacent ones at a random height."""
    ks = np.arange(n_full)
    if acq.z_range_mm is not None:
        zs = z0 + dz * ks
        ks = ks[(zs >= acq.z_range_mm[0] - 1e-6) & (zs <= acq.z_range_mm[1] + 1e-6)]
        if len(ks) == 0:
            raise ValueError(f"z_range_mm {acq.z_range_mm} holds no slice (the scan covers "
                             f"{z0:.1f}..{z0 + dz * (n_full - 1):.1f} mm)")
    if acq.max_slices is not None and len(ks) > acq.max_slices:
        start = int(rng_scan.integers(0, len(ks) - acq.max_slices + 1))
        ks = ks[start:start + acq.max_slices]
    return ks


def _render(waves, seed, acq: Acquisition, head: Head, extras, mass, lesions, hu_lut, amp_lut, geom: Geometry,
            ks: np.ndarray, z0: float):
    n, ny, nx = geom.shape
    dz, ps, _ = geom.spacing
    xs = geom.origin[0] + ps * np.arange(nx)
    ys = geom.origin[1] + ps * np.arange(ny)
    zs = geom.origin[2] + dz * np.arange(n)
    head.centre_z = 0.0  # head frame w == scanner z (plus w_inplane for oblique planes)
    offs, wts = sub_plane_offsets(acq.slice_thickness_mm)
    (y0, y1), (x0, x1) = _head_box(head, xs, ys)
    wig_w, gyri_w, tex_w = waves
    hu = np.full((n, ny, nx), -1000.0, np.float32)
    tissue = np.zeros((n, ny, nx), np.uint8)
    labels = np.zeros((n, ny, nx), np.uint8)
    structures = np.zeros((n, ny, nx), np.uint16)
    sigma_px = max(acq.psf_sigma_mm / ps, 0.3)
    if head.table:
        txx, tyy = np.meshgrid(xs, ys)
        table2d = point_spread(np.where(render_table(head, txx, tyy), hu_lut[T.TABLE], -1000.0).astype(np.float32)[None],
                               sigma_px)[0]
        hu[:] = table2d
        tissue[:, table2d > -500] = T.TABLE
    if y1 > y0 and x1 > x0:  # the head is in the field of view
        scene = _scene(head, extras, mass, lesions, hu_lut, amp_lut, acq, offs, xs[x0:x1], ys[y0:y1], ps,
                       wig_w, gyri_w, tex_w)
        hu_c, tissue_c = _render_head(scene, ks, z0, dz, offs, wts, acq, sigma_px, ps,
                                      labels[:, y0:y1, x0:x1], structures[:, y0:y1, x0:x1])
        body = (tissue_c != T.AIR) | (hu_c > -990)
        np.copyto(hu[:, y0:y1, x0:x1], hu_c, where=body)
        np.copyto(tissue[:, y0:y1, x0:x1], tissue_c, where=body)
    else:
        y0 = y1 = x0 = x1 = 0
    circle = _artefacts_and_noise(hu, tissue, structures, seed, ks, zs, acq, ps, (y0, y1, x0, x1))
    if circle is not None:  # nothing is seen outside the reconstruction circle
        labels[:, circle] = 0
        structures[:, circle] = 0
    return hu, labels, tissue, structures


def _scene(head, extras, mass, lesions, hu_lut, amp_lut, acq, offs, cxs, cys, ps, wig_w, gyri_w, tex_w) -> PlaneScene:
    xx, yy = np.meshgrid(cxs, cys)
    u, v, w_in = frame_uvw(head, xx, yy)
    f_gyri = max(1, int(round(0.9 / ps)))
    f_tex = 2 * f_gyri
    uc, vc = u[::f_gyri, ::f_gyri], v[::f_gyri, ::f_gyri]
    wig = wig_w.evaluate([0.0, 40.0], wig_w.inplane(vc, uc), uc.shape)  # wiggle the sulci: warp the polar coordinates
    rho, theta = np.hypot(uc, vc) + 3.0 * wig[0], np.arctan2(uc, -vc) + (3.5 / 70.0) * wig[1]
    ut, vt = u[::f_tex, ::f_tex], v[::f_tex, ::f_tex]
    sub = lambda a, f: None if a is None else a[::f, ::f]  # noqa: E731
    gyri_in = gyri_w.inplane(rho, theta, sub(w_in, f_gyri))
    tex_in = tex_w.inplane(vt, ut, sub(w_in, f_tex))
    floor_tex = upsample_linear(tex_w.evaluate([-40.0], tex_in, ut.shape)[0], u.shape, f_tex)
    floor = (floor_height(head, u, v) + 1.0 * floor_tex).astype(np.float32)
    return PlaneScene(head=head, extras=extras, mass=mass, lesions=lesions, hu_lut=hu_lut, amp_lut=amp_lut, u=u, v=v,
                      w_in=w_in, floor=floor, gyri=(gyri_w, gyri_in, f_gyri, uc.shape),
                      tex=(tex_w, tex_in, f_tex, ut.shape), half_sub=acq.slice_thickness_mm / (2 * len(offs)),
                      ssp_tail=(acq.ssp_tail, acq.ssp_tail_sigma * acq.slice_thickness_mm))


def _render_head(scene: PlaneScene, ks, z0, dz, offs, wts, acq, sigma_px, ps, labels_out, structures_out):
    """HU (after the point spread, before noise) and tissue of the head box; labels and structure bits
    written into ``labels_out`` and ``structures_out``."""
    n = len(ks)
    shape_c = (n,) + scene.u.shape
    hu_c = np.zeros(shape_c, np.float32)
    frac = {les["cls"]: np.zeros(shape_c, np.float32) for les in scene.lesions}
    tissue_c = np.zeros(shape_c, np.uint8)
    fields = _block_fields(scene, ks, z0, dz, offs)
    for i, kg in enumerate(ks):
        gy, tx = fields(int(kg))
        hu_c[i] = wts.sum() * scene.hu_lut[T.AIR]  # planes that miss the head are air
        for j, (off, wt) in enumerate(zip(offs, wts)):
            hb, t_plane, hu_plane, masks = render_plane(scene, float(z0 + dz * kg + off), gy[j], tx[j])
            if hb is None:
                t_plane, hb = T.AIR, (slice(None), slice(None))
            else:
                hu_plane -= scene.hu_lut[T.AIR]
                hu_plane *= np.float32(wt)
                hu_c[i][hb] += hu_plane
                for cls, m in masks.items():
                    frac[cls][i][hb] += np.float32(wt) * m
            if j == 0:
                tissue_c[i][hb] = t_plane
                if np.ndim(t_plane):
                    structures_out[i][hb] = T.STRUCTURE_LUT[t_plane]
            else:  # where the slab's planes disagree the voxel is a partial-volume mix
                tc = tissue_c[i]
                if hb != (slice(None), slice(None)) and np.ndim(t_plane):
                    ring = np.ones(tc.shape, bool)  # outside this plane's box it is air
                    ring[hb] = False
                    tc[ring & (tc != T.AIR)] = T.MIXED
                sub = tc[hb]
                differ = sub != t_plane
                if np.ndim(t_plane):  # what this plane adds to the slice's structures
                    bits = structures_out[i][hb]
                    bits[differ] |= T.STRUCTURE_LUT[t_plane[differ]]
                sub[differ] = T.MIXED
    hu_c = point_spread(hu_c, sigma_px, acq.halo_weight, acq.halo_sigma_mm / ps, acq.sharpen)
    _labels_from_fractions(frac, hu_c, sigma_px, labels_out)
    return hu_c, tissue_c


def _block_fields(scene: PlaneScene, ks, z0, dz, offs):
    """Gyri and texture fields of one slice's planes, evaluated in aligned blocks of FIELD_BLOCK slices."""
    cache = {}
    n_sub = len(offs)

    def get(kg: int):
        b = kg // FIELD_BLOCK
        if b not in cache:
            cache.clear()
            kb = np.arange(b * FIELD_BLOCK, (b + 1) * FIELD_BLOCK)
            w = ((z0 + dz * kb)[:, None] + offs[None, :]).ravel()
            out = []
            for waves, inplane, _f, shape in (scene.gyri, scene.tex):
                out.append(waves.evaluate(w, inplane, shape))
            cache[b] = out
        gyri, tex = cache[b]
        r = (kg - b * FIELD_BLOCK) * n_sub
        return [gyri[r + j] for j in range(n_sub)], [tex[r + j] for j in range(n_sub)]
    return get


def _artefacts_and_noise(hu, tissue, structures, seed, ks, zs, acq: Acquisition, ps, box):
    """Per slice (each from its own generator, so a slab equals the same slices of the whole scan):
    the skull shading, beam hardening, metal streaks, motion, noise, the reconstruction circle; then whole HU. Returns the
    mask outside the reconstruction circle (None without one)."""
    y0, y1, x0, x1 = box
    n, ny, nx = hu.shape
    base_std = acq.noise_hu
    grain = 3 if ps < 0.7 else 2
    if acq.noise_grain_mm is not None:
        grain = max(1, int(round(acq.noise_grain_mm / ps)))
    circle = outside_circle((ny, nx)) if acq.fov_circle else None
    rng_std = np.random.default_rng([seed, 3])
    std0 = rng_std.uniform(3.0, 4.0) if base_std is None else base_std
    for i, kg in enumerate(ks):
        rk = np.random.default_rng([seed, 2, int(kg)])
        sl = hu[i]
        t = tissue[i]
        if acq.skull_shading_hu > 0 and y1 > y0 and x1 > x0:  # brighter next to the skull (cupping)
            inside = (structures[i, y0:y1, x0:x1] & np.uint16(T.STRUCTURE_BIT["intracranial"])) > 0
            sl[y0:y1, x0:x1] += skull_shading(inside, acq.skull_shading_hu, acq.skull_shading_mm, ps)
        if zs[i] < -22 and rk.random() < 0.8 and acq.beam_hardening > 0:  # dark bands between dense base bone
            dense = np.isin(t, (T.CORTICAL, T.SKULL_BASE))
            sl += streaks(rk, dense, rk.uniform(4, 12) * acq.beam_hardening, 4) * (t != T.AIR)
        metal = (structures[i] & np.uint16(T.STRUCTURE_BIT["metal"])) > 0  # metal in any plane of the slice
        if acq.metal_streaks > 0 and metal.any():
            sl += metal_streaks(rk, metal, acq.metal_streaks, ps) * (t != T.AIR)
        if acq.motion_mm > 0 and rk.random() < 0.4:
            sl[:] = ghost(sl, rk, acq.motion_mm, ps)
        std = std0 * (1.0 + (acq.skull_base_noise - 1.0) * float(np.clip((-20 - zs[i]) / 40, 0, 1)))
        if y1 > y0 and x1 > x0:
            noise = correlated_noise(rk, (1, y1 - y0, x1 - x0), std, grain)
            sl[y0:y1, x0:x1] += noise[0]
            _add_wrapped(hu[i:i + 1], noise, y0, y1, x0, x1)  # the air around the head: the same grain, wrapped
        else:
            sl += correlated_noise(rk, (1, ny, nx), std, grain)[0]
        if circle is not None:
            sl[circle] = -1024.0
            t[circle] = T.AIR
    np.clip(hu, -1024, 3071, out=hu)
    np.rint(hu, out=hu)
    return circle


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
    from ctseg_core.synth.physics import blur_inplane

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
    hu_ = (head.half_width + head.skull_mm + head.scalp_mm + 12 + _scalp_room(head)) / np.cos(head.roll)
    hv = (head.half_length + head.skull_mm + head.scalp_mm + 16 + _scalp_room(head)) / np.cos(head.pitch)
    c, s = np.cos(head.angle), np.sin(head.angle)
    ex = abs(c) * hu_ + abs(s) * hv
    ey = abs(s) * hu_ + abs(c) * hv
    cx, cy = head.centre_xy
    x0, x1 = np.searchsorted(xs, cx - ex), np.searchsorted(xs, cx + ex)
    y0, y1 = np.searchsorted(ys, cy - ey), np.searchsorted(ys, cy + ey)
    return (int(y0), int(y1)), (int(x0), int(x1))


def _scalp_room(head: Head) -> float:
    s = head.surgery
    return 0.0 if s is None else float(s.scalp_mm)


def _bbox3(mask: np.ndarray, pad: int = 2):
    """Slices of the in-plane bounding box (all planes) of a 3-D mask, or None."""
    from ctseg_core.synth.planes import bbox

    box = bbox(mask.any(axis=0), pad)
    return None if box is None else (slice(None),) + box
