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
        k = self.k.astype(np.float32)
        a = xx_mm.reshape(-1, 1).astype(np.float32) * k[:, 0] + yy_mm.reshape(-1, 1).astype(np.float32) * k[:, 1]
        a += self.phi.astype(np.float32)  # (P, K), float32: phases stay within a few hundred rad
        if w_inplane is not None:  # oblique planes: the height of a point is z + w_inplane
            a += w_inplane.reshape(-1, 1).astype(np.float32) * k[:, 2]
        out = np.empty((a.shape[0], 2 * a.shape[1]), np.float32)
        np.cos(a, out=out[:, :a.shape[1]])
        np.sin(a, out=out[:, a.shape[1]:])
        out[:, a.shape[1]:] *= -1
        return out

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
    ``out_shape`` pixels beginning at pixel ``start`` (edge samples extend beyond the ends).

    Each of the ``factor`` phases of the output is one weighted sum of two shifted views of ``a`` (no
    gathers at full size)."""
    for axis, n_out, s0 in ((a.ndim - 2, out_shape[0], start[0]), (a.ndim - 1, out_shape[1], start[1])):
        a = _upsample_axis(a, axis, int(factor), int(n_out), int(s0), float(offset))
    return a


def _upsample_axis(a: np.ndarray, axis: int, f: int, n_out: int, s0: int, off: float) -> np.ndarray:
    n_in = a.shape[axis]
    lo = int(np.floor((s0 - off) / f)) - 1
    hi = int(np.floor((s0 + n_out - 1 - off) / f)) + 2
    b = np.take(a, np.clip(np.arange(lo, hi + 1), 0, n_in - 1), axis=axis)  # small, edge-padded
    out_shape = list(a.shape)
    out_shape[axis] = n_out
    out = np.empty(out_shape, np.float32)
    for r in range(f):
        frac = (r - off) / f
        k = int(np.floor(frac))
        t = np.float32(frac - k)
        j0 = -(-(s0 - r) // f)  # first j with f*j + r >= s0
        j1 = (s0 + n_out - 1 - r) // f  # last
        if j1 < j0:
            continue
        i0 = j0 + k - lo
        n = j1 - j0 + 1
        lo_v = _axis_slice(b, axis, i0, i0 + n)
        hi_v = _axis_slice(b, axis, i0 + 1, i0 + 1 + n)
        dst = _axis_slice(out, axis, f * j0 + r - s0, None, f)
        if t == 0:
            dst[...] = lo_v
        else:
            np.subtract(hi_v, lo_v, out=dst)
            dst *= t
            dst += lo_v
    return out


def _axis_slice(a: np.ndarray, axis: int, start, stop, step=None) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(start, stop, step)
    return a[tuple(idx)]
