"""CT image formation on the exact tissue model: slice-thickness averaging (sub-planes), in-plane
blur (partial volume), correlated noise, beam-hardening streaks near dense bone."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def sub_plane_offsets(thickness_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (mm, relative to the slice centre) and weights of the planes that make one slice."""
    if thickness_mm >= 2.5:  # midpoint rule for a flat slice profile: two planes at +-t/4
        return np.array([-thickness_mm / 4, thickness_mm / 4]), np.array([0.5, 0.5])
    return np.array([0.0]), np.array([1.0])


def blur_inplane(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Partial volume: Gaussian point spread in-plane (slice by slice for 3-D input)."""
    sig = (0.0, sigma_px, sigma_px) if img.ndim == 3 else sigma_px
    return ndi.gaussian_filter(img, sig, mode="nearest", truncate=3.0)


def correlated_noise(rng: np.random.Generator, shape, std_hu: float, size_px: int = 3) -> np.ndarray:
    """Noise with a CT-like grain: white noise box-filtered in-plane (``size_px``), rescaled to ``std_hu``.

    Uniform white noise is drawn (several times faster than normal); the box sum of ``size_px**2`` samples is
    close to Gaussian."""
    n = rng.random(shape, dtype=np.float32)
    n -= np.float32(0.5)
    for ax in (-2, -1):
        ndi.uniform_filter1d(n, size_px, axis=ax, output=n, mode="wrap")
    n *= np.float32(std_hu * size_px * np.sqrt(12.0))  # a box mean of size s has std 1/sqrt(s) per axis
    return n


def wrap_fill(block: np.ndarray, shape, at: tuple[int, int]) -> np.ndarray:
    """A (n, ny, nx) array holding ``block`` at rows/cols ``at`` and copies of it (wrapped) everywhere else."""
    return np.pad(block, ((0, 0), (at[0], shape[1] - at[0] - block.shape[1]),
                          (at[1], shape[2] - at[1] - block.shape[2])), mode="wrap")


def streaks(rng: np.random.Generator, dense: np.ndarray, strength_hu: float, n_lines: int = 6) -> np.ndarray:
    """Beam-hardening: dark bands joining dense bone (a 2-D mask), brightening at their ends."""
    out = np.zeros(dense.shape, np.float32)
    pts = np.argwhere(dense)
    if len(pts) < 20 or strength_hu <= 0:
        return out
    yy, xx = np.indices(dense.shape, dtype=np.float32)
    mid = np.median(pts[:, 1])
    left, right = pts[pts[:, 1] < mid], pts[pts[:, 1] >= mid]
    if len(left) == 0 or len(right) == 0:
        return out
    for _ in range(n_lines):
        a, b = left[rng.integers(len(left))], right[rng.integers(len(right))]
        d = b - a
        ln = float(np.hypot(*d))
        if ln < 30:
            continue
        nx, ny = -d[0] / ln, d[1] / ln  # normal (x, y) of the line a-b
        dist = (xx - a[1]) * nx + (yy - a[0]) * ny
        t = ((xx - a[1]) * d[1] + (yy - a[0]) * d[0]) / ln ** 2
        band = np.exp(-(dist / rng.uniform(1.5, 4.0)) ** 2) * ((t > 0) & (t < 1))
        out -= strength_hu * rng.uniform(0.4, 1.0) * band
    return out
