"""RADnet (Grewal et al., "RADnet: Radiologist level accuracy using deep learning for hemorrhage detection
in CT scans", ISBI 2018): scan triage, slice by slice.

- Per slice, a 40-layer DenseNet with three dense blocks (DenseNet-40: 12 layers of BN-ReLU-conv3x3 per
  block, growth rate 12, transitions BN-ReLU-conv1x1-avgpool without compression). A CT slice is much
  larger than the CIFAR images DenseNet-40 was made for, so a strided stem (``stem_stride``: 7x7
  convolution stride 2 and max pooling, as the ImageNet DenseNets) comes first.
- Three auxiliary segmentation heads, one after the last concatenation of each dense block: a 1x1
  convolution then a deconvolution (transposed convolution) to the image size. Supervised by the
  hemorrhage mask, they steer the features (the paper's attention); at inference they are not used.
- The global-average-pooled features of the scan's slices, in order, pass through one bidirectional
  LSTM layer, then a fully connected layer gives each slice's logit ("hemorrhage on this slice").
- He initialisation of the convolutions.

``forward`` takes (B, S, C, H, W), the S slices of B scans in order (or (S, C, H, W), one scan), and
returns the slice logits (B, S) (or (S,)); in training mode a dict with the slice logits and the three
auxiliary maps (B, S, H, W). ``slice_features`` and ``sequence_logits`` split it for the predictor,
which runs the DenseNet slice by slice and the LSTM once over the whole scan. The scan-level call (3 or
more consecutive positive slices) is ``ctseg_core.triage``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctseg_core.models.registry import register_model


class DenseLayer(nn.Sequential):
    def __init__(self, in_ch: int, growth: int):
        super().__init__(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, growth, 3, padding=1,
                                                                                 bias=False))


class DenseBlock(nn.Module):
    """``n_layers`` dense layers; each sees the concatenation of the block's input and all earlier outputs."""

    def __init__(self, in_ch: int, n_layers: int, growth: int):
        super().__init__()
        self.layers = nn.ModuleList([DenseLayer(in_ch + i * growth, growth) for i in range(n_layers)])
        self.out_channels = in_ch + n_layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)  # the block's last concatenation


class Transition(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
                         nn.AvgPool2d(2))


class AuxiliaryHead(nn.Module):
    """1x1 convolution to one channel, then a transposed convolution of stride ``scale`` to the image size."""

    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, 1, 1)
        self.deconv = nn.ConvTranspose2d(1, 1, kernel_size=2 * scale, stride=scale, padding=scale // 2) \
            if scale > 1 else nn.Identity()

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        y = self.deconv(self.conv(x))
        return y if tuple(y.shape[-2:]) == tuple(size) else F.interpolate(y, size=size, mode="bilinear",
                                                                          align_corners=False)


class RADNet(nn.Module):
    def __init__(self, in_chans: int = 3, growth: int = 12, layers_per_block: int = 12, stem_channels: int = 24,
                 stem_stride: int = 4, lstm_hidden: int = 128):
        super().__init__()
        if stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        self.in_chans, self.stem_stride = in_chans, stem_stride
        self.SIZE_MULTIPLE = 4 * stem_stride  # the stem's stride and two transitions
        stem = [nn.Conv2d(in_chans, stem_channels, 7 if stem_stride > 1 else 3, stride=min(stem_stride, 2),
                          padding=3 if stem_stride > 1 else 1, bias=False)]
        if stem_stride == 4:
            stem += [nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)]
        self.stem = nn.Sequential(*stem)
        blocks, transitions, heads = [], [], []
        ch, scale = stem_channels, stem_stride
        for b in range(3):
            block = DenseBlock(ch, layers_per_block, growth)
            blocks.append(block)
            ch = block.out_channels
            heads.append(AuxiliaryHead(ch, scale))
            if b < 2:
                transitions.append(Transition(ch))
                scale *= 2
        self.blocks, self.transitions, self.aux_heads = (nn.ModuleList(blocks), nn.ModuleList(transitions),
                                                         nn.ModuleList(heads))
        self.norm = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
        self.feature_channels = ch
        self.lstm = nn.LSTM(ch, lstm_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * lstm_hidden, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # He initialisation
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---- the two halves ----------------------------------------------------------------------------
    def slice_features(self, x: torch.Tensor, with_aux: bool = False):
        """(N, C, H, W) slices -> (N, F) pooled features [and the three auxiliary maps (N, H, W)]."""
        m = self.SIZE_MULTIPLE
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input height and width must be multiples of {m}, got {tuple(x.shape[-2:])}")
        size = x.shape[-2:]
        y = self.stem(x)
        aux = []
        for b, block in enumerate(self.blocks):
            y = block(y)
            if with_aux:
                aux.append(self.aux_heads[b](y, size)[:, 0])
            if b < 2:
                y = self.transitions[b](y)
        pooled = self.norm(y).mean(dim=(2, 3))
        return (pooled, aux) if with_aux else pooled

    def sequence_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, S, F) features of each scan's slices, in order -> (B, S) slice logits."""
        out, _ = self.lstm(features)
        return self.classifier(out)[..., 0]

    def forward(self, x: torch.Tensor):
        one_scan = x.ndim == 4
        if one_scan:
            x = x[None]
        if x.ndim != 5:
            raise ValueError(f"RADnet takes (B, S slices, C, H, W) or (S, C, H, W), got {tuple(x.shape)}")
        b, s = x.shape[:2]
        flat = x.reshape(b * s, *x.shape[2:])
        if self.training:
            features, aux = self.slice_features(flat, with_aux=True)
        else:
            features, aux = self.slice_features(flat), []
        logits = self.sequence_logits(features.reshape(b, s, -1))
        if one_scan:
            logits = logits[0]
        if not self.training:
            return logits
        shape = (s,) if one_scan else (b, s)
        return {"slice_logits": logits, "aux": [a.reshape(*shape, *a.shape[-2:]) for a in aux]}


@register_model(kind="scan", example_input=(1, 4, 3, 512, 512),
                paper="its DenseNet-40 (growth 12) has 1.0M parameters (Huang et al.); RADnet's paper gives no "
                      "totals")
def radnet(in_chans: int = 3, growth: int = 12, layers_per_block: int = 12, stem_channels: int = 24,
           stem_stride: int = 4, lstm_hidden: int = 128) -> RADNet:
    """RADnet: DenseNet-40 per slice, bidirectional LSTM over the scan, auxiliary masks (Grewal et al.)."""
    return RADNet(in_chans, growth, layers_per_block, stem_channels, stem_stride, lstm_hidden)
