"""The head outside the brain: head frame, skull vault and base, scalp, sinuses, orbits, face, headrest.

Head frame (mm): u to the patient's left, v posterior, w superior, origin near the foramen of Monro,
rotated in-plane by ``angle`` against the scanner's x/y. Every structure is an analytic field of (u, v, w).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctseg_core.synth import tissues as T
from ctseg_core.synth.shapes import ellipsoid, round_cone, seg_dist2  # noqa: F401 (re-exported)
from ctseg_core.synth.vault import inner_depth, vault_terms  # noqa: F401 (re-exported)


@dataclass
class Head:
    centre_xy: tuple[float, float]  # scanner LPS x, y (mm) of the head-frame origin
    centre_z: float  # scanner z (mm) of w = 0
    angle: float  # in-plane rotation (rad)
    half_width: float  # inner table, mm (u)
    half_length: float  # inner table, mm (v)
    half_height: float  # inner table above w = 0
    half_depth: float  # inner table below w = 0
    taper: float  # frontal narrowing
    skull_mm: float
    scalp_mm: float
    gap_mm: float  # subarachnoid space at the convexity (atrophy)
    ventricle_scale: float
    floor_shift: float
    cavities: list = field(default_factory=list)  # (u, v, w, su, sv, sw, tissue)
    mastoid_air: float = 0.5
    table: bool = True
    table_offset: float = 15.0  # gap between the scalp and the headrest, mm
    roll: float = 0.0  # rad: head tilted towards a shoulder (planes cut it with w = z - sin(roll) u - sin(pitch) v)
    pitch: float = 0.0  # rad: chin down positive
    atrophy: float = 0.0  # 0 young .. 1 old: wide sulci, large ventricles, white-matter hypodensity
    surgery: object = None  # ctseg_core.synth.surgery.Surgery: craniotomy, burr holes, scalp haematoma, devices

    @property
    def outer_extent(self) -> float:
        return self.half_length + self.skull_mm + self.scalp_mm + 14.0

    @property
    def vertex_z(self) -> float:
        return self.centre_z + self.half_height + self.skull_mm + self.scalp_mm


def sample_head(rng: np.random.Generator, fov_mm: float, scale: float | None = None) -> Head:
    """The seed's head. ``scale`` None: shrunk, if need be, to fit the field of view (legacy); else the
    seed's size times ``scale``, whatever the field of view (it may cut the head)."""
    hl0 = rng.uniform(76, 86)
    fit = min(1.0, (fov_mm / 2 - 14) / (hl0 + 24))
    hl = hl0 * (fit if scale is None else float(scale))
    hw = hl * rng.uniform(0.76, 0.86)
    room = max(0.0, fov_mm / 2 - (hl + 22) * 1.02)
    cx, cy = rng.uniform(-1, 1, 2) * min(room, 12.0)
    angle = float(np.deg2rad(rng.uniform(-10, 10)))
    # age: a third of the heads are old (wide CSF spaces, large ventricles: the look-alikes of CSDH)
    atrophy = float(rng.uniform(0.55, 1.0) if rng.random() < 0.35 else rng.uniform(0.0, 0.55))
    head = Head(
        centre_xy=(float(cx), float(cy) + 4.0 * bool(room > 6)), centre_z=0.0, angle=angle,
        half_width=float(hw), half_length=float(hl), half_height=float(hl * rng.uniform(0.84, 0.94)),
        half_depth=float(hl * rng.uniform(1.02, 1.12)), taper=float(rng.uniform(0.04, 0.1)),
        skull_mm=float(rng.uniform(4.0, 6.5)), scalp_mm=float(rng.uniform(4.0, 7.0)),
        gap_mm=float(0.6 + 3.2 * atrophy ** 1.5 + rng.uniform(-0.2, 0.3)),
        ventricle_scale=float(rng.uniform(1.0, 1.3) + 0.65 * atrophy ** 1.3), floor_shift=float(rng.uniform(-4, 4)),
        mastoid_air=float(rng.uniform(0.2, 0.8)), table=bool(rng.random() < 0.7),
        table_offset=float(rng.uniform(6, 20)), atrophy=atrophy)
    j = lambda s: float(rng.normal(0, s))  # noqa: E731
    sph = (j(2), -14 + j(2), -44 + j(2), 13 + j(2), 11 + j(2), 10 + j(2), T.SINUS_AIR)
    eth = (0.0, -46 + j(2), -38 + j(2), 10, 19, 12, T.SINUS_AIR)
    front = (j(1), -hl - 5 + j(1), -4 + j(3), 11 + j(3), 3.5, 8 + j(2), T.SINUS_AIR) if rng.random() < 0.85 else None
    nasal = (0.0, -58, -66, 9, 24, 16, T.SINUS_AIR)
    head.cavities = [c for c in (sph, eth, front, nasal) if c is not None]
    for s in (-1, 1):
        head.cavities.append((s * (24 + j(2)), -46 + j(2), -72 + j(2), 12 + j(2), 14, 15, T.SINUS_AIR))  # maxillary
    return head


