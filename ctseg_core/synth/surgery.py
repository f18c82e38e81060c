"""What trauma and surgery leave outside the brain, never labelled: craniotomy flaps and craniectomy
defects, burr holes, scalp haematoma and swelling, postoperative air outside the dura (scalp, flap kerf,
burr holes), and metal (aneurysm clip, shunt catheter, plates).

Air *inside* the dura is pneumocephalus (class 6) and is made only by ``lesions.py``; nothing here puts
air under the inner table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctseg_core.synth import tissues as T
from ctseg_core.synth.shapes import cap_cos, ellipsoid, overlaps, round_cone
from ctseg_core.synth.vault import inner_depth


@dataclass
class Cap:
    """A region of the vault: the directions (from the head-frame origin) within ``radius`` rad of ``d``."""
    d: tuple[float, float, float]
    radius: float

    @property
    def cos_r(self) -> float:
        return float(np.cos(self.radius))

    def w_range(self, reach_mm: float = 110.0) -> tuple[float, float]:
        """Heights the cap can reach (a cheap test before evaluating it on a plane)."""
        el = np.arcsin(np.clip(self.d[2], -1, 1))
        lo, hi = el - self.radius, el + self.radius
        return reach_mm * float(np.sin(max(lo, -np.pi / 2))) - 5, reach_mm * float(np.sin(min(hi, np.pi / 2))) + 5


@dataclass
class Surgery:
    flap: Cap | None = None  # bone flap (craniotomy) or, with ``craniectomy``, the missing bone
    craniectomy: bool = False
    kerf_mm: float = 1.5  # the saw cut around the flap
    burr_holes: list = field(default_factory=list)  # Caps
    fresh: bool = False  # recent surgery: air in the kerf, the burr holes and the scalp
    scalp: Cap | None = None  # scalp haematoma or swelling over the vault
    scalp_mm: float = 0.0
    scalp_kind: str = ""  # "haematoma" | "swelling"
    air: list = field(default_factory=list)  # ellipsoids (u, v, w, su, sv, sw) of air in the scalp
    clips: list = field(default_factory=list)  # ellipsoids of aneurysm clips (metal)
    valves: list = field(default_factory=list)  # ellipsoids of shunt valves (plastic, radio-opaque)
    tubes: list = field(default_factory=list)  # ((u, v, w, r), (u, v, w, r)): shunt catheter segments (plastic)
    plates: list = field(default_factory=list)  # ellipsoids of fixation plates on the flap (metal)

    def describe(self) -> dict:
        """JSON-able summary (``SynthCase.params['surgery']``)."""
        return dict(flap=None if self.flap is None else ("craniectomy" if self.craniectomy else "craniotomy"),
                    burr_holes=len(self.burr_holes), fresh=self.fresh, scalp=self.scalp_kind or None,
                    scalp_mm=round(self.scalp_mm, 1), air_pockets=len(self.air), clips=len(self.clips),
                    shunt=bool(self.tubes), plates=len(self.plates),
                    flap_direction=None if self.flap is None else [round(x, 3) for x in self.flap.d],
                    scalp_direction=None if self.scalp is None else [round(x, 3) for x in self.scalp.d])

    def caps(self):
        return ([self.flap] if self.flap is not None else []) + list(self.burr_holes)


def _direction(rng, az_range=(-np.pi, np.pi), el_range=(0.15, 0.9)) -> tuple[float, float, float]:
    az = rng.uniform(*az_range)  # 0: anterior (-v), pi/2: left (+u)
    el = np.arcsin(rng.uniform(*el_range))
    return float(np.cos(el) * np.sin(az)), float(-np.cos(el) * np.cos(az)), float(np.sin(el))


def _under(head, d, depth_mm: float) -> tuple[float, float, float]:
    """The point ``depth_mm`` below the inner table along direction ``d`` (bisection on the vault)."""
    lo, hi = 0.0, 200.0
    for _ in range(40):
        mid = (lo + hi) / 2
        p = np.array(d) * mid
        if inner_depth(head, np.array(p[0]), np.array(p[1]), float(p[2])) > depth_mm:
            lo = mid
        else:
            hi = mid
    p = np.array(d) * lo
    return float(p[0]), float(p[1]), float(p[2])


def sample_surgery(rng: np.random.Generator, head) -> Surgery:
    s = Surgery()
    L = head.half_length / 80.0
    r = rng.random()
    if r < 0.11:  # craniotomy (8 %) or decompressive craniectomy (3 %)
        s.flap = Cap(_direction(rng), float(rng.uniform(0.3, 0.6)))
        s.craniectomy = r < 0.03
        s.kerf_mm = float(rng.uniform(1.0, 2.5))
        s.fresh = bool(rng.random() < 0.6)
        if not s.craniectomy:
            for _ in range(int(rng.integers(0, 4))):
                a = rng.uniform(0, 2 * np.pi)  # a plate across the kerf, on the outer table
                d = _offset_direction(s.flap.d, s.flap.radius, a)
                s.plates.append(_under(head, d, -head.skull_mm * 1.2) + (3.5, 3.5, 3.5))
    if rng.random() < 0.1:  # burr holes (chronic subdural drainage, shunt, biopsy)
        for _ in range(int(rng.integers(1, 3))):
            s.burr_holes.append(Cap(_direction(rng, (-1.3, 1.3), (0.45, 0.9)), float(rng.uniform(0.06, 0.09))))
        s.fresh = s.fresh or bool(rng.random() < 0.5)
    if rng.random() < 0.05:  # ventricular shunt: catheter from a right frontal burr hole into the frontal horn
        side = -1
        d = np.array([side * 0.3, -0.45, 0.84])
        d /= np.linalg.norm(d)
        hole = Cap(tuple(float(x) for x in d), 0.07)
        s.burr_holes.append(hole)
        entry = _under(head, hole.d, -head.skull_mm - head.scalp_mm * 0.6)  # the valve sits in the scalp
        tip = (side * 8.0 * head.ventricle_scale ** 0.3, -22 * L, 14.0)
        rad = float(rng.uniform(0.8, 1.2))
        s.tubes = [((*entry, rad), (*tip, rad))]
        s.valves.append((entry[0], entry[1], entry[2], 4.0, 4.0, 2.0))  # the valve/reservoir in the scalp
    if rng.random() < 0.04:  # aneurysm clip near the circle of Willis
        c = (float(rng.choice([-1, 1]) * rng.uniform(5, 22)), float(rng.uniform(-18, -6) * L), float(rng.uniform(-22, -12)))
        s.clips.append(c + (float(rng.uniform(1.5, 3)), float(rng.uniform(2.5, 4.5)), float(rng.uniform(1.5, 3))))
    if rng.random() < 0.25:  # scalp haematoma or swelling (trauma), outside the skull
        s.scalp = Cap(_direction(rng, el_range=(-0.1, 0.85)), float(rng.uniform(0.22, 0.55)))
        s.scalp_kind = "haematoma" if rng.random() < 0.6 else "swelling"
        s.scalp_mm = float(rng.uniform(4, 18))
    n_air = int(rng.integers(2, 7)) if (s.fresh and (s.flap is not None or s.burr_holes)) else \
        (int(rng.integers(1, 4)) if s.scalp is not None and rng.random() < 0.3 else 0)
    site = s.flap or (s.burr_holes[0] if s.burr_holes else None) or s.scalp
    for _ in range(n_air):  # air in the scalp over the site
        d = _offset_direction(site.d, site.radius * rng.uniform(0, 1.1), rng.uniform(0, 2 * np.pi))
        p = _under(head, d, -head.skull_mm - head.scalp_mm * rng.uniform(0.3, 0.7))
        sz = rng.uniform(1.0, 3.5)
        s.air.append((p[0], p[1], p[2], float(sz), float(sz * rng.uniform(0.6, 1.4)), float(sz * rng.uniform(0.6, 1.4))))
    return s


def _offset_direction(d, angle: float, around: float) -> tuple[float, float, float]:
    """The unit vector ``angle`` rad away from ``d``, turned ``around`` rad about it."""
    d = np.asarray(d, float)
    a = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(d, a)
    out = np.cos(angle) * d + np.sin(angle) * (np.cos(around) * a + np.sin(around) * b)
    return tuple(float(x) for x in out / np.linalg.norm(out))


def scalp_extra(s: Surgery | None, u, v, w):
    """Extra scalp thickness (mm) of a scalp haematoma/swelling on this plane, or None."""
    if s is None or s.scalp is None or not overlaps(w, *s.scalp.w_range(140.0)):
        return None
    c = cap_cos(u, v, w, s.scalp.d)
    frac = np.clip((c - s.scalp.cos_r) / (1.0 - s.scalp.cos_r), 0, 1)  # 0 at the rim, 1 at the centre
    return (s.scalp_mm * np.sqrt(frac * (2 - frac))).astype(np.float32)


def cut_vault(s: Surgery | None, u, v, w, depth, skull, tissue) -> None:
    """Craniotomy kerf, craniectomy defect and burr holes in the vault bone of ``tissue`` (one plane), and
    the fixation plates on the outer table."""
    if s is None or not s.caps():
        return
    for c in s.plates:
        if overlaps(w, c[2] - c[5], c[2] + c[5]):
            tissue[(ellipsoid(u, v, w, c) < 1) & (depth <= -skull) & (depth > -skull - 1.0)] = T.METAL
    vault = (depth <= 0) & (depth > -skull) & np.isin(tissue, (T.CORTICAL, T.DIPLOE))
    gap_code = T.POSTOP_AIR if s.fresh else T.SOFT
    if s.flap is not None and overlaps(w, *s.flap.w_range()):
        c = cap_cos(u, v, w, s.flap.d)
        if s.craniectomy:
            tissue[vault & (c > s.flap.cos_r)] = T.SOFT
        else:
            rr = np.sqrt(u * u + v * v + w * w) + 1e-6
            kerf = np.abs(c - s.flap.cos_r) < np.sin(s.flap.radius) * (0.5 * s.kerf_mm) / rr
            tissue[vault & kerf] = gap_code
    for hole in s.burr_holes:
        if overlaps(w, *hole.w_range()):
            tissue[vault & (cap_cos(u, v, w, hole.d) > hole.cos_r)] = gap_code


def bone_removed(s: Surgery | None, u, v, w) -> np.ndarray | None:
    """Where the vault's bone is gone (craniectomy, burr holes) along each point's direction, or None."""
    if s is None:
        return None
    caps = ([s.flap] if s.flap is not None and s.craniectomy else []) + list(s.burr_holes)
    out = None
    for cap in caps:
        if overlaps(w, *cap.w_range()):
            m = cap_cos(u, v, w, cap.d) > cap.cos_r
            out = m if out is None else out | m
    return out


def air_pockets(s: Surgery | None, u, v, w, tissue) -> None:
    """Postoperative air in the scalp (never inside the skull)."""
    if s is None:
        return
    for c in s.air:
        if overlaps(w, c[2] - c[5], c[2] + c[5]):
            tissue[(ellipsoid(u, v, w, c) < 1) & np.isin(tissue, (T.SOFT, T.FAT, T.SCALP_HAEMATOMA))] = T.POSTOP_AIR


def devices(s: Surgery | None, u, v, w, tissue) -> None:
    """Devices inside and outside the skull: aneurysm clips (metal), the shunt valve and catheter (plastic)."""
    if s is None:
        return
    for c in s.clips:
        if overlaps(w, c[2] - c[5], c[2] + c[5]):
            tissue[ellipsoid(u, v, w, c) < 1] = T.METAL
    for c in s.valves:
        if overlaps(w, c[2] - c[5], c[2] + c[5]):
            tissue[ellipsoid(u, v, w, c) < 1] = T.CATHETER
    for a, b in s.tubes:
        if overlaps(w, min(a[2], b[2]) - 2, max(a[2], b[2]) + 2):
            tissue[round_cone(u, v, w, a, b) < 0] = T.CATHETER
