"""DeepMedic, the 3-D multi-scale network of BLAST-CT, written for ctseg.

BLAST-CT: Monteiro M, Newcombe VFJ, Mathieu F, et al. "Multiclass semantic segmentation and quantification
of traumatic brain injury lesions on head CT using deep learning: an algorithm development and multicentre
validation study." Lancet Digital Health 2020;2(6):e314-e322. DeepMedic: Kamnitsas K, et al., Medical
Image Analysis 2017. The layer arithmetic and the state-dict names follow the BLAST-CT reference code
(github.com/biomedia-mira/blast-ct, commit 361e8c79, Apache-2.0) so that its published weights load
unchanged; the code here is ctseg's own.

Structure (all convolutions unpadded, so the output is a centred sub-block of the input):
- three pathways, one per scale factor s in (5,5,5), (3,3,3), (1,1,1); each crops the centre of the input
  it needs, subsamples it (every s-th voxel from s // 2), runs eight pre-activation 3x3x3 blocks
  (BatchNorm -> PReLU -> convolution, plus the input cropped by one voxel when the channel counts match)
  and upsamples by nearest-neighbour repetition back to the output size;
- the pathways' outputs are concatenated and pass through three pre-activation 1x1x1 blocks
  (150 -> 250 -> 250 -> classes), the "fully connected" layers.
A 110^3 input gives a 30^3 output. An output of size O needs an input of O + 80 (for O a multiple of the
scale factors). Tiles whose output starts on multiples of ``alignment()`` (15) sample every pathway on the
same lattice as any other such tiling, so tiled outputs agree exactly wherever they overlap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ctseg_core.models.registry import register_model

SCALE_FACTORS = ((5, 5, 5), (3, 3, 3), (1, 1, 1))
FEATURE_MAPS = (30, 30, 40, 40, 40, 40, 50, 50)
FULLY_CONNECTED = (250, 250)
DROPOUT = (0.0, 0.5, 0.5)
BLAST_CT_CLASSES = 5  # background, IPH, EAH, oedema, IVH
BLAST_CT_MEMBERS = 12

# BLAST-CT's output classes in channel order, each mapped onto a ctseg label (ctseg_core.labels).
BLAST_CT_CLASS_TABLE = (
    {"id": 0, "key": "background", "name": "Background", "maps_to": "background"},
    {"id": 1, "key": "iph", "name": "Intraparenchymal haemorrhage (IPH, incl. contusion)", "maps_to": "ich"},
    {"id": 2, "key": "eah", "name": "Extra-axial haemorrhage (EAH: subdural, epidural and subarachnoid together)",
     "maps_to": "extra_axial"},
    {"id": 3, "key": "oedema", "name": "Perilesional oedema", "maps_to": "oedema"},
    {"id": 4, "key": "ivh", "name": "Intraventricular haemorrhage (IVH)", "maps_to": "ivh"},
)


def blast_ct_card_defaults() -> dict:
    """Model-card fields of a BLAST-CT-configured network: its classes and its preprocessing (1 mm, -15..100 HU
    to -1..1, from BLAST-CT's config.json)."""
    from ctseg_core.volume_plan import VolumePlan

    return {"classes": [dict(c) for c in BLAST_CT_CLASS_TABLE], "plan": VolumePlan().to_dict()}

Size = tuple[int, int, int]


def crop_centre(x: torch.Tensor, size: Size) -> torch.Tensor:
    """The centred block of ``size`` of a (N, C, z, y, x) tensor (the reference's rounding for odd margins)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    index = tuple(slice(n // 2 - s // 2, n // 2 - s // 2 + s) for n, s in zip(x.shape[2:], size))
    return x[(slice(None), slice(None)) + index]


class PreActBlock(nn.Module):
    """BatchNorm -> dropout -> PReLU -> unpadded convolution, plus the centre-cropped input when the
    channel counts match (a residual connection)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, dropout: float = 0.0):
        super().__init__()
        self.bn = nn.BatchNorm3d(in_channels)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.prelu = nn.PReLU()
        self.margin = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.prelu(self.dropout(self.bn(x))))
        if x.shape[1] == out.shape[1]:
            m = self.margin
            out = out + (x[:, :, m:-m, m:-m, m:-m] if m else x)
        return out


