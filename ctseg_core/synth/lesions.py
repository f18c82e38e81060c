"""Lesions of the seven classes: where they go, their shape, their CT numbers, their mass effect.

A lesion is a JSON-able dict (class id, kind, centre in head frame and scanner LPS, size, HU, ...).
``region`` gives its voxels on one plane; ``paint`` writes its HU there.
"""

from __future__ import annotations

import numpy as np

from ctseg_core.labels import CLASSES
from ctseg_core.synth import tissues as T
from ctseg_core.synth.anatomy import Head, head_to_scanner, inner_depth
from ctseg_core.synth.brain import MassEffect, tentorium_height
from ctseg_core.synth.shapes import overlaps

ICH, SDH, SAH, EDH, CSDH, PNEUMO, IVH = 1, 2, 3, 4, 5, 6, 7
EXTRA_AXIAL = (EDH, SDH, CSDH)
CLASS_WEIGHTS = {ICH: 1.0, SDH: 1.0, SAH: 0.9, EDH: 0.6, CSDH: 0.7, PNEUMO: 0.5, IVH: 0.7}
PAINT_ORDER = (CSDH, SDH, EDH, SAH, IVH, ICH, PNEUMO)
DENSE_CSDH_HU = (48.0, 65.0)  # the dense component of a layered or mixed CSDH


def choose_classes(rng: np.random.Generator) -> list[int]:
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    keys = list(CLASS_WEIGHTS)
    p = np.array([CLASS_WEIGHTS[k] for k in keys])
    return sorted(int(c) for c in rng.choice(keys, size=n, replace=False, p=p / p.sum()))


def sample_lesions(rng: np.random.Generator, head: Head, classes: list[int]) -> list[dict]:
    makers = {ICH: _ich, SDH: _sdh, SAH: _sah, EDH: _edh, CSDH: _csdh, PNEUMO: _pneumo, IVH: _ivh}
    out = []
    for c in classes:
        if c not in makers:
            raise ValueError(f"unknown lesion class {c}; classes are 1..7 (see ctseg_core.labels)")
        out.append(makers[c](rng, head))
    return out


def _hu(rng, cls: int, margin=(8, 8)) -> float:
    lo, hi = CLASSES[cls].hu_range
    return float(rng.uniform(lo + margin[0], hi - margin[1]))


def _table_point(head: Head, side: int, v: float, w: float) -> tuple[list[float], list[float]]:
    """Point on the inner table at (v, w) on side ``side`` and the inward unit normal there."""
    us = np.linspace(0, head.half_width * 1.3, 400)
    d = inner_depth(head, side * us, np.full_like(us, v), w)
    i = int(np.argmax(d < 0)) if (d < 0).any() else len(us) - 1
    u0 = side * us[max(i - 1, 0)]
    eps = 0.5
    g = np.array([(inner_depth(head, np.array(u0 + eps), np.array(v), w) - inner_depth(head, np.array(u0 - eps), np.array(v), w)),
                  (inner_depth(head, np.array(u0), np.array(v + eps), w) - inner_depth(head, np.array(u0), np.array(v - eps), w)),
                  (inner_depth(head, np.array(u0), np.array(v), w + eps) - inner_depth(head, np.array(u0), np.array(v), w - eps))],
                 float)
    n = g / (np.linalg.norm(g) + 1e-9)
    return [float(u0), float(v), float(w)], [float(x) for x in n]


def _extra_axial(rng, head, cls, kind, thick, ext_h, ext_v, v_range, w_range, hu, **more) -> dict:
    side = int(rng.choice([-1, 1]))
    L = head.half_length / 80.0
    v = float(rng.uniform(*v_range)) * L
    w = float(rng.uniform(*w_range))
    p0, n = _table_point(head, side, v, w)
    return dict(cls=cls, kind=kind, side=side, anchor=p0, normal=n, thickness_mm=float(thick),
                extent_mm=[float(ext_h), float(ext_v)], hu=hu, **more)


def _edh(rng, head):
    return _extra_axial(rng, head, EDH, "lens", rng.uniform(8, 24), rng.uniform(24, 40), rng.uniform(22, 36),
                        (-30, 30), (-15, 35), _hu(rng, EDH, (8, 12)), swirl=bool(rng.random() < 0.4))


def _sdh(rng, head):
    les = _extra_axial(rng, head, SDH, "crescent", rng.uniform(3, 14), rng.uniform(50, 85), rng.uniform(35, 60),
                       (-25, 25), (-5, 30), _hu(rng, SDH, (6, 8)))
    les["falx_mm"] = float(rng.uniform(2, 4)) if rng.random() < 0.3 else 0.0
    les["tentorium_mm"] = float(rng.uniform(2, 3.5)) if rng.random() < 0.25 else 0.0
    return les


