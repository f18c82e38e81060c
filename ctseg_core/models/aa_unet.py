"""All Attention U-Net (Chang et al., "All Attention U-NET for semantic segmentation of intracranial
hemorrhages in head CT images", the RSU+SC model) and its ablations on one class.

Structure (levels 0..5 at 1/1, 1/2, ..., 1/32 of the input):
- encoder: a timm ResNeSt50 (``resnest50d``, ``features_only``) gives levels 1..5;
- level 0 comes straight from the input through two 3x3 convolutions with ReLU (``FullResStem``);
- skip connections: a 1x1 convolution + ReLU reduces each encoder level to ``decoder_channels[k]``;
- path aggregation with space attention: an attention gate merges each level with the adjacent coarser one;
- decoder: at each level, concatenate the previous output with the space-attention output, 3x3 conv +
  GroupNorm + ReLU, squeeze-and-excitation channel attention, upsample by two;
- head: the full-resolution output and level 0 -> 3x3 conv -> 1x1 conv to ``num_classes`` logits.

Ablations (same blocks, flags): ``rsu`` neither attention, ``rsu_s`` space only, ``rsu_c`` channel only;
``resnet50_unet`` the baseline U-Net on a ResNet50 encoder without attention. ``aa_unet`` with
``bottleneck_attention="rsa"`` adds RSANet's recurrent slice-wise attention block on the bottleneck
(``ctseg_core.models.slice_attention``; one slice, so along the in-plane directions), for measuring it
as an ablation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ctseg_core.errors import CheckpointError
from ctseg_core.labels import NUM_CLASSES
from ctseg_core.models.blocks import AttentionGate, ConvGNReLU, DecoderBlock, FullResStem, SkipReduce
from ctseg_core.models.registry import register_model
from ctseg_core.models.slice_attention import RecurrentSliceAttention

DEFAULT_DECODER_CHANNELS = (16, 32, 64, 128, 256, 256)  # levels 1/1 .. 1/32: few channels at full resolution


def build_encoder(name: str, in_chans: int, weights: str | None = None, encoder_args: dict | None = None) -> nn.Module:
    """A timm encoder with five feature levels (strides 2..32); optional local ImageNet weights.

    ``encoder_args`` are timm constructor options that change depth and width while keeping the block
    design, e.g. ``{"channels": [32, 64, 128, 256], "stem_width": 16}`` for a ResNeSt at half width or
    ``{"layers": [2, 2, 2, 2]}``."""
    import timm

    args = {k: tuple(v) if isinstance(v, list) else v for k, v in (encoder_args or {}).items()}
    try:
        encoder = timm.create_model(name, features_only=True, pretrained=False, in_chans=in_chans, **args)
    except TypeError as exc:
        raise CheckpointError(f"encoder {name!r} does not accept {sorted(args)}: {exc}") from exc
    if list(encoder.feature_info.reduction()) != [2, 4, 8, 16, 32]:
        raise CheckpointError(f"encoder {name!r} must give five levels at strides 2..32, "
                              f"got {encoder.feature_info.reduction()}")
    if weights:
        load_encoder_weights(encoder, weights)
    return encoder


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a timm classification model's weights (safetensors) into a ``features_only`` encoder."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("encoder weights file not found", path)
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"not a safetensors file ({exc})", path) from exc
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(f"encoder weights lack {len(missing)} tensors of the encoder, e.g. {missing[0]}", path)
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"encoder weight {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                              f"expected {tuple(own[bad[0]].shape)}", path)
    encoder.load_state_dict({k: state[k] for k in own})


class AttentionUNet(nn.Module):
    """U-Net with a timm encoder, full-resolution stem, space attention (gates) and channel attention (SE)."""

    def __init__(self, encoder: str = "resnest50d", decoder_channels=DEFAULT_DECODER_CHANNELS, in_chans: int = 3,
                 num_classes: int = NUM_CLASSES, encoder_weights: str | None = None,
                 space_attention: bool = True, channel_attention: bool = True, encoder_args: dict | None = None,
                 bottleneck_attention: str | None = None):
        super().__init__()
        ch = tuple(int(c) for c in decoder_channels)
        if len(ch) != 6:
            raise ValueError(f"decoder_channels needs six widths (levels 1/1..1/32), got {ch}")
        self.encoder = build_encoder(encoder, in_chans, encoder_weights, encoder_args)
        enc_ch = self.encoder.feature_info.channels()
        self.stem = FullResStem(in_chans, ch[0])
        self.skips = nn.ModuleList([SkipReduce(c_in, c_out) for c_in, c_out in zip(enc_ch, ch[1:])])
        if bottleneck_attention not in (None, "rsa"):
            raise ValueError(f"bottleneck_attention must be None or 'rsa', got {bottleneck_attention!r}")
        self.bottleneck = RecurrentSliceAttention(ch[5]) if bottleneck_attention == "rsa" else None
        self.space_attention = space_attention
        self.gates = nn.ModuleList([AttentionGate(ch[k], ch[k + 1]) for k in range(5)]) if space_attention else None
        # block k works at level k and outputs level k-1: block 5 takes the bottleneck alone
        blocks = [DecoderBlock(ch[5], ch[4], channel_attention)]
        blocks += [DecoderBlock(2 * ch[k], ch[k - 1], channel_attention) for k in range(4, 0, -1)]
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Sequential(ConvGNReLU(2 * ch[0], ch[0]), nn.Conv2d(ch[0], num_classes, 1))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {tuple(x.shape[-2:])}")
        levels = [self.stem(x)] + [skip(f) for skip, f in zip(self.skips, self.encoder(x))]
        if self.bottleneck is not None:
            levels[5] = self.bottleneck(levels[5])
        if self.gates is not None:
            merged = [gate(levels[k], levels[k + 1]) for k, gate in enumerate(self.gates)] + [levels[5]]
        else:
            merged = levels
        out = self.decoder[0](levels[5])
        for block, k in zip(self.decoder[1:], range(4, 0, -1)):
            out = block(out, merged[k])
        return self.head(torch.cat([out, merged[0]], dim=1))


@register_model
def aa_unet(encoder: str = "resnest50d", decoder_channels=DEFAULT_DECODER_CHANNELS, in_chans: int = 3,
            num_classes: int = NUM_CLASSES, encoder_weights: str | None = None,
            encoder_args: dict | None = None, bottleneck_attention: str | None = None) -> AttentionUNet:
    """All Attention U-Net (RSU+SC): ResNeSt50 encoder, space and channel attention."""
    return AttentionUNet(encoder, decoder_channels, in_chans, num_classes, encoder_weights, True, True, encoder_args,
                         bottleneck_attention)


@register_model
def rsu(encoder: str = "resnest50d", decoder_channels=DEFAULT_DECODER_CHANNELS, in_chans: int = 3,
        num_classes: int = NUM_CLASSES, encoder_weights: str | None = None,
        encoder_args: dict | None = None) -> AttentionUNet:
    """RSU ablation: ResNeSt50 U-Net without attention."""
    return AttentionUNet(encoder, decoder_channels, in_chans, num_classes, encoder_weights, False, False, encoder_args)


@register_model
def rsu_s(encoder: str = "resnest50d", decoder_channels=DEFAULT_DECODER_CHANNELS, in_chans: int = 3,
          num_classes: int = NUM_CLASSES, encoder_weights: str | None = None,
        encoder_args: dict | None = None) -> AttentionUNet:
    """RSU+S ablation: ResNeSt50 U-Net with space attention only."""
    return AttentionUNet(encoder, decoder_channels, in_chans, num_classes, encoder_weights, True, False, encoder_args)


@register_model
def rsu_c(encoder: str = "resnest50d", decoder_channels=DEFAULT_DECODER_CHANNELS, in_chans: int = 3,
          num_classes: int = NUM_CLASSES, encoder_weights: str | None = None,
        encoder_args: dict | None = None) -> AttentionUNet:
    """RSU+C ablation: ResNeSt50 U-Net with channel attention only."""
    return AttentionUNet(encoder, decoder_channels, in_chans, num_classes, encoder_weights, False, True, encoder_args)


@register_model
def resnet50_unet(encoder: str = "resnet50d", decoder_channels=DEFAULT_DECODER_CHANNELS, in_chans: int = 3,
                  num_classes: int = NUM_CLASSES, encoder_weights: str | None = None,
        encoder_args: dict | None = None) -> AttentionUNet:
    """Baseline: U-Net on a ResNet50 encoder, no attention."""
    return AttentionUNet(encoder, decoder_channels, in_chans, num_classes, encoder_weights, False, False, encoder_args)
