"""Slice-wise attention (Zhang et al., "RSANet: Recurrent Slice-wise Attention Network for Multiple
Sclerosis Lesion Segmentation", MICCAI 2019), after the authors' code.

- ``slice_attention(q, k, v, dim)``: the SA block along one direction of a feature volume (N, C, D, H, W):
  the volume is cut into the slices along ``dim``; each slice's features (all channels and pixels) are a
  vector; the attention between every pair of slices is the softmax of their dot products, and the
  response at a slice is the attention-weighted sum of all slices' (value) features.
- ``RecurrentSliceAttention``: the RSA block applies ONE shared SA block (shared 1x1x1 query, key and
  value projections) along the coronal, sagittal and axial directions in turn, each pass adding its
  response, scaled by a learned factor that starts at 0, to its input: x <- x + beta_d * SA_d(x).

On a 2-D feature map (N, C, H, W), one slice of a scan, the block runs along the in-plane directions
only (coronal and sagittal); the axial pass needs several slices (``rsanet``).
"""

from __future__ import annotations

import torch
from torch import nn

# the dimension of a (N, C, D=z, H=y, W=x) volume along which each direction's slices are stacked
DIRECTION_DIMS = {"coronal": 3, "sagittal": 4, "axial": 2}
RSA_ORDER = ("coronal", "sagittal", "axial")  # the authors' order


def slice_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dim: int) -> torch.Tensor:
    """SA along ``dim`` of (N, C, D, H, W) tensors: softmax(Q K^T) V over the slices along ``dim``."""
    n, length = q.shape[0], q.shape[dim]
    order = [0, dim] + [d for d in range(1, 5) if d != dim]

    def slices(t: torch.Tensor) -> torch.Tensor:  # (N, L, rest)
        return t.permute(order).reshape(n, length, -1)

    attention = torch.softmax(slices(q) @ slices(k).transpose(1, 2), dim=-1)  # (N, L, L)
    out = (attention @ slices(v)).reshape([n, length] + [v.shape[d] for d in order[2:]])
    return out.permute(torch.argsort(torch.tensor(order)).tolist())


class SliceProjections(nn.Module):
    """The query, key and value of an SA block (1x1x1 projections) and its response along a direction."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv3d(channels, channels, 1)
        self.key = nn.Conv3d(channels, channels, 1)
        self.value = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        return slice_attention(self.query(x), self.key(x), self.value(x), DIRECTION_DIMS[direction])


def _check_directions(directions) -> tuple[str, ...]:
    unknown = set(directions) - set(DIRECTION_DIMS)
    if unknown:
        raise ValueError(f"unknown slice direction(s) {sorted(unknown)} (known: {', '.join(DIRECTION_DIMS)})")
    return tuple(directions)


class SliceAttention(nn.Module):
    """The SA block along one ``direction`` of (N, C, D, H, W) volumes: x + beta * SA(x), beta learned from 0."""

    def __init__(self, channels: int, direction: str = "axial"):
        super().__init__()
        self.direction = _check_directions([direction])[0]
        self.sa = SliceProjections(channels)
        self.beta = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.beta * self.sa(x, self.direction)


class RecurrentSliceAttention(nn.Module):
    """The RSA block (module docstring) on (N, C, D, H, W) volumes or (N, C, H, W) single slices: one shared
    SA block applied along each direction in turn, with one learned factor per direction."""

    def __init__(self, channels: int, directions=RSA_ORDER):
        super().__init__()
        self.directions = _check_directions(directions)
        self.sa = SliceProjections(channels)
        self.betas = nn.Parameter(torch.zeros(len(self.directions)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.ndim == 4
        if single:
            x = x.unsqueeze(2)
        for i, direction in enumerate(self.directions):
            if single and direction == "axial":
                continue  # one slice: nothing to attend to along z
            x = x + self.betas[i] * self.sa(x, direction)
        return x.squeeze(2) if single else x