def _csdh(rng, head):
    mode = str(rng.choice(["homogeneous", "layered", "mixed"], p=[0.45, 0.3, 0.25]))
    les = _extra_axial(rng, head, CSDH, "crescent", rng.uniform(6, 18), rng.uniform(55, 90), rng.uniform(40, 65),
                       (-20, 25), (0, 35), float(rng.uniform(6, 20)), mode=mode)
    # the dense part (the settled cells of a layered collection, fresh bleeding into a mixed one) is brighter
    # than grey matter; at 30-45 HU (until 30 Nov 2026) it was as dense as brain and taught the model that a
    # brain-density band under the bone is CSDH (docs/models.md, stage 7)
    les["dense_hu"] = float(rng.uniform(*DENSE_CSDH_HU))
    return les


def _ich(rng, head):
    L = head.half_length / 80.0
    side = int(rng.choice([-1, 1]))
    site = str(rng.choice(["putamen", "thalamus", "lobar"], p=[0.4, 0.2, 0.4]))
    if site == "putamen":
        c = [side * rng.uniform(18, 26), rng.uniform(-10, 4) * L, rng.uniform(-4, 6)]
        r = rng.uniform(6, 17)
    elif site == "thalamus":
        c = [side * rng.uniform(8, 13), rng.uniform(5, 12) * L, rng.uniform(0, 6)]
        r = rng.uniform(5, 11)
    else:
        c = [side * rng.uniform(18, 40), rng.uniform(-45, 45) * L, rng.uniform(8, 42)]
        r = rng.uniform(7, 20)
        c[0] = side * min(abs(c[0]), head.half_width - r - 14)
    return dict(cls=ICH, kind=site, side=side, centre=[float(x) for x in c], radius_mm=float(r), hu=_hu(rng, ICH, (6, 10)),
                oedema_mm=float(rng.uniform(1.5, 4.5)), oedema_hu=float(rng.uniform(12, 20)),
                irregularity=float(rng.uniform(0.1, 0.3)))


def _ivh(rng, head):
    L = head.half_length / 80.0
    return dict(cls=IVH, kind="layering", level_v=float(rng.uniform(12, 24) * L), hu=_hu(rng, IVH, (10, 10)),
                cast=bool(rng.random() < 0.4), sides=[[-1], [1], [-1, 1]][int(rng.integers(3))])


def _sah(rng, head):
    L = head.half_length / 80.0
    sites = {"sylvian_l": (40 * L, 0.0, -10), "sylvian_r": (-40 * L, 0.0, -10), "suprasellar": (0, -12 * L, -20),
             "ambient": (0, 18 * L, -12), "convexity_l": (45, -10 * L, 40), "convexity_r": (-45, -10 * L, 40),
             "interhemispheric": (0, -40 * L, 25)}
    names = list(sites)
    n = int(rng.integers(1, 4))
    picked = [str(s) for s in rng.choice(names, size=n, replace=False)]
    spheres = [[float(sites[s][0] + rng.normal(0, 4)), float(sites[s][1] + rng.normal(0, 5)),
                float(sites[s][2] + rng.normal(0, 3)), float(rng.uniform(16, 34))] for s in picked]
    return dict(cls=SAH, kind="+".join(picked), spheres=spheres, hu=float(rng.uniform(58, 68)))


def _pneumo(rng, head):
    """2-5 small air pockets just under the frontal inner table (air rises anteriorly in a supine patient)."""
    pockets = []
    for _ in range(int(rng.integers(2, 6))):
        u, w = float(rng.uniform(-30, 30)), float(rng.uniform(0, 40))
        vs = np.linspace(0, -head.half_length * 1.3, 400)
        d = inner_depth(head, np.full_like(vs, u), vs, w)
        i = int(np.argmax(d < 0))  # the frontal inner table along this line
        rad = float(rng.uniform(1.1, 1.8))
        pockets.append([u, float(vs[max(i - 1, 0)] + rad * 0.9), w, float(rng.uniform(2.0, 3.5)), rad,
                        float(rng.uniform(2.0, 3.5))])
    return dict(cls=PNEUMO, kind="frontal pockets", pockets=pockets, hu=-1000.0)


def mass_effect(head: Head, lesions: list[dict]) -> MassEffect:
    best, shift, centre = None, 0.0, (0.0, 0.0)
    for les in lesions:
        if les["cls"] in EXTRA_AXIAL:
            s = 0.55 * les["thickness_mm"] - 2.0
            c = les["anchor"]
        elif les["cls"] == ICH:
            s = 0.45 * les["radius_mm"] - 2.5
            c = les["centre"]
        else:
            continue
        if s > shift:
            best, shift, centre = les, s, (c[1], c[2])
    if best is None:
        return MassEffect()
    side = best["side"]
    best["midline_shift_mm"] = round(float(shift), 1)
    return MassEffect(shift_mm=float(-side * shift), centre_vw=centre, side=side, compress=float(np.clip(shift / 14, 0, 0.55)))


