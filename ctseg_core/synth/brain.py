"""The brain inside the inner table: cortex with gyri, white matter, deep grey nuclei, CSF spaces,
ventricles, falx, tentorium, venous sinuses, brainstem, cerebellum and physiological calcifications.

All functions fill a tissue plane given head-frame coordinates (``w`` a number, or an array for planes
that cut the head obliquely); ``shift`` is the mass effect: a displacement (mm, along u) applied to the
deep structures and the midline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctseg_core.synth import tissues as T
from ctseg_core.synth.anatomy import Head, ellipsoid, w_span
from ctseg_core.synth.shapes import overlaps, round_cone_mask


@dataclass
class MassEffect:
    shift_mm: float = 0.0  # midline shift towards +u (positive) or -u
    centre_vw: tuple[float, float] = (0.0, 0.0)
    side: int = 1  # side of the lesion (+1 left, -1 right): that ventricle is compressed
    compress: float = 0.0  # 0..0.6


@dataclass
class BrainExtras:
    choroid_calc: bool
    pineal_calc: bool
    calc_r: float
    sulcal_t: float  # sulcal half-width in units of the gyral field
    grey_t: float
    sulcal_depth: float
    basal_calc: bool = False  # globus pallidus calcification (older heads)
    falx_calc: list = field(default_factory=list)  # ellipsoids of calcified plaques in the falx
    falx_mm: float = 0.9  # falx thickness
    tent_mm: float = 0.9  # tentorium thickness
    leuko: float = 0.0  # periventricular white-matter hypodensity: rim width (mm), 0 = none
    venous: list = field(default_factory=list)  # round-cone segments of the straight, transverse, sigmoid sinuses


def sample_extras(rng: np.random.Generator, head: Head) -> BrainExtras:
    atrophy = head.atrophy
    L = head.half_length / 80.0
    ex = BrainExtras(choroid_calc=bool(rng.random() < 0.6), pineal_calc=bool(rng.random() < 0.55),
                     calc_r=float(rng.uniform(1.5, 3.0)), sulcal_t=float(0.08 + 0.13 * atrophy + rng.uniform(0, 0.04)),
                     grey_t=float(rng.uniform(0.55, 0.7)), sulcal_depth=float(rng.uniform(6, 11) + 4 * atrophy))
    ex.basal_calc = bool(rng.random() < 0.05 + 0.2 * atrophy)
    for _ in range(int(rng.integers(1, 4)) if rng.random() < 0.05 + 0.2 * atrophy else 0):
        ex.falx_calc.append((0.0, float(rng.uniform(-55, 30) * L), float(rng.uniform(15, 55)),
                             float(rng.uniform(0.8, 1.6)), float(rng.uniform(3, 9)), float(rng.uniform(2, 6))))
    ex.falx_mm = float(rng.uniform(0.7, 1.6))
    ex.tent_mm = float(rng.uniform(0.7, 1.1))
    ex.leuko = float(rng.uniform(3, 9) * atrophy) if rng.random() < 0.3 + 0.6 * atrophy else 0.0
    ex.venous = venous_segments(rng, head)
    return ex


def venous_segments(rng: np.random.Generator, head: Head) -> list:
    """Straight sinus, torcula, transverse and sigmoid sinuses as round-cone segments hugging the table."""
    from ctseg_core.synth.surgery import _under

    L = head.half_length / 80.0
    r_dom, r_min = rng.uniform(3.0, 4.5), rng.uniform(1.8, 3.5)  # the right transverse sinus usually dominates
    torcula_d = np.array([0.0, 0.96, -0.28])
    tor = _under(head, torcula_d / np.linalg.norm(torcula_d), 3.0)
    segs = [((0.0, 20 * L, 2.0, 2.0), (tor[0], tor[1], tor[2], 3.0))]  # straight sinus: vein of Galen to torcula
    for side in (-1, 1):
        r = r_dom if side == -1 else r_min
        pts = [tor]
        for az, el in ((0.55, -0.3), (1.0, -0.33), (1.35, -0.45)):  # along the occipital table to the sigmoid
            d = np.array([side * np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])
            pts.append(_under(head, d / np.linalg.norm(d), r * 0.8))
        last = pts[-1]
        pts.append((last[0] * 0.92, last[1] - 6 * L, last[2] - 14.0))  # the sigmoid turns down to the jugular
        for a, b in zip(pts[:-1], pts[1:]):
            segs.append(((a[0], a[1], a[2], r), (b[0], b[1], b[2], r)))
    return segs


def shift_field(head: Head, mass: MassEffect, u, v, w) -> np.ndarray:
    """Displacement (mm along u) of brain tissue at (u, v, w); zero at the lateral inner table."""
    if mass.shift_mm == 0.0:
        return np.zeros_like(u)
    vc, wc = mass.centre_vw
    fall = np.exp(-(((v - vc) / 55.0) ** 2 + ((w - wc) / 45.0) ** 2))
    lat = np.clip(1.0 - (u / head.half_width) ** 2, 0, 1)
    return (mass.shift_mm * fall * lat).astype(np.float32)


def deep_midline_u(head: Head, mass: MassEffect, v, w: float) -> np.ndarray:
    """Where the deep midline (um = 0: septum pellucidum, third ventricle) lies: u (mm) at each (v, w).

    Solves u = shift_field(u, v, w) (the lateral fall-off depends on u) by fixed-point iteration."""
    v = np.asarray(v, np.float32)
    u = np.zeros_like(v)
    for _ in range(6):
        u = shift_field(head, mass, u, v, w)
    return u


def deep_midline_shift(head: Head, mass: MassEffect, planes_w) -> float | None:
    """Signed (+: towards the patient's left, +u) largest displacement of the septum pellucidum and the
    third ventricle on the planes ``planes_w`` (head-frame heights): the truth a midline-shift measurement
    should find. The septum is where both lateral ventricles reach within 1.3 mm of the deep midline; the
    third ventricle where the midline itself is ventricle above the aqueduct. None when neither is on a plane."""
    v = np.linspace(-1.2 * head.half_length, 1.2 * head.half_length, 961, dtype=np.float32)
    best = None
    for w in planes_w:
        w = float(w)
        on = ventricle_mask(head, mass, np.full_like(v, 1.3), v, w) & ventricle_mask(head, mass, np.full_like(v, -1.3), v, w)
        if w > -12.0:
            on |= ventricle_mask(head, mass, np.zeros_like(v), v, w)
        if not on.any():
            continue
        u = deep_midline_u(head, mass, v[on], w)
        i = int(np.argmax(np.abs(u)))
        if best is None or abs(u[i]) > abs(best):
            best = float(u[i])
    return best


def _capsules(side: int, k: float, L: float):
    """Lateral ventricle centre line (u, v, w, radius) nodes and the segments joining them."""
    s = side
    nodes = [(s * 6.5, -33 * L, 12, 3.5 * k), (s * 10, -20 * L, 15, 7.0 * k), (s * 10.5, -2 * L, 19, 5.5 * k),
             (s * 15, 18 * L, 14, 5.5 * k), (s * 12, 38 * L, 8, 2.5 * k),
             (s * 24, 12 * L, -6, 3.2 * k), (s * 27, -12 * L, -20, 2.0 * k)]
    segs = [(0, 1), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6)]
    return nodes, segs


def ventricle_mask(head: Head, mass: MassEffect, um, v, w, grow: float = 0.0, horns_only: bool = False,
                   u=None) -> np.ndarray:
    """Lateral, third and fourth ventricles and the aqueduct; ``grow`` (mm) widens the lateral ventricles
    (``horns_only``: only the frontal and occipital horns, for the periventricular rim). ``u``: the
    unshifted grid (affine in the pixels) that bounds where each part is evaluated."""
    L = head.half_length / 80.0
    k = head.ventricle_scale
    out = np.zeros(um.shape, bool)
    reach = float(np.max(grow)) if np.ndim(grow) else float(grow)
    for side in (-1, 1):
        kk = k * (1.0 - mass.compress if side == mass.side else 1.0)
        nodes, segs = _capsules(side, kk, L)
        for a, b in (segs[:2] + segs[3:4] if horns_only else segs):
            na, nb = nodes[a], nodes[b]
            if not overlaps(w, min(na[2], nb[2]) - 8 - reach, max(na[2], nb[2]) + 8 + reach):
                continue
            round_cone_mask(um, v, w, na, nb, out, grow, grid=None if u is None else (u, v),
                            slack=abs(mass.shift_mm))
    if horns_only:
        return out
    out &= np.abs(um) > 0.9  # septum pellucidum
    third = (np.abs(um) < 0.8 + 1.0 * k) & (np.abs(v - 0 * L) < 7 * L) & (w > -14) & (w < 10)
    fourth = ellipsoid(um, v, w, (0, 24 * L, -46, 6 * k, 3.5 * k, 8)) < 1
    aqueduct = (np.abs(um) < 1.2) & (np.abs(v - (10 + (-w - 10) * 0.4) * L) < 1.2) & (w > -36) & (w < -12)
    return out | third | fourth | aqueduct


def tentorium_height(head: Head, u, v) -> np.ndarray:
    L = head.half_length / 80.0
    return -6 - 0.0065 * u * u - 0.0045 * np.maximum(v - 8 * L, 0) ** 2


def tentorium_fraction(head: Head, ex: BrainExtras, um, v, w, depth_b, half_mm: float) -> np.ndarray:
    """Fraction of a sub-slab (half-height ``half_mm`` around ``w``) that the tentorium sheet fills: thick
    slices see its flat part as a faint haze, not as the rings that separate planes would draw."""
    L = head.half_length / 80.0
    wt = tentorium_height(head, um, v)
    slope = np.sqrt((0.013 * um) ** 2 + (0.009 * np.maximum(v - 8 * L, 0)) ** 2)
    half_t = 0.5 * ex.tent_mm * np.sqrt(1.0 + slope * slope)  # vertical half-extent of the sheet
    f = np.clip(np.minimum(w + half_mm, wt + half_t) - np.maximum(w - half_mm, wt - half_t), 0, None) / (2 * half_mm)
    post = v > (4 + 0.012 * um * um) * L
    return (f * (post & (np.abs(um) > 2.5) & (depth_b > 0.5) & (slope * slope <= 0.45))).astype(np.float32)


def render_brain(head: Head, ex: BrainExtras, mass: MassEffect, u, v, w, depth_b, floor, gyri, tex,
                 tissue) -> np.ndarray:
    """Fill the intracranial part of ``tissue``; returns the intracranial mask of this plane."""
    L = head.half_length / 80.0
    inside = (depth_b > -1e-3) & (w > floor)
    if not inside.any():
        return inside
    w_lo, w_hi = w_span(w)
    um = u - shift_field(head, mass, u, v, w)
    # distance to the nearest brain surface: convexity, skull base, midline fissure, Sylvian fissure
    frontal = np.clip(-v / head.half_length, 0, 1)  # atrophy opens the frontal CSF spaces most
    gap = head.gap_mm * (1.0 + 0.3 * tex + 0.6 * head.atrophy * frontal)
    d_conv = np.minimum(depth_b, (w - floor) * 0.8) - gap
    fissure = (v < -34 * L) | (v > 36 * L) | (w > 24.0)
    d_mid = np.where(fissure, np.abs(um) - 0.3 - 0.35 * head.gap_mm, 1e3)
    w_tent = tentorium_height(head, um, v)
    post = v > (4 + 0.012 * um * um) * L
    d = np.minimum(d_conv, d_mid)
    if w_lo < 18 and w_hi > -28:  # Sylvian fissure: a stem from the surface to the insula, and the insular cistern
        au = np.abs(um)
        v_syl = (-8 + 0.9 * (w + 8)) * L + 0.2 * (au - 36 * L) + 3.0 * tex  # the stem climbs backwards
        fade = 0.7 * np.maximum(0.0, np.abs(w + 5) - 11)  # the fissure thins out towards its ends instead of stopping
        stem = np.abs(v - v_syl) - 0.5 - 0.5 * head.gap_mm + fade + 0.5 * np.maximum(0, 36 * L - au)
        ins_fade = 0.7 * np.maximum(0, np.abs(v + 1 * L) - 13 * L) + 0.7 * np.maximum(0.0, np.abs(w + 3) - 8)
        ins = np.abs(au - 37 * L - 2.0 * tex) - 0.4 - 0.3 * head.gap_mm + ins_fade
        syl = np.minimum(stem, ins)
        if np.ndim(w):
            syl = np.where((w > -28) & (w < 18), syl, np.float32(1e3))
        d = np.minimum(d, syl)
    ag = np.abs(gyri)
    depth_s = ex.sulcal_depth * (1.0 + 0.35 * tex)
    sulcus = (ag < ex.sulcal_t) & (d < depth_s)
    grey = (d < 2.4) | ((ag < ex.grey_t) & (d < depth_s + 2.0))
    t = np.full(u.shape, T.WHITE, np.uint8)
    if ex.leuko > 0 and overlaps(w, -5, 40):  # periventricular caps of small-vessel disease
        t[ventricle_mask(head, mass, um, v, w, grow=ex.leuko * (1.0 + 0.4 * tex), horns_only=True, u=u)] = T.WM_HYPODENSITY
    t[grey] = T.GREY
    # deep grey nuclei
    for s in (-1, 1):
        for c in ((s * 12, -16 * L, 8, 6.0, 9.0, 9.0), (s * 24, -4 * L, -2, 5.5, 14.0, 9.5), (s * 9, 9 * L, 3, 7.0, 10.0, 8.0)):
            if overlaps(w, c[2] - c[5], c[2] + c[5]):
                t[ellipsoid(um, v, w, c) < 1.0] = T.DEEP_GREY
    # posterior fossa: cerebellum (folia) and brainstem
    below_tent = post & (w < w_tent) | (w < -30) & (v > -2 * L)
    cereb = below_tent & (d > 0)
    t[cereb] = T.DEEP_GREY  # cortex and white matter of the folia are too fine to resolve: a mix
    t[cereb & ((d < 2.0) | (ag < 0.5 * ex.grey_t))] = T.GREY
    t[cereb & (ag < 0.6 * ex.sulcal_t) & (d < 12)] = T.CSF
    t[cereb & (ag < 0.03 + 0.03 * head.gap_mm) & (d < 10)] = T.CSF  # a few fissures between folia
    bs_v = (10 + (-w - 10) * 0.3) * L
    if w_lo < -8:
        bs = ellipsoid(um, v, w, (0, bs_v, w, 11.5 + 0.05 * w, 11 * L, 1e9)) < 1.0
        t[bs if np.ndim(w) == 0 else bs & (w < -8)] = T.BRAINSTEM
    t[(d < 0) | sulcus & ~cereb] = T.CSF
    # basal cisterns
    cis = [(0, -12 * L, -20, 9, 7, 4), (0, 21 * L, -8, 7, 4, 6)]
    for c in cis:
        if overlaps(w, c[2] - c[5], c[2] + c[5]):
            t[ellipsoid(um, v, w, c) < 1.0] = T.CSF
    if w_lo < -4 and w_hi > -30:  # ambient cisterns beside the midbrain
        for s in (-1, 1):
            c = (s * 11.5, bs_v + 4 * L, -16, 2.0 + 0.6 * head.gap_mm, 8.0, 10)
            amb = ellipsoid(um, v, w, c) < 1.0
            t[amb if np.ndim(w) == 0 else amb & (w > -30) & (w < -4)] = T.CSF
    t[ventricle_mask(head, mass, um, v, w, u=u)] = T.VENTRICLE
    # dura: falx in the fissure, tentorium (a sheet: thick slices see it as a faint haze)
    falx = (np.abs(um) < 0.5 * ex.falx_mm) & fissure & (d_conv > -gap + 0.5)
    t[falx] = T.DURA
    # superior sagittal sinus: a dense triangle at the midline under the vault (a bright negative, not blood)
    sss = fissure & (depth_b > 0) & (depth_b < 7) & (np.abs(um) < 0.75 * (7 - depth_b))
    t[sss] = T.VENOUS_SINUS
    slope2 = (0.013 * um) ** 2 + (0.009 * np.maximum(v - 8 * L, 0)) ** 2  # drawn where it crosses the plane steeply
    tent = post & (np.abs(um) > 2.5) & (depth_b > 0.5)
    t[tent & (np.abs(w - w_tent) < 0.6) & (np.abs(um) > 8) & (slope2 > 0.45)] = T.DURA  # the flat part: tentorium_fraction
    venous = np.zeros(t.shape, bool)
    for a, b in ex.venous:  # straight, transverse and sigmoid sinuses
        if overlaps(w, min(a[2], b[2]) - a[3] - 1, max(a[2], b[2]) + a[3] + 1):
            round_cone_mask(um, v, w, a, b, venous, grid=(u, v), slack=abs(mass.shift_mm))
    t[venous] = T.VENOUS_SINUS
    # physiological calcifications (bright negatives, never labelled)
    if ex.choroid_calc:
        for s in (-1, 1):
            c = (s * 14 * head.ventricle_scale ** 0.3, 18 * L, 13, ex.calc_r, ex.calc_r * 1.3, ex.calc_r)
            t[ellipsoid(um, v, w, c) < 1.0] = T.CALCIFICATION
    if ex.pineal_calc:
        c = (0, 16 * L, 2, ex.calc_r * 0.9, ex.calc_r, ex.calc_r)
        t[ellipsoid(um, v, w, c) < 1.0] = T.CALCIFICATION
    if ex.basal_calc and overlaps(w, -8, 8):  # globus pallidus, both sides
        for s in (-1, 1):
            t[ellipsoid(um, v, w, (s * 17, -3 * L, 0, 2.5, 4.0, 3.5)) < 1.0] = T.CALCIFICATION
    for c in ex.falx_calc:
        if overlaps(w, c[2] - c[5], c[2] + c[5]):
            t[(ellipsoid(um, v, w, c) < 1.0) & fissure] = T.CALCIFICATION
    tissue[inside] = t[inside]
    return inside
