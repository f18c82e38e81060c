"""CT image formation on the exact tissue model: slice-thickness averaging (sub-planes, and an analytic
partial volume of the inner table along z), in-plane point spread (core, long tail, edge enhancement),
correlated noise, beam-hardening and metal streaks, motion ghosts, the reconstruction circle."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.special import ndtr

from ctseg_core.synth.fields import upsample_linear

PLANE_STEP_MM = 2.5  # at most this far apart: the planes averaged into one slice


def sub_plane_offsets(thickness_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (mm, relative to the slice centre) and weights of the planes that make one slice.

    Midpoint rule for a flat slice profile: ceil(t / 2.5 mm) planes (1 up to 2.5 mm, 2 up to 5 mm, 3 at
    7 mm), each standing for a sub-slab of t / n. Where it matters most (the vault, the cranial floor and
    the tentorium cut obliquely) each plane adds the partial volume of its own sub-slab analytically, so
    more planes change the rim beside the inner table by less than 2 HU (measured against 1.8 mm steps)."""
    n = max(1, int(np.ceil(thickness_mm / PLANE_STEP_MM - 1e-9)))
    offs = (np.arange(n) + 0.5) * thickness_mm / n - thickness_mm / 2
    return offs, np.full(n, 1.0 / n)


def slab_fraction(dist_mm: np.ndarray, slope: np.ndarray | float, half_mm: float, tail: float = 0.0,
                  tail_sigma_mm: float = 0.0) -> np.ndarray:
    """Fraction of a sub-slab (half-height ``half_mm``) on the far side of a surface, for points at signed
    distance ``dist_mm`` (positive on the near side) that changes by ``slope`` per mm along z (linear model).

    This is the partial volume of a surface the slice cuts obliquely (the vault near the vertex, the
    orbital roofs): a thick slice holds a little bone over a wide band beside the inner table. ``tail`` of
    the slice profile lies in a Gaussian of ``tail_sigma_mm`` along z (the rest is flat over the sub-slab):
    it adds a smooth, long-reaching fringe of bone where the surface is cut at a glancing angle."""
    span = np.abs(slope) * (2.0 * half_mm) + 1e-3
    flat = np.clip(0.5 - dist_mm / span, 0.0, 1.0)
    if tail <= 0.0:
        return flat
    fringe = ndtr(-dist_mm / (np.abs(slope) * tail_sigma_mm + 1e-3))
    return ((1.0 - tail) * flat + tail * fringe).astype(np.float32)


