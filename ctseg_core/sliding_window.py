"""Sliding-window inference over a slice (nnU-Net style), for models trained on patches.

A model trained on square patches normalises its features over the patch (GroupNorm, instance
normalisation in the attention gates, squeeze-and-excitation pooling), so it is run on windows of
the same size and the overlapping outputs are blended with Gaussian weights that favour each
window's centre. (MONAI's ``sliding_window_inference`` does the same; it is not used here because
the GUI process keeps MONAI out of its imports.)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch

OVERLAP = 0.25  # least fraction of a window shared with the next one (Gaussian blending hides the seams)


def window_starts(length: int, window: int, overlap: float = OVERLAP) -> list[int]:
    """Start offsets of windows covering ``0..length`` (the last one ends exactly at ``length``)."""
    if length <= window:
        return [0]
    step = max(1, int(window * (1.0 - overlap)))
    n = -(-(length - window) // step) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


@lru_cache(maxsize=8)
def gaussian_weights(window: int, sigma_scale: float = 0.125) -> torch.Tensor:
    """(window, window) weights: a Gaussian with sigma = window / 8, floored to stay positive at the edges."""
    r = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-0.5 * (r / (window * sigma_scale)) ** 2)
    w = g[:, None] * g[None, :]
    w = w / w.max()
    return w.clamp_(min=1e-3)


def sliding_window(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, window: int,
                   overlap: float = OVERLAP) -> torch.Tensor:
    """``forward`` applied to (N, C, H, W) input in ``window`` x ``window`` tiles, outputs blended.

    Inputs no larger than the window along both axes go through ``forward`` whole. Output channels
    come from ``forward``; the result has the input's height and width."""
    h, w = x.shape[-2:]
    if h <= window and w <= window:
        return forward(x)
    ys, xs = window_starts(h, window, overlap), window_starts(w, window, overlap)
    wy, wx = min(window, h), min(window, w)
    weight = gaussian_weights(window)[:wy, :wx].to(x.device)
    out = norm = None
    for y0 in ys:
        for x0 in xs:
            tile = forward(x[..., y0:y0 + wy, x0:x0 + wx]).float()
            if out is None:
                out = torch.zeros(tile.shape[:2] + (h, w), dtype=torch.float32, device=x.device)
                norm = torch.zeros((h, w), dtype=torch.float32, device=x.device)
            out[..., y0:y0 + wy, x0:x0 + wx] += tile * weight
            norm[y0:y0 + wy, x0:x0 + wx] += weight
    return out / norm