def scale_lesions(lesions: list[dict], factor: float) -> None:
    """Grow (factor > 1) or shrink the lesions in place, as a follow-up scan would show them: ICH radius,
    extra-axial thickness and extent, SAH sphere radii and pneumocephalus pockets times ``factor``
    (IVH is left as it is). Draws no random numbers."""
    f = float(factor)
    if f <= 0:
        raise ValueError(f"lesion_scale must be > 0, got {factor}")
    for les in lesions:
        if les["cls"] == ICH:
            les["radius_mm"] *= f
        elif les["cls"] in EXTRA_AXIAL:
            les["thickness_mm"] *= f
            les["extent_mm"] = [e * f for e in les["extent_mm"]]
        elif les["cls"] == SAH:
            les["spheres"] = [sp[:3] + [sp[3] * f] for sp in les["spheres"]]
        elif les["cls"] == PNEUMO:
            les["pockets"] = [p[:3] + [p[3] * f, p[4] * f, p[5] * f] for p in les["pockets"]]


FORCED_SHIFT_CENTRE_VW = (0.0, 5.0)  # a requested shift peaks at the third ventricle, foramen of Monro level


def forced_mass_effect(lesions: list[dict], shift_mm: float) -> MassEffect:
    """A mass effect of the requested peak shift (mm >= 0), centred on the deep midline at the level of
    the foramen of Monro, pushing away from the largest space-occupying lesion (to the patient's right
    when there is none). Draws no random numbers: the rest of the case stays as its seed makes it."""
    shift_mm = float(shift_mm)
    if shift_mm < 0:
        raise ValueError(f"midline_shift_mm must be >= 0, got {shift_mm}")
    size = {EDH: "thickness_mm", SDH: "thickness_mm", CSDH: "thickness_mm", ICH: "radius_mm"}
    pushing = [les for les in lesions if les["cls"] in size]
    side = 1
    if pushing:
        best = max(pushing, key=lambda les: les[size[les["cls"]]])
        side = int(best["side"])
        for les in pushing:
            les.pop("midline_shift_mm", None)
        best["midline_shift_mm"] = round(shift_mm, 1)
    if shift_mm == 0.0:
        return MassEffect()
    return MassEffect(shift_mm=-side * shift_mm, centre_vw=FORCED_SHIFT_CENTRE_VW, side=side,
                      compress=float(np.clip(shift_mm / 14, 0, 0.55)))


def extra_axial_thickness(les: dict, head: Head, u, v, w) -> np.ndarray | None:
    """Thickness (mm) of an EDH/SDH/CSDH below the inner table at each point of the plane, or None."""
    p0, n = np.array(les["anchor"]), np.array(les["normal"])
    eh, ev = les["extent_mm"]
    if not overlaps(w, p0[2] - ev * 1.3, p0[2] + ev * 1.3):
        return None
    ez = np.array([0.0, 0.0, 1.0])
    e_v = ez - ez.dot(n) * n
    e_v /= np.linalg.norm(e_v) + 1e-9
    e_h = np.cross(n, e_v)
    du, dv, dw = u - p0[0], v - p0[1], w - p0[2]
    ah = (du * e_h[0] + dv * e_h[1] + dw * e_h[2]) / eh
    av = (du * e_v[0] + dv * e_v[1] + dw * e_v[2]) / ev
    a2 = ah * ah + av * av
    prof = np.sqrt(np.clip(1.0 - a2, 0, None)) if les["kind"] == "lens" else np.clip(1.0 - a2, 0, None) ** 0.6
    # stay on the lesion's side of the head
    prof *= (les["side"] * u > 0)
    return (les["thickness_mm"] * prof).astype(np.float32)


