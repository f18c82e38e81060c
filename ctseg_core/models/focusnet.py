"""FocusNet++ (Kaul, Pears, Manandhar, "FocusNet++: attentive aggregated transformations for efficient
and accurate medical image segmentation", ISBI 2021), after the authors' Keras code (TheFocusNetSeries).

- **Residual group attention block** (``GroupAttentionBlock``): a 1x1 convolution, then the channels are
  split into ``cardinality`` groups (ResNeXt-style aggregated transformations). Groups are taken in pairs:
  the first of a pair computes an attention map (BN-LeakyReLU-conv3x3-BN-LeakyReLU-conv3x3-conv1x1-sigmoid),
  the second a residual transformation (a 1x1 projection plus two 3x3 convolutions); their product goes
  through a 1x1 convolution (BN, LeakyReLU). The pairs are concatenated, a 1x1 convolution and BN give the
  output width, and the block's shortcut (a 1x1 projection when the width changes) is added.
- **Encoder**: a 5x5 convolution, then stages of such blocks (1, 3, 3, 3 blocks; widths 48, 96, 156, 256)
  separated by 2x2 max pooling, and a bottleneck of two blocks (512).
- **Decoder**: at each scale, upsample, one block to the skip's width, add the encoder features, a 3x3
  convolution (ReLU); every scale emits an intermediate output (conv1x1-BN-LeakyReLU-conv1x1-sigmoid),
  upsampled to full size; the four outputs are concatenated and fused (conv1x1-BN-LeakyReLU-conv1x1) into
  the final map. The heads run at their own scale and are upsampled afterwards (nearest upsampling
  commutes with 1x1 convolutions, batch normalisation and point-wise activations, so this equals the
  Keras code's upsample-first order at a fraction of the cost).

ctseg's version predicts 8 classes (softmax logits; the intermediate outputs are per-class sigmoids) and
is trained with any loss of ``ctseg_core.losses``; its paper's hybrid loss is ``--loss hybrid``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctseg_core.labels import NUM_CLASSES
from ctseg_core.models.registry import register_model

LEAK = 0.3  # Keras' LeakyReLU default slope, as in the authors' code


def bn_lrelu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.LeakyReLU(LEAK, inplace=True))


class AttentionBranch(nn.Sequential):
    """One group's attention map in 0..1 (same shape as the group)."""

    def __init__(self, ch: int):
        super().__init__(bn_lrelu(ch), nn.Conv2d(ch, ch, 3, padding=1), bn_lrelu(ch), nn.Conv2d(ch, ch, 3, padding=1),
                         nn.Conv2d(ch, ch, 1), nn.Sigmoid())


