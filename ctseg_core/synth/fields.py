"""Smooth random fields as sums of random plane waves, evaluated with one matrix product.

cos(k.p + phi) = cos(A(x, y) + c(z)) = cos A cos c - sin A sin c, so a field on many planes is the
product of a (pixels x 2K) matrix of in-plane terms with a (2K x planes) matrix of per-plane terms.
Wave vectors on a sphere shell of radius 2 pi / wavelength give a labyrinth of level sets (gyri);
shorter wave vectors give slowly varying textures.
"""

from __future__ import annotations

import numpy as np


def wave_field(rng: np.random.Generator, z_mm, yy_mm: np.ndarray, xx_mm: np.ndarray, wavelength_mm: tuple[float, float],
               n_waves: int = 16, z_squash: float = 1.0) -> np.ndarray:
    """Unit-variance field (planes, *yy.shape) from ``n_waves`` plane waves with wavelengths in the range.

    ``z_squash`` < 1 shortens the vertical wave-vector components (sheets closer to vertical).
    """
    d = rng.standard_normal((n_waves, 3))
    d[:, 2] *= z_squash
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = d * (2 * np.pi / rng.uniform(*wavelength_mm, size=n_waves))[:, None]
    phi = rng.uniform(0, 2 * np.pi, n_waves)
    a = xx_mm.reshape(-1, 1) * k[:, 0] + yy_mm.reshape(-1, 1) * k[:, 1] + phi  # (P, K)
    c = np.asarray(z_mm, float).reshape(-1, 1) * k[:, 2]  # (Z, K)
    inplane = np.concatenate([np.cos(a), -np.sin(a)], axis=1).astype(np.float32)  # (P, 2K)
    perplane = np.concatenate([np.cos(c), np.sin(c)], axis=1).astype(np.float32) * np.float32(np.sqrt(2.0 / n_waves))
    return (perplane @ inplane.T).reshape((len(c),) + xx_mm.shape)  # (Z, P): contiguous, no transpose


def polar_wave_field(rng: np.random.Generator, z_mm, rho_mm: np.ndarray, theta: np.ndarray, radius_mm: float,
                     wavelength_mm: tuple[float, float], n_waves: int = 16, radial_scale: float = 0.35,
                     z_scale: float = 0.6) -> np.ndarray:
    """Like ``wave_field`` in cylindrical coordinates (arc length at ``radius_mm``, radius, height).

    Radial and vertical wave numbers are scaled down, so level sets run across the surface (like sulci);
    angular wave numbers are whole numbers of turns, so the field is continuous across theta = +-pi.
    """
    d = rng.standard_normal((n_waves, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = d * (2 * np.pi / rng.uniform(*wavelength_mm, size=n_waves))[:, None]
    m = np.round(k[:, 0] * radius_mm)  # turns around the head
    k_r, k_z = k[:, 1] * radial_scale, k[:, 2] * z_scale
    phi = rng.uniform(0, 2 * np.pi, n_waves)
    a = theta.reshape(-1, 1) * m + rho_mm.reshape(-1, 1) * k_r + phi
    c = np.asarray(z_mm, float).reshape(-1, 1) * k_z
    inplane = np.concatenate([np.cos(a), -np.sin(a)], axis=1).astype(np.float32)
    perplane = np.concatenate([np.cos(c), np.sin(c)], axis=1).astype(np.float32) * np.float32(np.sqrt(2.0 / n_waves))
    return (perplane @ inplane.T).reshape((len(c),) + rho_mm.shape)


def upsample_linear(a: np.ndarray, out_shape: tuple[int, int], factor: int) -> np.ndarray:
    """Bilinear upsampling of the last two axes of ``a`` (sampled at every ``factor``-th pixel) to ``out_shape``."""
    for axis, n_out in ((-2, out_shape[0]), (-1, out_shape[1])):
        n_in = a.shape[axis]
        pos = np.minimum(np.arange(n_out) / factor, n_in - 1)
        i0 = np.minimum(pos.astype(np.intp), max(n_in - 2, 0))
        t = (pos - i0).astype(np.float32)
        a0 = np.take(a, i0, axis=axis)
        a1 = np.take(a, np.minimum(i0 + 1, n_in - 1), axis=axis)
        shape = [1] * a.ndim
        shape[axis] = n_out
        a = a0 + (a1 - a0) * t.reshape(shape)
    return a
