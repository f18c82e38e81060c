"""One plane of the head: tissue codes, CT numbers and lesion masks at one height of the head frame.

The slice maker (``case.py``) averages a few planes per slice; on each plane the oblique cut of the vault
and of the cranial floor adds the bone's partial volume within the plane's own sub-slab analytically
(``physics.slab_fraction``), so a thick slice shows the faint bright rim beside the inner table that real
scans show near the vertex and over the orbital roofs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctseg_core.synth import lesions as L
from ctseg_core.synth import tissues as T
from ctseg_core.synth.anatomy import (Head, crop_prepared, inner_depth, prepare_extracranial, render_extracranial,
                                      vault_terms, w_span)
from ctseg_core.synth.brain import MassEffect, render_brain, shift_field, tentorium_fraction
from ctseg_core.synth.fields import upsample_linear
from ctseg_core.synth.physics import slab_fraction
from ctseg_core.synth.shapes import overlaps
from ctseg_core.synth.surgery import bone_removed, devices

NOT_UNDER_LESIONS = (T.CALCIFICATION, T.DURA, T.VENOUS_SINUS, T.METAL, T.CATHETER)  # never covered by a label


@dataclass
class PlaneScene:
    """Everything a plane needs that does not depend on its height (the head box's 2-D grids)."""
    head: Head
    extras: object
    mass: MassEffect
    lesions: list
    hu_lut: np.ndarray
    amp_lut: np.ndarray
    u: np.ndarray
    v: np.ndarray
    w_in: np.ndarray | None  # in-plane part of the height (oblique planes), or None
    floor: np.ndarray
    gyri: tuple  # (waves, in-plane matrix, subsampling factor, subsampled shape)
    tex: tuple
    half_sub: float  # half-height (mm) of the sub-slab one plane stands for
    ssp_tail: tuple = (0.0, 0.0)  # the slice profile's tail: (share, standard deviation along z in mm)
    pre: dict | None = None
    vault: tuple | None = None

    def __post_init__(self):
        self.pre = prepare_extracranial(self.head, self.u, self.v)
        self.vault = vault_terms(self.head, self.u, self.v)
        self.pre["vault"] = self.vault  # cropped with the rest
        self.pre["floor_top"] = float(self.floor.max()) + 1.0  # (the skull-base wobble applies below w = -15 only)


def render_plane(sc: PlaneScene, z: float, gyri_sub: np.ndarray, tex_sub: np.ndarray):
    """(box, tissue, HU, lesion masks (class -> float mask)) of the plane at scanner height ``z``, on the
    sub-box ``box`` of the head box (None when the plane misses the head); the fields come subsampled
    (``sc.gyri[2]``, ``sc.tex[2]``) and are upsampled where the plane needs them.

    Above the face (w > -15) only the box around this plane's cross-section of the head is computed."""
    head, u, v = sc.head, sc.u, sc.v
    w = z if sc.w_in is None else sc.w_in + np.float32(z)
    depth = inner_depth(head, u, v, w, sc.vault).astype(np.float32)
    above_face = w_span(w)[0] > -15
    if above_face:
        hb = bbox(depth > -(1.8 * head.skull_mm + head.scalp_mm + 8 + _scalp_room(head)), pad=3)
        if hb is None:  # the plane passes above the head
            return None, None, None, {}
    else:
        hb = (slice(0, u.shape[0]), slice(0, u.shape[1]))
    shape_b, start = (hb[0].stop - hb[0].start, hb[1].stop - hb[1].start), (hb[0].start, hb[1].start)
    gyri = upsample_linear(gyri_sub, shape_b, sc.gyri[2], start)
    tex = upsample_linear(tex_sub, shape_b, sc.tex[2], start)
    wb = w if np.ndim(w) == 0 else w[hb]
    pre = sc.pre if not above_face else crop_prepared(sc.pre, hb)
    return (hb,) + _plane_box(sc, pre, u[hb], v[hb], wb, depth[hb], sc.floor[hb], gyri, tex)


def _scalp_room(head: Head) -> float:
    s = head.surgery
    return 0.0 if s is None else float(s.scalp_mm)


def _plane_box(sc: PlaneScene, pre, u, v, w, depth, floor, gyri, tex):
    head = sc.head
    tissue = np.zeros(u.shape, np.uint8)
    w_lo = w_span(w)[0]
    if w_lo < -15:  # an irregular skull base: the floor wobbles on the scale of the gyri field
        floor = floor + 1.5 * gyri * (1.0 if np.ndim(w) == 0 else (w < -15))
    render_extracranial(head, pre, w, depth, floor, tex, tissue, gyri)
    box = bbox((depth > 0) & (w > floor - 1))
    ctx = None
    if box is not None:
        ctx = _brain_and_lesions(sc, u[box], v[box], w if np.ndim(w) == 0 else w[box], depth[box], floor[box],
                                 gyri[box], tex[box], tissue[box])
    devices(head.surgery, u, v, w, tissue)
    hu = sc.hu_lut[tissue] + sc.amp_lut[tissue] * tex
    masks = {}
    if ctx is not None:
        hu_box = hu[box]  # a view: painting writes through
        keep = ~np.isin(tissue[box], NOT_UNDER_LESIONS)
        for les, m in ctx["order"]:
            m &= keep
            L.paint(les, m, hu_box, ctx)
        tent = ctx["tent"]
        if tent is not None:  # the flat tentorium within the sub-slab
            hu_box += tent * (sc.hu_lut[T.DURA] - hu_box)
        for c, m in ctx["by_cls"].items():
            f = np.zeros(u.shape, np.float32)
            f[box] = (m & keep) * (1.0 if tent is None else 1.0 - tent)
            masks[c] = f
    _table_partial_volume(sc, pre, u, v, w, depth, floor, tissue, hu, masks)
    return tissue, hu, masks


def _table_partial_volume(sc: PlaneScene, pre, u, v, w, depth, floor, tissue, hu, masks) -> None:
    """Bone within this plane's sub-slab where the vault or the cranial floor crosses it obliquely: the
    intracranial side gets that fraction of the inner table's CT number (and lesions lose it from their
    footprint); the bone side gets the brain's. Computed on the thin shell where it is not zero."""
    head, h = sc.head, sc.half_sub
    if h < 0.05:
        return
    hf = w - floor
    tail, sigma = sc.ssp_tail
    more = 4.5 * sigma if tail > 0.0 else 0.0  # the profile's tail reaches further in
    near = (depth > -2.0) & ((depth < 1.6 * h + 0.5 + more) | (hf < h + 0.5 + more) & (hf > -2.0))
    idx = np.flatnonzero(near)
    if len(idx) == 0:
        return
    take = lambda a: a.reshape(-1)[idx]  # noqa: E731
    d = take(depth)
    wb = w if np.ndim(w) == 0 else take(w)
    terms = tuple(take(a) for a in pre["vault"])
    slope = (inner_depth(head, take(u), take(v), wb + np.float32(0.5), terms) - d) / np.float32(0.5)  # d depth / d w
    gone = bone_removed(head.surgery, take(u), take(v), wb)
    t, dh = take(tissue), take(hf)
    ic = (d > 0) & (dh > 0) & ~np.isin(t, (T.AIR, T.POSTOP_AIR, T.SINUS_AIR))
    f_bone, f = _bone_fractions(d, slope, dh, gone, ic, h, tail, sigma)
    # the profile's tail blurs the image, not what the voxel holds: labels lose the flat slab's bone only
    f_label = _bone_fractions(d, slope, dh, gone, ic, h)[1] if tail > 0.0 and masks else f
    hb = take(hu)
    hb += f * (sc.hu_lut[T.CORTICAL] - hb)
    vault = (d <= 0) & (t == T.CORTICAL)  # the inner table: brain within its sub-slab
    f_in = np.where(vault, 1.0 - f_bone, 0.0).astype(np.float32)
    hb += f_in * (sc.hu_lut[T.CSF] - hb)
    hu.reshape(-1)[idx] = hb
    for m in masks.values():
        m.reshape(-1)[idx] *= 1.0 - f_label


def _bone_fractions(d, slope, hf, gone, ic, h, tail=0.0, sigma=0.0):
    """(fraction of the vault, fraction of bone on the intracranial side) within a sub-slab of half-height
    ``h``: the vault (depth ``d`` < 0) or the cranial floor below (``hf`` < 0), none over a craniectomy or a
    burr hole (``gone``), counted only where the voxel is intracranial (``ic``)."""
    f_bone = slab_fraction(d, slope, h, tail, sigma)
    if gone is not None:
        f_bone[gone] = 0.0
    f_floor = slab_fraction(hf, 1.0, h, tail, sigma)
    return f_bone, np.where(ic, np.maximum(f_bone, f_floor), 0.0).astype(np.float32)


def _brain_and_lesions(sc: PlaneScene, u, v, w, depth, floor, gyri, tex, tissue) -> dict | None:
    """Render the brain into ``tissue`` (a view); return the lesion context (None without lesions)."""
    head, lesions, mass = sc.head, sc.lesions, sc.mass
    thick = {}
    ext = np.zeros(u.shape, np.float32)
    for les in lesions:
        if les["cls"] in L.EXTRA_AXIAL:
            t = L.extra_axial_thickness(les, head, u, v, w)
            if t is not None:
                thick[id(les)] = t
                np.maximum(ext, t, out=ext)
    render_brain(head, sc.extras, mass, u, v, w, depth - ext, floor, gyri, tex, tissue)
    ic = (depth > 0) & (w > floor)  # the intracranial cavity (brain plus extra-axial space)
    if thick:
        tissue[ic & (depth < ext)] = T.EXTRA_AXIAL
    um = u - shift_field(head, mass, u, v, w)
    tent = None
    if overlaps(w, -75.0, 0.0):
        tent = tentorium_fraction(head, sc.extras, um, v, w, depth - ext, max(sc.half_sub, 0.25))
        tent *= ic & np.isin(tissue, (T.GREY, T.WHITE, T.DEEP_GREY, T.CSF, T.WM_HYPODENSITY))
        tissue[tent >= 0.5] = T.DURA
    if not lesions:
        return dict(order=[], by_cls={}, tent=tent)
    Lh = head.half_length / 80.0
    fissure = (v < -34 * Lh) | (v > 36 * Lh) | (w > 24.0)
    ctx = dict(u=u, v=v, um=um, w=w, depth=depth, floor=floor, tissue=tissue, ic=ic, tex=tex, tex2=gyri,
               thick=thick, fissure=fissure, tent=tent)
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


def bbox(mask: np.ndarray, pad: int = 2):
    """Slices of the 2-D bounding box of ``mask`` (with ``pad``), or None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, mask.shape[0])),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, mask.shape[1])))
