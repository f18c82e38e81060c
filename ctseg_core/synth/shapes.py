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


def uv_box(u: np.ndarray, v: np.ndarray, lo: tuple[float, float], hi: tuple[float, float], pad: int = 2):
    """Index box (a pair of slices) of the 2-D grids ``u``, ``v`` (affine in the pixel indices) holding the
    rectangle lo..hi of (u, v); None when it lies outside. Lets a small shape be evaluated on its own box."""
    ny, nx = u.shape
    if ny < 2 or nx < 2:
        return (slice(0, ny), slice(0, nx))
    a = np.array([[u[1, 0] - u[0, 0], u[0, 1] - u[0, 0]], [v[1, 0] - v[0, 0], v[0, 1] - v[0, 0]]], float)
    if abs(np.linalg.det(a)) < 1e-12:
        return (slice(0, ny), slice(0, nx))
    inv = np.linalg.inv(a)
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]], float) - [u[0, 0], v[0, 0]]
    rc = corners @ inv.T  # (row, col) of each corner
    r0, c0 = np.floor(rc.min(axis=0)).astype(int) - pad
    r1, c1 = np.ceil(rc.max(axis=0)).astype(int) + pad + 1
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, ny), min(c1, nx)
    if r0 >= r1 or c0 >= c1:
        return None
    return (slice(r0, r1), slice(c0, c1))


def round_cone_mask(u, v, w, a, b, out: np.ndarray, grow=0.0, grid=None, slack: float = 0.0) -> None:
    """``out |= round_cone(u, v, w, a, b) < grow``, evaluated only on the round cone's own box of the plane.

    The box comes from ``grid`` = (u, v) grids affine in the pixel indices (default: ``u``, ``v``
    themselves); ``slack`` (mm) covers how far ``u`` may depart from the affine grid (a midline shift)."""
    gu, gv = (u, v) if grid is None else grid
    if np.ndim(gu) != 2:  # points, not a plane: evaluate everywhere
        out |= round_cone(u, v, w, a, b) < grow
        return
    reach = max(a[3], b[3]) + (float(np.max(grow)) if np.ndim(grow) else float(grow)) + 1.0 + slack
    box = uv_box(gu, gv, (min(a[0], b[0]) - reach, min(a[1], b[1]) - reach),
                 (max(a[0], b[0]) + reach, max(a[1], b[1]) + reach))
    if box is None:
        return
    wb = w if np.ndim(w) == 0 else w[box]
    gb = grow if np.ndim(grow) == 0 else grow[box]
    out[box] |= round_cone(u[box], v[box], wb, a, b) < gb