def region(les: dict, head: Head, ctx: dict) -> np.ndarray:
    """Boolean mask of the lesion's voxels on the plane described by ``ctx``."""
    cls = les["cls"]
    u, v, um, w = ctx["u"], ctx["v"], ctx["um"], ctx["w"]
    if cls in EXTRA_AXIAL:
        th = ctx["thick"].get(id(les))
        m = np.zeros(u.shape, bool) if th is None else (ctx["depth"] > 0) & (ctx["depth"] < th) & (w > ctx["floor"] + 1)
        if cls == SDH and les.get("falx_mm"):
            s = les["side"]
            a_w = les["anchor"][2]
            if overlaps(w, max(12.0, a_w - 35), a_w + 35):
                fm = (s * um > 0.6) & (s * um < 0.6 + les["falx_mm"]) & ctx["fissure"] & (ctx["depth"] > 2) & \
                    (np.abs(v - les["anchor"][1]) < 45)
                m |= fm if np.ndim(w) == 0 else fm & (w > 12) & (np.abs(w - a_w) < 35)
        if cls == SDH and les.get("tentorium_mm"):
            wt = tentorium_height(head, um, v)
            m |= (w > wt + 0.6) & (w < wt + 0.6 + les["tentorium_mm"]) & (v > 8) & (les["side"] * um > 6) & \
                (ctx["depth"] > 0)
        return m
    tis = ctx["tissue"]
    if cls == SAH:
        m = np.zeros(u.shape, bool)
        for c in les["spheres"]:
            if overlaps(w, c[2] - c[3], c[2] + c[3]):
                m |= (u - c[0]) ** 2 + (v - c[1]) ** 2 + (w - c[2]) ** 2 < c[3] ** 2
        away = (ctx["depth"] > 2.5) & (w > ctx["floor"] + 2.5)  # sulci, fissures, cisterns; not the thin rim at the bone
        return m & (tis == T.CSF) & ctx["ic"] & away
    if cls == IVH:
        vent = tis == T.VENTRICLE
        m = vent & (v > les["level_v"]) & np.isin(np.sign(um).astype(int), les["sides"])
        if les["cast"]:
            m |= vent & (np.abs(um) < 4) & (w < 10)
        return m
    if cls == ICH:
        own_side = les["side"] * um > 0.6  # the falx stops a lobar hematoma at the midline
        return (_ich_ratio(les, um, v, w, ctx["tex"], ctx["tex2"]) < 1.0) & own_side
    if cls == PNEUMO:
        m = np.zeros(u.shape, bool)
        for p in les["pockets"]:
            if overlaps(w, p[2] - p[5], p[2] + p[5]):
                m |= ((u - p[0]) / p[3]) ** 2 + ((v - p[1]) / p[4]) ** 2 + ((w - p[2]) / p[5]) ** 2 < 1
        return m & (ctx["depth"] > 0)
    raise ValueError(cls)


def _ich_ratio(les, um, v, w, tex, fine):
    """Normalised radius of the (irregular) ICH: < 1 inside; lobulated by a coarse and a fine field."""
    c, r = les["centre"], les["radius_mm"]
    dist = np.sqrt((um - c[0]) ** 2 + (v - c[1]) ** 2 + ((w - c[2]) * 1.15) ** 2)
    return dist / (r * (1.0 + les["irregularity"] * (0.6 * tex + 0.5 * fine)))


def paint(les: dict, mask: np.ndarray, hu: np.ndarray, ctx: dict) -> None:
    """Write the lesion's CT numbers into ``hu`` on ``mask`` (and its unlabelled surroundings, e.g. oedema)."""
    cls = les["cls"]
    tex, tex2 = ctx["tex"], ctx["tex2"]
    val = np.full(hu.shape, les["hu"], np.float32) + 2.0 * tex2
    if cls == EDH and les.get("swirl"):
        val -= 22.0 * (tex2 < -0.5)
    if cls == CSDH:
        if les["mode"] == "layered":
            val += (les["dense_hu"] - les["hu"]) * (ctx["v"] > les["anchor"][1] + 8)
        elif les["mode"] == "mixed":
            val += (les["dense_hu"] - les["hu"]) * (tex2 > 0.7)
    if cls == ICH:
        ratio = _ich_ratio(les, ctx["um"], ctx["v"], ctx["w"], tex, tex2)
        rim = (ratio >= 1.0) & (ratio < 1.0 + les["oedema_mm"] / les["radius_mm"]) & (les["side"] * ctx["um"] > 0.6) & np.isin(
            ctx["tissue"], (T.GREY, T.WHITE, T.DEEP_GREY))
        hu[rim] = les["oedema_hu"] + 1.5 * tex2[rim]
        val += 4.0 * tex
    if cls == PNEUMO:
        val = np.full(hu.shape, -1000.0, np.float32)
    hu[mask] = val[mask]


def describe(les: dict, head: Head, geometry_z: float = 0.0) -> dict:
    """JSON-able record with the lesion's centre also in scanner LPS (mm)."""
    c = les.get("centre") or les.get("anchor")
    if c is None and les["cls"] == SAH:
        c = les["spheres"][0][:3]
    if c is None and les["cls"] == PNEUMO:
        c = les["pockets"][0][:3]
    if c is None:  # IVH
        c = [0.0, les.get("level_v", 0.0), 10.0]
    x, y, z = head_to_scanner(head, c[0], c[1], c[2])
    out = {k: v for k, v in les.items()}
    out["name"] = CLASSES[les["cls"]].key
    out["centre_lps"] = [round(x, 2), round(y, 2), round(z, 2)]
    return out