class TransformBranch(nn.Module):
    """One group's residual transformation: a 1x1 projection (BN, LeakyReLU) plus two 3x3 convolutions."""

    def __init__(self, ch: int):
        super().__init__()
        self.skip = nn.Sequential(nn.Conv2d(ch, ch, 1), bn_lrelu(ch))
        self.body = nn.Sequential(bn_lrelu(ch), nn.Conv2d(ch, ch, 3, padding=1), bn_lrelu(ch),
                                  nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class GroupAttentionBlock(nn.Module):
    """The residual group attention block (module docstring); ``cardinality`` groups, taken in pairs."""

    def __init__(self, in_ch: int, out_ch: int, cardinality: int = 4):
        super().__init__()
        if cardinality < 2 or cardinality % 2 or in_ch % cardinality:
            raise ValueError(f"cardinality must be even and divide the block's width {in_ch}, got {cardinality}")
        group = in_ch // cardinality
        pairs = cardinality // 2
        self.cardinality = cardinality
        self.reduce = nn.Conv2d(in_ch, in_ch, 1)
        self.attention = nn.ModuleList([AttentionBranch(group) for _ in range(pairs)])
        self.transform = nn.ModuleList([TransformBranch(group) for _ in range(pairs)])
        self.merge = nn.ModuleList([nn.Sequential(nn.Conv2d(group, 2 * group, 1), bn_lrelu(2 * group))
                                    for _ in range(pairs)])
        self.expand = nn.Sequential(nn.Conv2d(2 * group * pairs, out_ch, 1), nn.BatchNorm2d(out_ch))
        self.shortcut = nn.Identity() if in_ch == out_ch else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1),
                                                                           nn.BatchNorm2d(out_ch))
        self.act = nn.LeakyReLU(LEAK, inplace=True)

    def group_attention(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The attention map of each pair (for tests and inspection)."""
        groups = self.reduce(x).chunk(self.cardinality, dim=1)
        return [att(groups[2 * i]) for i, att in enumerate(self.attention)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.reduce(x).chunk(self.cardinality, dim=1)
        pairs = [merge(trans(groups[2 * i + 1]) * att(groups[2 * i]))
                 for i, (att, trans, merge) in enumerate(zip(self.attention, self.transform, self.merge))]
        return self.act(self.expand(torch.cat(pairs, dim=1)) + self.shortcut(x))


def stage(in_ch: int, out_ch: int, n_blocks: int, cardinality: int) -> nn.Sequential:
    return nn.Sequential(GroupAttentionBlock(in_ch, out_ch, cardinality),
                         *[GroupAttentionBlock(out_ch, out_ch, cardinality) for _ in range(n_blocks - 1)])


class IntermediateOutput(nn.Sequential):
    """A decoder scale's output: conv1x1-BN-LeakyReLU-conv1x1-sigmoid (upsampled by the network)."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int):
        super().__init__(nn.Conv2d(in_ch, mid_ch, 1), bn_lrelu(mid_ch), nn.Conv2d(mid_ch, num_classes, 1), nn.Sigmoid())


class DecoderStage(nn.Module):
    """Upsample x2, a block to the skip's width, add the skip, a 3x3 convolution with ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, cardinality: int):
        super().__init__()
        self.block = GroupAttentionBlock(in_ch, skip_ch, cardinality)
        self.conv = nn.Sequential(nn.Conv2d(skip_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(skip + self.block(x))


class FocusNetPP(nn.Module):
    SIZE_MULTIPLE = 16  # four 2x2 poolings

    def __init__(self, in_chans: int = 3, num_classes: int = NUM_CLASSES, widths=(32, 48, 96, 156, 256, 512),
                 blocks=(1, 3, 3, 3, 2), cardinality: int = 4, head_channels=(128, 64, 32),
                 final_channels=(16, 9, 3)):
        super().__init__()
        w = tuple(int(v) for v in widths)
        if len(w) != 6 or len(blocks) != 5 or len(head_channels) != 3 or len(final_channels) != 3:
            raise ValueError("FocusNet++ needs 6 widths (stem, 4 stages, bottleneck), 5 block counts, "
                             "3 head widths and 3 final widths")
        self.stem = nn.Conv2d(in_chans, w[0], 5, padding=2)
        self.encoder = nn.ModuleList([stage(w[k], w[k + 1], blocks[k], cardinality) for k in range(5)])
        # decoder stages from the bottleneck up; the last one ends in the three small convolutions
        f1, f2, f3 = final_channels
        self.decoder = nn.ModuleList([DecoderStage(w[5], w[4], w[4], cardinality),
                                      DecoderStage(w[4], w[3], w[3], cardinality),
                                      DecoderStage(w[3], w[2], w[2], cardinality),
                                      DecoderStage(w[2], w[1], f1, cardinality)])
        self.final = nn.Sequential(nn.Conv2d(f1, f2, 3, padding=1), nn.ReLU(inplace=True),
                                   nn.Conv2d(f2, f3, 3, padding=1), nn.ReLU(inplace=True))
        self.heads = nn.ModuleList([IntermediateOutput(w[4], head_channels[0], num_classes),
                                    IntermediateOutput(w[3], head_channels[1], num_classes),
                                    IntermediateOutput(w[2], head_channels[2], num_classes),
                                    nn.Sequential(nn.Conv2d(f3, num_classes, 1), nn.Sigmoid())])
        self.fuse = nn.Sequential(nn.Conv2d(4 * num_classes, 32, 1), bn_lrelu(32), nn.Conv2d(32, num_classes, 1))
        self.num_classes = num_classes

    def intermediate_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four per-class sigmoid maps at full size, coarsest first."""
        m = self.SIZE_MULTIPLE
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input height and width must be multiples of {m}, got {tuple(x.shape[-2:])}")
        x = self.stem(x)
        skips = []
        for k, st in enumerate(self.encoder):
            x = st(x)
            if k < 4:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        outs = []
        for k, (dec, head) in enumerate(zip(self.decoder, self.heads)):
            x = dec(x, skips[3 - k])
            if k == 3:
                x = self.final(x)
            scale = 2 ** (3 - k)
            out = head(x)
            outs.append(out if scale == 1 else F.interpolate(out, scale_factor=float(scale), mode="nearest"))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat(self.intermediate_outputs(x), dim=1))


@register_model(paper="ISBI 2021 paper: 'fewer parameters and FLOPs' than the U-Nets it is compared with "
                      "(its figures were not available here); this is the width of the authors' code")
def focusnetpp(in_chans: int = 3, num_classes: int = NUM_CLASSES, widths=(32, 48, 96, 156, 256, 512),
               blocks=(1, 3, 3, 3, 2), cardinality: int = 4, head_channels=(128, 64, 32),
               final_channels=(16, 9, 3)) -> FocusNetPP:
    """FocusNet++: residual group attention blocks, multi-scale outputs fused (Kaul et al.)."""
    return FocusNetPP(in_chans, num_classes, widths, blocks, cardinality, head_channels, final_channels)