def place_head(head: Head, yaw_deg: float | None = None, roll_deg: float = 0.0, pitch_deg: float = 0.0,
               offset_mm: tuple[float, float] | None = None) -> None:
    """Set the head's pose in the scanner (``None`` keeps the seed's in-plane angle and position)."""
    if yaw_deg is not None:
        head.angle = float(np.deg2rad(yaw_deg))
    if offset_mm is not None:
        head.centre_xy = (float(offset_mm[0]), float(offset_mm[1]))
    head.roll, head.pitch = float(np.deg2rad(roll_deg)), float(np.deg2rad(pitch_deg))


def w_span(w) -> tuple[float, float]:
    """Lowest and highest head-frame height of a plane (``w`` a number, or an array for oblique planes)."""
    if np.ndim(w) == 0:
        return float(w), float(w)
    return float(w.min()), float(w.max())


def frame_uv(head: Head, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane head-frame coordinates of scanner points (2-D arrays), before roll and pitch."""
    c, s = np.cos(head.angle), np.sin(head.angle)
    dx, dy = xx - head.centre_xy[0], yy - head.centre_xy[1]
    return (c * dx + s * dy).astype(np.float32), (-s * dx + c * dy).astype(np.float32)


def frame_uvw(head: Head, xx: np.ndarray, yy: np.ndarray):
    """Head-frame (u, v) of scanner points and the in-plane part of their height (None when the planes
    are not oblique): a point of the plane at scanner z lies at head height ``z + w_inplane``.

    Roll and pitch are an oblique cut of the head (exact for one axis: u scaled by cos(roll), v by
    cos(pitch)); the stack of planes is sheared, as a gantry-tilted series is."""
    ui, vi = frame_uv(head, xx, yy)
    if head.roll == 0.0 and head.pitch == 0.0:
        return ui, vi, None
    ca, sa, cb, sb = np.cos(head.roll), np.sin(head.roll), np.cos(head.pitch), np.sin(head.pitch)
    w_in = -(np.float32(sa) * ui + np.float32(sb) * vi)
    return np.float32(ca) * ui, np.float32(cb) * vi, w_in.astype(np.float32)


def head_to_scanner(head: Head, u: float, v: float, w: float) -> tuple[float, float, float]:
    """Scanner LPS (x, y, z) of the head-frame point (u, v, w) (inverse of ``frame_uvw``)."""
    ui, vi = u / np.cos(head.roll), v / np.cos(head.pitch)
    c, s = np.cos(head.angle), np.sin(head.angle)
    x = head.centre_xy[0] + c * ui - s * vi
    y = head.centre_xy[1] + s * ui + c * vi
    z = head.centre_z + w + np.sin(head.roll) * ui + np.sin(head.pitch) * vi
    return float(x), float(y), float(z)


def floor_height(head: Head, u, v) -> np.ndarray:
    """Height w of the cranial floor (three fossae with petrous and sphenoid ridges)."""
    au = np.abs(u)
    L = head.half_length / 80.0
    post = -70 + 0.008 * u * u + 0.012 * (v - 40 * L) ** 2
    mid = -50 + 0.014 * (au - 36 * L) ** 2 + 0.02 * (v + 6 * L) ** 2
    ant = -27 + 0.004 * u * u - 7 * np.exp(-u * u / 60.0) + 0.5 * np.maximum(0, v + 22 * L) ** 2
    floor = np.minimum(np.minimum(post, mid), ant)
    petrous = _ridge(au, v, (54 * L, 22 * L), (12 * L, -3 * L), -30, 0.08)
    wing = _ridge(au, v, (50 * L, -24 * L), (10 * L, -26 * L), -26, 0.15)
    clivus = -34 - 0.25 * u * u - 0.3 * np.maximum(0, v - 2 * L) ** 2 - 0.3 * np.maximum(0, -8 * L - v) ** 2
    floor = np.maximum(np.maximum(floor, petrous), np.maximum(wing, clivus))
    hole = 1 - (u * u + (v - 16 * L) ** 2) / 15.0 ** 2
    magnum = np.where(hole > 0, -62 - 60 * hole, 1e3)  # the foramen magnum
    return np.minimum(floor, magnum) + head.floor_shift


def _ridge(au, v, p0, p1, height, k):
    d = seg_dist2(au, v, p0, p1)
    return height - k * d


class Ellipse2D:
    """An ellipsoid's in-plane part, precomputed on its bounding box of the crop (reused by every plane)."""

    def __init__(self, u, v, c):
        self.c = c
        e2 = ((u - c[0]) / c[3]) ** 2 + ((v - c[1]) / c[4]) ** 2
        inside = e2 < 1.0
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        self.box = None if len(rows) == 0 else (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        self.e2 = None if self.box is None else e2[self.box]

    def crop(self, box) -> "Ellipse2D":
        """The same ellipse in the coordinates of the sub-array ``box`` (a pair of slices with starts)."""
        out = Ellipse2D.__new__(Ellipse2D)
        out.c, out.box, out.e2 = self.c, None, None
        if self.box is None:
            return out
        lo = [max(a.start, b.start) for a, b in zip(self.box, box)]
        hi = [min(a.stop, b.stop) for a, b in zip(self.box, box)]
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            return out
        out.box = tuple(slice(lo[i] - box[i].start, hi[i] - box[i].start) for i in range(2))
        out.e2 = self.e2[tuple(slice(lo[i] - self.box[i].start, hi[i] - self.box[i].start) for i in range(2))]
        return out

    def at(self, w):
        """(box, normalised radius squared on the box) at height w (a number, or an array the shape of the
        plane), or None when the plane misses it."""
        c = self.c
        if self.box is None:
            return None
        if np.ndim(w):
            wb = w[self.box]
            lo, hi = w_span(wb)
            if lo >= c[2] + c[5] or hi <= c[2] - c[5]:
                return None
            return self.box, self.e2 + ((wb - c[2]) / c[5]) ** 2
        if abs(w - c[2]) >= c[5]:
            return None
        return self.box, self.e2 + ((w - c[2]) / c[5]) ** 2


def prepare_extracranial(head: Head, u, v) -> dict:
    """The plane-independent parts of the scalp, skull, base and face (2-D arrays, ellipse boxes)."""
    au = np.abs(u)
    hl, hw = head.half_length, head.half_width
    fa, fb = hw * 0.92, hl + 6
    orbits, globes, mastoids = [], [], []
    for s in (-1, 1):
        orbits.append(Ellipse2D(u, v, (s * 30, -hl + 12, -36, 14, 18, 14)))
        globes.append(Ellipse2D(u, v, (s * 30, -hl + 1, -36, 11.5, 11.5, 11.5)))
        mastoids.append(Ellipse2D(u, v, (s * 50, 24, -52, 13, 13, 15)))
    return dict(
        u=u, v=v,
        frontal=(6.0 * np.exp(-(u / 18) ** 2) * (v < 0)).astype(np.float32),
        vpos=(0.35 * np.clip(v / hl, 0, 1)).astype(np.float32),
        lat4=(0.3 * np.clip(au / hw, 0, 1) ** 4).astype(np.float32),
        lat=(np.clip(au / hw - 0.5, 0, 1) * 2).astype(np.float32),
        face_r2=((u / fa) ** 2 + ((v + 8) / fb) ** 2).astype(np.float32),
        base_thick=(9.0 + 14.0 * np.exp(-seg_dist2(au, v, (50, 20), (14, -2)) / 120.0)
                    + 8.0 * np.exp(-(u * u + (v + 12) ** 2) / 300.0)).astype(np.float32),
        # zygomatic arch: a bar of bone beside the temporal fossa; nasal septum: a thin midline plate
        zygoma=(np.abs(au - (hw + 4.0 + 0.05 * np.maximum(0, -v))) < 2.2) & (v > -hl + 8) & (v < 6),
        septum=(au < 0.9) & (v < -hl + 30),
        cavities=[(Ellipse2D(u, v, c), c[6]) for c in head.cavities],
        orbits=orbits, globes=globes, mastoids=mastoids,
        spine=(((u / 14) ** 2 + ((v - 30) / 12) ** 2)).astype(np.float32),
        airway=(((u / 8) ** 2 + ((v - 8) / 5) ** 2)).astype(np.float32),
    )


def crop_prepared(pre: dict, box) -> dict:
    """``prepare_extracranial``'s result restricted to the sub-array ``box``."""
    out = {}
    for key, val in pre.items():
        if isinstance(val, np.ndarray):
            out[key] = val[box]
        elif isinstance(val, tuple):
            out[key] = tuple(a[box] for a in val)
        elif not isinstance(val, list):
            out[key] = val
        elif key == "cavities":
            out[key] = [(ell.crop(box), code) for ell, code in val]
        else:
            out[key] = [ell.crop(box) for ell in val]
    return out


def _gauss(w, centre: float, width: float):
    """exp(-((w - centre) / width)^2) as float32 (a number or an array)."""
    return np.float32(np.exp(-((w - centre) / width) ** 2)) if np.ndim(w) == 0 else \
        np.exp(-((w - np.float32(centre)) / np.float32(width)) ** 2)


def render_extracranial(head: Head, pre: dict, w, depth, floor, tex, tissue, fine=None) -> None:
    """Scalp, skull vault, skull base, sinuses, orbits and face into ``tissue`` (one plane), with the
    head's surgery and scalp findings (``head.surgery``). ``w`` is a number, or an array for oblique planes.

    ``fine`` (a unit-variance field with a ~10 mm grain) gives sinus septa and irregular base bone."""
    from ctseg_core.synth import surgery as S

    fine = np.zeros_like(tex) if fine is None else fine
    w_lo, w_hi = w_span(w)
    u, v = pre["u"], pre["v"]
    skull = pre["frontal"] * _gauss(w, -4, 13) + np.float32(head.skull_mm) * (
        1.0 + pre["vpos"] - pre["lat4"] * _gauss(w, -10, 25))
    tf = 5.0 * _gauss(w, -15, 18)
    scalp = head.scalp_mm + (pre["lat"] * tf if np.ndim(w) or tf > 0.3 else 0.0)
    extra = S.scalp_extra(head.surgery, u, v, w)
    scalp_out = scalp if extra is None else scalp + extra  # a haematoma lifts the skin off the skull
    outer = depth > -(skull + scalp_out)
    fat_at = skull + (0 if extra is None else extra)
    scalp_fat = (depth < -(fat_at + 0.5 * scalp)) & (depth > -(fat_at + 0.62 * scalp))
    if w_lo < -15:
        f = np.clip((-15 - w) / 12, 0.0, 1.0) * (1.0 - 0.28 * np.clip((-70 - w) / 40, 0, 1)) ** 2
        face = pre["face_r2"] < f
        outer |= face
        scalp_fat &= pre["face_r2"] > 0.85 * f  # no scalp fat inside the face
    tissue[outer] = T.SOFT
    tissue[scalp_fat & outer] = T.FAT
    if extra is not None:  # subgaleal: between the skull and the lifted scalp
        tissue[outer & (extra > 0.3) & (depth <= -skull) & (depth > -(skull + extra))] = T.SCALP_HAEMATOMA
    inside_vault = depth > 0
    bone = (depth <= 0) & (depth > -skull)
    tissue[bone] = T.DIPLOE
    tissue[bone & ((depth > -1.3) | (depth <= -skull + 1.5))] = T.CORTICAL
    if w_lo > -15 and w_lo > pre["floor_top"]:  # above the face and the cranial floor: the vault only
        below = np.zeros(depth.shape, bool)
    else:
        below = inside_vault & (w <= floor)
        base_bone = below & (w > floor - pre["base_thick"])
        deep = (outer & (depth <= -(skull + scalp_out))) | (below & ~base_bone)  # face and neck below the base
        tissue[deep] = T.MUSCLE
        tissue[deep & (tex < -1.1)] = T.FAT  # fat between the muscles of the face and neck
        tissue[base_bone] = T.SKULL_BASE
        tissue[base_bone & ((w > floor - 1.5) | (fine > 1.1))] = T.CORTICAL
    if -50 < w_hi and w_lo < -34:  # zygomatic arches
        tissue[pre["zygoma"] & (np.abs(w + 42) < 4.5) & (tissue == T.SOFT)] = T.CORTICAL
    for ell, code in pre["cavities"]:
        hit = ell.at(w)
        if hit is not None:
            box, e = hit
            t = tissue[box]
            septa = np.abs(fine[box]) < 0.12 if code == T.SINUS_AIR else False  # thin bony walls between cells
            t[(e < 1.0) & np.isin(t, (T.DIPLOE, T.CORTICAL, T.SKULL_BASE, T.MUSCLE, T.FAT))
              & ((depth[box] < -1.2) | below[box]) & ~septa] = code
            if code == T.SINUS_AIR:  # the nasal septum and turbinates split the nasal cavity
                t[(e < 1.0) & (t == code) & pre["septum"][box]] = T.CORTICAL
                t[(e < 0.8) & (t == code) & (np.abs(fine[box]) > 1.3)] = T.SOFT
    for ell in pre["mastoids"]:  # porous air in the mastoid bone
        hit = ell.at(w)
        if hit is not None:
            box, e = hit
            t = tissue[box]
            t[(e < 1.0) & np.isin(t, (T.DIPLOE, T.SKULL_BASE)) & (np.abs(fine[box]) > 1.2 - head.mastoid_air)] = T.SINUS_AIR
    for orb, glb in zip(pre["orbits"], pre["globes"]):
        hit = orb.at(w)
        if hit is not None:
            box, e = hit
            t = tissue[box]
            om = (e < 1.0) & (below[box] | ~inside_vault[box])
            t[om] = T.ORBIT_FAT
            g = glb.at(w)
            if g is not None:
                gbox, ge = g
                gt = tissue[gbox]
                gt[(ge < 1.0) & ((gt == T.ORBIT_FAT) | (gt == T.SOFT) | (gt == T.MUSCLE))] = T.EYE
    if w_lo < -62:
        low = deep if np.ndim(w) == 0 else deep & (w < -62)  # noqa: F821 (set below the floor)
        tissue[(pre["spine"] < 1) & low] = T.DIPLOE
        tissue[(pre["spine"] < 0.35) & low] = T.SOFT
        tissue[(pre["airway"] < 1) & low] = T.SINUS_AIR
    if head.surgery is not None:
        S.cut_vault(head.surgery, u, v, w, depth, skull, tissue)
        S.air_pockets(head.surgery, u, v, w, tissue)


def render_table(head: Head, xx, yy) -> np.ndarray:
    """2-D mask of the U-shaped headrest (fixed in the scanner frame) around the back of the head."""
    cx, cy = head.centre_xy
    out = head.skull_mm + head.scalp_mm + head.table_offset
    ax, ay = head.half_width + out, head.half_length + out
    r = np.hypot((xx - cx) / ax, (yy - cy) / ay)
    band = np.abs(r - 1.0) * min(ax, ay) < 1.4
    return band & (yy > cy + 0.15 * ay)
