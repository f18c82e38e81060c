"""RSANet (Zhang et al., "RSANet: Recurrent Slice-wise Attention Network for Multiple Sclerosis Lesion
Segmentation", MICCAI 2019) on a stack of K consecutive CT slices.

The authors' network is their U-Net (filters 32-512, two conv-GroupNorm(8)-ReLU per level, strided-
convolution downsampling, 1x1 convolution + nearest upsampling, concatenated skips) with one RSA block on
the bottleneck. CT slices are 5 mm apart against 0.5 mm pixels, so here the U-Net is 2.5-D: its
convolutions run on each slice of the stack (shared weights) and the RSA block at the bottleneck, over the
(K, h, w) feature volume, is the only path between slices (along the axial direction; the coronal and
sagittal passes mix each slice in-plane). Input (N, K, H, W), one channel per slice; output
(N, classes, K, H, W): every slice of the stack is segmented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctseg_core.labels import NUM_CLASSES
from ctseg_core.models.registry import register_model
from ctseg_core.models.slice_attention import RecurrentSliceAttention

DEFAULT_FILTERS = (32, 64, 128, 256, 512)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with GroupNorm (8 groups) and ReLU (the authors' ``unetVggBlock``)."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 8):
        g = min(groups, out_ch)
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(g, out_ch),
                         nn.ReLU(inplace=True), nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
                         nn.GroupNorm(g, out_ch), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """1x1 convolution to half the width, nearest upsampling x2, concatenation with the skip, a ConvBlock."""

    def __init__(self, skip_ch: int, in_ch: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, in_ch // 2, 1, bias=False)
        self.conv = ConvBlock(skip_ch + in_ch // 2, skip_ch)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), scale_factor=2.0, mode="nearest")
        return self.conv(torch.cat([skip, x], dim=1))


class RSANet(nn.Module):
    SIZE_MULTIPLE = 16  # four stride-2 downsamplings

    def __init__(self, in_chans: int = 1, num_classes: int = NUM_CLASSES, filters=DEFAULT_FILTERS,
                 slab_slices: int = 8, dropout: float = 0.2):
        super().__init__()
        f = tuple(int(v) for v in filters)
        if len(f) != 5:
            raise ValueError(f"RSANet needs five filter widths, got {f}")
        if in_chans != 1:
            raise ValueError(f"RSANet takes one channel per slice (in_chans 1), got {in_chans}")
        if slab_slices < 1:
            raise ValueError(f"slab_slices must be at least 1, got {slab_slices}")
        self.in_chans, self.slab_slices, self.num_classes = in_chans, slab_slices, num_classes
        self.init_conv = nn.Conv2d(in_chans, f[0], 3, padding=1, bias=False)
        self.dropout = nn.Dropout2d(dropout)
        self.encoder = nn.ModuleList([ConvBlock(f[0], f[0])] + [ConvBlock(f[k - 1], f[k]) for k in range(1, 4)])
        self.down = nn.ModuleList([nn.Conv2d(f[k], f[k], 3, stride=2, padding=1, bias=False) for k in range(4)])
        self.center = ConvBlock(f[3], f[4])
        self.rsa = RecurrentSliceAttention(f[4])
        self.up = nn.ModuleList([UpBlock(f[k], f[k + 1]) for k in range(3, -1, -1)])
        self.final = nn.Sequential(nn.Conv2d(f[0], f[0], 3, padding=1, bias=False), nn.Conv2d(f[0], num_classes, 1,
                                                                                             bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"RSANet takes (N, K slices, H, W), got shape {tuple(x.shape)}")
        m = self.SIZE_MULTIPLE
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input height and width must be multiples of {m}, got {tuple(x.shape[-2:])}")
        n, k = x.shape[:2]
        x = x.reshape(n * k, 1, *x.shape[-2:])  # slices into the batch
        x = self.dropout(self.init_conv(x))
        skips = []
        for block, down in zip(self.encoder, self.down):
            skip = block(x)
            skips.append(skip)
            x = down(skip)
        x = self.center(x)
        x = self._across_slices(x, n)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(skip, x)
        x = self.final(x)  # (N*K, classes, H, W)
        return x.reshape(n, -1, *x.shape[1:]).transpose(1, 2)

    def _across_slices(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """The RSA block over each stack's (C, K, h, w) feature volume."""
        vol = x.reshape(n, -1, *x.shape[1:]).transpose(1, 2)  # (N, C, K, h, w)
        vol = self.rsa(vol)
        return vol.transpose(1, 2).reshape(x.shape)


@register_model(kind="slab", example_input=(1, 8, 512, 512),
                paper="MICCAI 2019 paper: the RSA block adds 3 (C^2 + C) + 3 parameters to its U-Net "
                      "('negligible cost'); no totals given")
def rsanet(in_chans: int = 1, num_classes: int = NUM_CLASSES, filters=DEFAULT_FILTERS, slab_slices: int = 8,
           dropout: float = 0.2) -> RSANet:
    """RSANet: U-Net over K slices with a recurrent slice-wise attention bottleneck (Zhang et al.)."""
    return RSANet(in_chans, num_classes, filters, slab_slices, dropout)