def blur_inplane(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Partial volume: Gaussian point spread in-plane (slice by slice for 3-D input)."""
    sig = (0.0, sigma_px, sigma_px) if img.ndim == 3 else sigma_px
    return ndi.gaussian_filter(img, sig, mode="nearest", truncate=3.0)


def point_spread(img: np.ndarray, sigma_px: float, halo_weight: float = 0.0, halo_sigma_px: float = 4.0,
                 sharpen: float = 0.0) -> np.ndarray:
    """The reconstruction's in-plane point spread on a (n, ny, nx) stack: a Gaussian core, a long tail of
    weight ``halo_weight`` (computed at a quarter of the resolution: bone glares a few HU into the brain
    beside the table) and, for sharp kernels, edge enhancement (unsharp mask of gain ``sharpen``)."""
    out = blur_inplane(img, sigma_px)
    if sharpen > 0:
        out += np.float32(sharpen) * (out - blur_inplane(out, max(1.5 * sigma_px, 1.0)))
    if halo_weight > 0:
        out *= np.float32(1.0 - halo_weight)
        out += np.float32(halo_weight) * _coarse_blur(img, halo_sigma_px)
    return out


def _coarse_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """A wide Gaussian blur computed on a block-averaged copy and upsampled (bilinear)."""
    from ctseg_core.synth.fields import upsample_linear

    f = int(np.clip(sigma_px // 1.1, 1, 4))  # the blur stays at least 1.1 px wide on the coarse grid
    n, ny, nx = img.shape
    my, mx = ny // f * f, nx // f * f
    if my == 0 or mx == 0:
        return ndi.gaussian_filter(img, (0, sigma_px, sigma_px), mode="nearest", truncate=3.0)
    small = np.add.reduceat(np.add.reduceat(img, np.arange(0, my, f), axis=1), np.arange(0, mx, f), axis=2)
    small = small.astype(np.float32, copy=False)
    small /= _block_counts(ny, my, f)[:, None] * _block_counts(nx, mx, f)[None, :]
    small = ndi.gaussian_filter(small, (0, sigma_px / f, sigma_px / f), mode="nearest", truncate=3.0)
    return upsample_linear(small, (ny, nx), f, offset=(f - 1) / 2.0)  # block i is centred on pixel f*i + (f-1)/2


def _block_counts(n: int, m: int, f: int) -> np.ndarray:
    """Pixels in each block of ``np.add.reduceat`` with starts 0, f, .. < m over n pixels (the last takes the rest)."""
    c = np.full(len(range(0, m, f)), float(f), np.float32)
    c[-1] = n - f * (len(c) - 1)
    return c


def correlated_noise(rng: np.random.Generator, shape, std_hu: float, size_px: int = 3) -> np.ndarray:
    """Noise with a CT-like grain: white noise box-filtered in-plane (``size_px``), rescaled to ``std_hu``.

    Uniform white noise is drawn (several times faster than normal); the box sum of ``size_px**2`` samples is
    close to Gaussian."""
    n = rng.random(shape, dtype=np.float32)
    n -= np.float32(0.5)
    size_px = max(1, int(size_px))
    if size_px > 1:
        for ax in (-2, -1):
            ndi.uniform_filter1d(n, size_px, axis=ax, output=n, mode="wrap")
    n *= np.float32(std_hu * size_px * np.sqrt(12.0))  # a box mean of size s has std 1/sqrt(s) per axis
    return n


def wrap_fill(block: np.ndarray, shape, at: tuple[int, int]) -> np.ndarray:
    """A (n, ny, nx) array holding ``block`` at rows/cols ``at`` and copies of it (wrapped) everywhere else."""
    return np.pad(block, ((0, 0), (at[0], shape[1] - at[0] - block.shape[1]),
                          (at[1], shape[2] - at[1] - block.shape[2])), mode="wrap")


def _line_terms(shape, a, b):
    """Distance (px) of every pixel from the line through a and b (row, col), and the position along it
    (0 at a, 1 at b)."""
    yy, xx = np.indices(shape, dtype=np.float32)
    d = np.asarray(b, np.float32) - np.asarray(a, np.float32)
    ln = float(np.hypot(*d)) + 1e-6
    nx, ny = -d[0] / ln, d[1] / ln  # normal (x, y) of the line a-b
    dist = (xx - a[1]) * nx + (yy - a[0]) * ny
    t = ((xx - a[1]) * d[1] + (yy - a[0]) * d[0]) / ln ** 2
    return dist, t, ln


def streaks(rng: np.random.Generator, dense: np.ndarray, strength_hu: float, n_lines: int = 6) -> np.ndarray:
    """Beam-hardening: dark bands joining dense bone (a 2-D mask), brightening at their ends."""
    out = np.zeros(dense.shape, np.float32)
    pts = np.argwhere(dense)
    if len(pts) < 20 or strength_hu <= 0:
        return out
    mid = np.median(pts[:, 1])
    left, right = pts[pts[:, 1] < mid], pts[pts[:, 1] >= mid]
    if len(left) == 0 or len(right) == 0:
        return out
    for _ in range(n_lines):
        a, b = left[rng.integers(len(left))], right[rng.integers(len(right))]
        dist, t, ln = _line_terms(dense.shape, a, b)
        if ln < 30:
            continue
        band = np.exp(-(dist / rng.uniform(1.5, 4.0)) ** 2) * ((t > 0) & (t < 1))
        out -= strength_hu * rng.uniform(0.4, 1.0) * band
    return out


def metal_streaks(rng: np.random.Generator, metal: np.ndarray, strength: float, px_mm: float) -> np.ndarray:
    """Streaks radiating from metal (a 2-D mask): alternating bright and dark lines through the metal that
    fade with distance, and a dark band between two separate pieces (photon starvation)."""
    out = np.zeros(metal.shape, np.float32)
    pts = np.argwhere(metal)
    if len(pts) == 0 or strength <= 0:
        return out
    amount = np.sqrt(len(pts) * px_mm * px_mm)  # mm: the size of the metal in this slice
    for i in range(int(rng.integers(6, 14))):
        a = pts[rng.integers(len(pts))]
        ang = rng.uniform(0, np.pi)
        b = a + 100.0 * np.array([np.sin(ang), np.cos(ang)])
        dist, t, ln = _line_terms(metal.shape, a, b)
        r_mm = np.abs(t) * ln * px_mm
        amp = strength * rng.uniform(25, 100) * min(amount / 3.0, 2.0) * (1 if i % 2 else -1)
        out += amp * np.exp(-(dist * px_mm / rng.uniform(0.4, 1.2)) ** 2) / (1.0 + r_mm / 15.0)
    return out


def ghost(img: np.ndarray, rng: np.random.Generator, motion_mm: float, px_mm: float) -> np.ndarray:
    """Patient motion during one slice: the image blended with a shifted copy of itself (double contours,
    smeared edges). ``img`` is one 2-D slice; returns a new array."""
    shift_px = rng.uniform(0.3, 1.0) * motion_mm / px_mm
    ang = rng.uniform(0, 2 * np.pi)
    moved = ndi.shift(img, (shift_px * np.sin(ang), shift_px * np.cos(ang)), order=1, mode="nearest")
    m = np.float32(rng.uniform(0.2, 0.45))
    return (1 - m) * img + m * moved


def outside_circle(shape_yx, radius_px: float | None = None) -> np.ndarray:
    """2-D mask of the pixels outside the reconstruction circle."""
    ny, nx = shape_yx
    r = (min(ny, nx) / 2.0) if radius_px is None else radius_px
    yy, xx = np.ogrid[:ny, :nx]
    return (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > r * r


def skull_shading(intracranial: np.ndarray, strength_hu: float, length_mm: float, pixel_mm: float) -> np.ndarray:
    """float32 HU to add to one slice: ``strength_hu * exp(-d / length_mm)`` inside ``intracranial`` (bool
    (y, x)), d the in-plane distance to its edge (the inner table), 0 outside. Residual beam hardening
    ("cupping") makes real brain next to the skull read several HU brighter over a centimetre or more.
    The distance is taken on a ~2 mm grid and interpolated (cheap; exact enough for a smooth shading)."""
    out = np.zeros(intracranial.shape, np.float32)
    if strength_hu <= 0 or not intracranial.any():
        return out
    f = max(1, int(round(2.0 / pixel_mm)))
    coarse = ndi.distance_transform_edt(intracranial[::f, ::f]).astype(np.float32) * (f * pixel_mm)
    d = upsample_linear(coarse, intracranial.shape, f)
    np.multiply(np.exp(-d / length_mm), strength_hu, out=out, where=intracranial)
    return out