class Subsample(nn.Module):
    """Every s-th voxel along each axis, starting at s // 2."""

    def __init__(self, factor: Size):
        super().__init__()
        self.factor = tuple(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[(slice(None), slice(None)) + tuple(slice(s // 2, None, s) for s in self.factor)]


class Upsample(nn.Module):
    """Nearest-neighbour repetition by the scale factor."""

    def __init__(self, factor: Size):
        super().__init__()
        self.factor = tuple(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(s == 1 for s in self.factor):
            return x
        return F.interpolate(x, scale_factor=tuple(float(s) for s in self.factor), mode="nearest")


class Pathway(nn.Module):
    """One scale of DeepMedic: crop, subsample, convolve, upsample, crop (``path`` holds the layers)."""

    def __init__(self, factor: Size, in_channels: int, feature_maps):
        super().__init__()
        self.factor = tuple(factor)
        blocks = [PreActBlock(feature_maps[i - 1] if i else in_channels, f) for i, f in enumerate(feature_maps)]
        self.path = nn.Sequential(Subsample(self.factor), *blocks, Upsample(self.factor))
        self.shrink = 2 * len(blocks)  # voxels lost per axis by the unpadded 3x3x3 convolutions

    def input_size(self, output_size: Size) -> Size:
        return tuple((math.ceil(o / s) + self.shrink) * s for o, s in zip(output_size, self.factor))

    def output_size(self, input_size: Size) -> Size:
        return tuple(((i - s) // s + 1 - self.shrink) * s for i, s in zip(input_size, self.factor))

    def forward(self, x: torch.Tensor, output_size: Size) -> torch.Tensor:
        return crop_centre(self.path(crop_centre(x, self.input_size(output_size))), output_size)


class DeepMedic(nn.Module):
    """A DeepMedic network; ``forward`` returns logits for the centred output block of its input."""

    def __init__(self, in_channels: int = 1, num_classes: int = BLAST_CT_CLASSES, scale_factors=SCALE_FACTORS,
                 feature_maps=FEATURE_MAPS, fully_connected=FULLY_CONNECTED, dropout=DROPOUT):
        super().__init__()
        scale_factors = tuple(tuple(int(v) for v in s) for s in scale_factors)
        if any(any(a < b for a, b in zip(s, t)) for s, t in zip(scale_factors, scale_factors[1:])):
            raise ValueError(f"scale factors must not grow from one pathway to the next: {scale_factors}")
        if len(dropout) != len(fully_connected) + 1:
            raise ValueError("dropout needs one value per fully connected layer plus the last")
        self.scale_factors = scale_factors
        self.pathways: list[Pathway] = []
        for i, factor in enumerate(scale_factors):  # names as in the reference: "path(5, 5, 5)0", ...
            pathway = Pathway(factor, in_channels, tuple(feature_maps))
            self.add_module(f"path{factor}{i}", pathway)
            self.pathways.append(pathway)
        widths = (feature_maps[-1] * len(scale_factors), *fully_connected, num_classes)
        self.fully_connected = nn.Sequential(*[PreActBlock(widths[i], widths[i + 1], kernel=1, dropout=dropout[i])
                                               for i in range(len(widths) - 1)])

    def output_size(self, input_size: Size) -> Size:
        """The output block for an input block; raises ``ValueError`` for sizes that waste input."""
        input_size = tuple(int(v) for v in input_size)
        out = self.pathways[0].output_size(input_size)
        if any(o <= 0 for o in out) or self.input_size(out) != input_size:
            raise ValueError(f"input size {input_size} does not fit DeepMedic; an output of {out} needs "
                             f"{self.input_size(out) if all(o > 0 for o in out) else 'a larger input'}")
        return out

    def input_size(self, output_size: Size) -> Size:
        return self.pathways[0].input_size(tuple(int(v) for v in output_size))

    def alignment(self) -> int:
        """Tile outputs starting on multiples of this share every pathway's sampling lattice."""
        return math.lcm(*(s for factor in self.scale_factors for s in factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size(tuple(x.shape[2:]))
        return self.fully_connected(torch.cat([p(x, size) for p in self.pathways], dim=1))


class DeepMedicEnsemble(nn.Module):
    """Several DeepMedic networks of one configuration (``members``); ``forward`` returns the log of the
    mean of their softmax outputs, so a softmax of it is the ensemble's probability (BLAST-CT sums the
    members' softmax outputs and takes the arg-max)."""

    def __init__(self, members: int, **config):
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.members = nn.ModuleList([DeepMedic(**config) for _ in range(members)])

    def output_size(self, input_size: Size) -> Size:
        return self.members[0].output_size(input_size)

    def input_size(self, output_size: Size) -> Size:
        return self.members[0].input_size(output_size)

    def alignment(self) -> int:
        return self.members[0].alignment()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = sum(torch.softmax(m(x), dim=1) for m in self.members) / len(self.members)
        return torch.log(probs.clamp_min(1e-30))


@register_model(kind="volume", example_input=(1, 1, 110, 110, 110), card_defaults=blast_ct_card_defaults)
def deepmedic(in_chans: int = 1, num_classes: int = BLAST_CT_CLASSES, scale_factors=SCALE_FACTORS,
              feature_maps=FEATURE_MAPS, fully_connected=FULLY_CONNECTED, dropout=DROPOUT) -> DeepMedic:
    """DeepMedic 3-D network, three pathways (BLAST-CT configuration; 110^3 in, 30^3 out)."""
    return DeepMedic(in_chans, num_classes, scale_factors, feature_maps, fully_connected, dropout)


@register_model(kind="volume", example_input=(1, 1, 110, 110, 110), card_defaults=blast_ct_card_defaults)
def blast_ct(members: int = BLAST_CT_MEMBERS, in_chans: int = 1, num_classes: int = BLAST_CT_CLASSES,
             scale_factors=SCALE_FACTORS, feature_maps=FEATURE_MAPS, fully_connected=FULLY_CONNECTED,
             dropout=DROPOUT) -> DeepMedicEnsemble:
    """BLAST-CT ensemble of DeepMedic networks (Monteiro et al. 2020), 1 mm, IPH/EAH/oedema/IVH."""
    return DeepMedicEnsemble(members, in_channels=in_chans, num_classes=num_classes, scale_factors=scale_factors,
                             feature_maps=feature_maps, fully_connected=fully_connected, dropout=dropout)
