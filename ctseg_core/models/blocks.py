"""Building blocks shared by the U-Net family: skip reductions, the full-resolution stem, attention
gates (space attention), squeeze-and-excitation (channel attention) and the decoder block.

Ablations switch blocks on and off with flags; they never copy them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_count(channels: int, max_groups: int = 8) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels`` (for GroupNorm)."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def upsample_to(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SkipReduce(nn.Sequential):
    """Skip connection: a 1x1 convolution and ReLU that reduce an encoder level's channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))


class FullResStem(nn.Sequential):
    """The full-resolution level, straight from the input: two 3x3 convolutions with ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Space attention (Oktay et al., Attention U-Net): the coarser adjacent level ``g`` gates the
    features ``x`` of the finer level.

    ``x`` is brought to ``g``'s resolution by a strided 2x2 convolution (as in Oktay et al.), both are
    projected to ``inter_ch`` channels with GroupNorm, summed, passed through ReLU, a 1x1 convolution
    to one channel, InstanceNorm and a sigmoid; the attention map is upsampled and multiplies ``x``.
    """

    def __init__(self, x_ch: int, g_ch: int, inter_ch: int | None = None):
        super().__init__()
        inter_ch = inter_ch or max(x_ch // 2, 8)
        self.theta_x = nn.Sequential(nn.Conv2d(x_ch, inter_ch, 2, stride=2, bias=False),
                                     nn.GroupNorm(group_count(inter_ch), inter_ch))
        self.phi_g = nn.Sequential(nn.Conv2d(g_ch, inter_ch, 1, bias=False),
                                   nn.GroupNorm(group_count(inter_ch), inter_ch))
        self.psi = nn.Conv2d(inter_ch, 1, 1)
        self.psi_norm = nn.InstanceNorm2d(1, affine=True)

    def attention(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The attention map in 0..1, shape (N, 1, H, W) at ``x``'s resolution."""
        theta = self.theta_x(x)
        phi = self.phi_g(g)
        if phi.shape[-2:] != theta.shape[-2:]:
            phi = upsample_to(phi, theta.shape[-2:])
        f = F.relu(theta + phi, inplace=True)
        psi = self.psi(f)
        if psi.shape[-1] * psi.shape[-2] > 1:  # InstanceNorm needs more than one pixel
            psi = self.psi_norm(psi)
        return upsample_to(torch.sigmoid(psi), x.shape[-2:])

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x, g)


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool, two fully connected layers (ReLU, sigmoid), rescale."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w), inplace=True)))
        return x * w[:, :, None, None]


class ConvGNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
                         nn.GroupNorm(group_count(out_ch), out_ch), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Concatenated inputs -> 3x3 conv + GroupNorm + ReLU -> [squeeze-and-excitation] -> upsample x2.

    The convolution runs before the upsampling, at the lower resolution, which keeps the decoder cheap
    (channel attention commutes with the bilinear upsampling: it rescales whole channels).
    """

    def __init__(self, in_ch: int, out_ch: int, channel_attention: bool = True):
        super().__init__()
        self.conv = ConvGNReLU(in_ch, out_ch)
        self.se = SqueezeExcite(out_ch) if channel_attention else nn.Identity()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0]
        x = self.se(self.conv(x))
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
