"""Implicit shapes in the head frame, evaluated on one plane (u, v arrays; w a number or an array)."""

from __future__ import annotations

import numpy as np


def ellipsoid(u, v, w, c) -> np.ndarray:
    """Normalised radius (1 on the surface) of the ellipsoid c = (u, v, w, su, sv, sw, ...)."""
    return ((u - c[0]) / c[3]) ** 2 + ((v - c[1]) / c[4]) ** 2 + ((w - c[2]) / c[5]) ** 2


def round_cone(u, v, w, a, b) -> np.ndarray:
    """Signed distance (mm, negative inside) to the round cone joining spheres a and b = (u, v, w, radius)."""
    ex, ey, ez = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    l2 = ex * ex + ey * ey + ez * ez
    t = np.clip(((u - a[0]) * ex + (v - a[1]) * ey + (w - a[2]) * ez) / l2, 0, 1)
    d = np.sqrt((u - a[0] - t * ex) ** 2 + (v - a[1] - t * ey) ** 2 + (w - a[2] - t * ez) ** 2)
    return d - (a[3] + t * (b[3] - a[3]))


def seg_dist2(x, y, p0, p1):
    """Squared distance of the points (x, y) to the segment p0-p1."""
    ax, ay = p0
    bx, by = p1
    ex, ey = bx - ax, by - ay
    t = np.clip(((x - ax) * ex + (y - ay) * ey) / (ex * ex + ey * ey), 0, 1)
    return (x - ax - t * ex) ** 2 + (y - ay - t * ey) ** 2


def overlaps(w, lo: float, hi: float) -> bool:
    """Whether a plane at height ``w`` (a number or an array) reaches into the height range [lo, hi]."""
    if np.ndim(w) == 0:
        return lo <= w <= hi
    return float(w.max()) >= lo and float(w.min()) <= hi


def cap_cos(u, v, w, d) -> np.ndarray:
    """Cosine of the angle between the direction of each point (from the head-frame origin) and the unit
    vector ``d``: a cap of the vault is where it exceeds the cap's cos(radius)."""
    r = np.sqrt(u * u + v * v + w * w) + 1e-6
    return (u * d[0] + v * d[1] + w * d[2]) / r
