"""Smooth random fields as sums of random plane waves, evaluated with one matrix product.

cos(k.p + phi) = cos(A(x, y) + c(z)) = cos A cos c - sin A sin c, so a field on many planes is the
product of a (pixels x 2K) matrix of in-plane terms with a (2K x planes) matrix of per-plane terms.
Wave vectors on a sphere shell of radius 2 pi / wavelength give a labyrinth of level sets (gyri);
shorter wave vectors give slowly varying textures.

The waves are drawn once (``draw_waves``/``draw_polar_waves``) and evaluated on any planes; a plane's
values depend only on its height (evaluate in chunks of a fixed number of planes to keep them bitwise
equal however many planes are asked for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Waves:
    k: np.ndarray  # (K, 3) wave vectors (in-plane x, in-plane y, z) in rad/mm; for polar waves (turns, radial, z)
    phi: np.ndarray  # (K,) phases
    polar: bool = False

    def inplane(self, yy_mm: np.ndarray, xx_mm: np.ndarray, w_inplane: np.ndarray | None = None) -> np.ndarray:
        """(P, 2K) in-plane matrix. Cartesian: yy/xx are coordinates; polar: yy = rho, xx = theta."""
        a = xx_mm.reshape(-1, 1) * self.k[:, 0] + yy_mm.reshape(-1, 1) * self.k[:, 1] + self.phi  # (P, K)
        if w_inplane is not None:  # oblique planes: the height of a point is z + w_inplane
            a = a + w_inplane.reshape(-1, 1) * self.k[:, 2]
        return np.concatenate([np.cos(a), -np.sin(a)], axis=1).astype(np.float32)

    def evaluate(self, z_mm, inplane: np.ndarray, shape, chunk: int | None = None) -> np.ndarray:
        """Field on the planes ``z_mm`` (planes, *shape); ``chunk``: rows per matrix product (the last padded)."""
        z = np.asarray(z_mm, float).reshape(-1)
        n = len(self.phi)
        c = z.reshape(-1, 1) * self.k[:, 2]
        perplane = np.concatenate([np.cos(c), np.sin(c)], axis=1).astype(np.float32) * np.float32(np.sqrt(2.0 / n))
        if chunk is None or len(z) == chunk:
            return (perplane @ inplane.T).reshape((len(z),) + tuple(shape))
        out = np.empty((len(z), inplane.shape[0]), np.float32)
        for i in range(0, len(z), chunk):
            rows = perplane[i:i + chunk]
            m = len(rows)
            if m < chunk:
                rows = np.concatenate([rows, np.zeros((chunk - m, rows.shape[1]), np.float32)])
            out[i:i + m] = (rows @ inplane.T)[:m]
        return out.reshape((len(z),) + tuple(shape))


def draw_waves(rng: np.random.Generator, wavelength_mm: tuple[float, float], n_waves: int = 16,
               z_squash: float = 1.0) -> Waves:
    """``n_waves`` plane waves with wavelengths in the range (unit-variance sum); ``z_squash`` < 1 shortens
    the vertical wave-vector components (sheets closer to vertical)."""
    d = rng.standard_normal((n_waves, 3))
    d[:, 2] *= z_squash
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = d * (2 * np.pi / rng.uniform(*wavelength_mm, size=n_waves))[:, None]
    return Waves(k, rng.uniform(0, 2 * np.pi, n_waves))


def draw_polar_waves(rng: np.random.Generator, radius_mm: float, wavelength_mm: tuple[float, float],
                     n_waves: int = 16, radial_scale: float = 0.35, z_scale: float = 0.6) -> Waves:
    """Waves in cylindrical coordinates (arc length at ``radius_mm``, radius, height). Radial and vertical
    wave numbers are scaled down, so level sets run across the surface (like sulci); angular wave numbers
    are whole numbers of turns, so the field is continuous across theta = +-pi."""
    d = rng.standard_normal((n_waves, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = d * (2 * np.pi / rng.uniform(*wavelength_mm, size=n_waves))[:, None]
    kk = np.stack([np.round(k[:, 0] * radius_mm), k[:, 1] * radial_scale, k[:, 2] * z_scale], axis=1)
    # in-plane terms: theta * turns + rho * k_r  (xx = theta, yy = rho)
    return Waves(kk, rng.uniform(0, 2 * np.pi, n_waves), polar=True)


def wave_field(rng: np.random.Generator, z_mm, yy_mm: np.ndarray, xx_mm: np.ndarray, wavelength_mm: tuple[float, float],
               n_waves: int = 16, z_squash: float = 1.0, w_inplane: np.ndarray | None = None) -> np.ndarray:
    """Unit-variance field (planes, *yy.shape) from ``n_waves`` plane waves with wavelengths in the range."""
    waves = draw_waves(rng, wavelength_mm, n_waves, z_squash)
    return waves.evaluate(z_mm, waves.inplane(yy_mm, xx_mm, w_inplane), xx_mm.shape)


def upsample_linear(a: np.ndarray, out_shape: tuple[int, int], factor: int, start: tuple[int, int] = (0, 0),
                    offset: float = 0.0) -> np.ndarray:
    """Bilinear upsampling of the last two axes of ``a`` (sample i at pixel ``factor * i + offset``) to
    ``out_shape`` pixels beginning at pixel ``start`` (edge samples extend beyond the ends)."""
    for axis, n_out, s0 in ((-2, out_shape[0], start[0]), (-1, out_shape[1], start[1])):
        n_in = a.shape[axis]
        pos = np.clip((np.arange(s0, s0 + n_out) - offset) / factor, 0, n_in - 1)
        i0 = np.minimum(pos.astype(np.intp), max(n_in - 2, 0))
        t = (pos - i0).astype(np.float32)
        a0 = np.take(a, i0, axis=axis)
        a1 = np.take(a, np.minimum(i0 + 1, n_in - 1), axis=axis)
        shape = [1] * a.ndim
        shape[axis] = n_out
        a = a0 + (a1 - a0) * t.reshape(shape)
    return a
