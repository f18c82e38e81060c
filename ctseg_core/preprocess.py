"""Preprocessing driven by a model's plan: the ONE place used by the predictor and by training.

A ``Plan`` (stored as a dict in the model card) says how a scan becomes network input:
- **intensity**: a piecewise-linear map from HU to 0..1, clamped outside its knots. The default keeps
  every tissue that matters apart in one channel (the three channels are three adjacent slices):
  air and pneumocephalus (-1000..-200) -> 0..0.04, fat -100 -> 0.05, CSF / chronic SDH (0..30) ->
  0.25..0.40, brain (25..40) -> 0.38..0.45, acute blood (50..90) -> 0.50..0.70, calcification / bone
  (>120) -> 0.85..1. A brain window (0..80) would clip air, CSF and bone together; a bone window would
  squash blood and brain into a few percent of the range. The soft-tissue band -20..120 HU gets 70 %
  of the output range (0.005 per HU: 40 HU of blood-brain contrast = 0.2).
- **in-plane spacing**: the model works at ``spacing_mm`` (None: the scan's own); a scan whose spacing
  differs by more than ``spacing_tolerance`` (relative) is resampled in-plane (bilinear), and results
  are mapped back to the scan's own grid.
- **size**: the (resampled) slice is padded symmetrically with the value of air to a multiple of
  ``size_multiple`` (32 for five stride-2 levels) and cropped back afterwards.
- **adjacent slices**: ``adjacent_slices`` (3) slices centred on z, replicated at the first and last.
- **patch size**: a model trained on square patches of ``patch_size`` pixels of the model grid (None: whole
  slices) is run on overlapping windows of that size (``ctseg_core.sliding_window``).

That is the plan of a slice model (``kind`` "slices", the default). A volume model's plan
(``{"kind": "volume", ...}``) is a ``ctseg_core.volume_plan.VolumePlan``; ``plan_from_dict`` builds either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ctseg_core.windowing import piecewise_linear
from ctseg_core.errors import CheckpointError

DEFAULT_INTENSITY_HU = (-1000.0, -100.0, -20.0, 120.0, 300.0, 2000.0)
DEFAULT_INTENSITY_VALUE = (0.0, 0.05, 0.15, 0.85, 0.92, 1.0)


@dataclass(frozen=True)
class Plan:
    intensity_hu: tuple[float, ...] = DEFAULT_INTENSITY_HU  # knots, strictly increasing
    intensity_value: tuple[float, ...] = DEFAULT_INTENSITY_VALUE  # network input at the knots
    spacing_mm: float | None = 0.5  # in-plane spacing the model works at; None = the scan's own
    spacing_tolerance: float = 0.05  # relative difference below which a slice is not resampled
    adjacent_slices: int = 3  # input channels: slices z-1, z, z+1
    size_multiple: int = 32
    patch_size: int | None = None  # training patch side on the model grid; inference then uses sliding windows
    extra: dict = field(default_factory=dict)  # free notes (e.g. the size the model was trained at)

    kind = "slices"

    def __post_init__(self):
        hu, val = np.asarray(self.intensity_hu, float), np.asarray(self.intensity_value, float)
        if hu.ndim != 1 or hu.size < 2 or hu.size != val.size or np.any(np.diff(hu) <= 0):
            raise ValueError("plan intensity needs >= 2 strictly increasing HU knots with one value each")
        if self.adjacent_slices < 1 or self.adjacent_slices % 2 == 0:
            raise ValueError(f"adjacent_slices must be odd, got {self.adjacent_slices}")
        if self.spacing_mm is not None and self.spacing_mm <= 0:
            raise ValueError(f"spacing_mm must be positive, got {self.spacing_mm}")
        if self.patch_size is not None and (self.patch_size < self.size_multiple
                                            or self.patch_size % self.size_multiple):
            raise ValueError(f"patch_size must be a positive multiple of {self.size_multiple}, got {self.patch_size}")

    # ---------------------------------------------------------------- dict form (model card)
    def to_dict(self) -> dict:
        d = asdict(self)
        d["intensity"] = {"kind": "piecewise_linear", "hu": list(d.pop("intensity_hu")),
                          "value": list(d.pop("intensity_value"))}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """Build from a card's plan dict; anything malformed raises ``CheckpointError``."""
        if isinstance(d, dict) and d.get("kind", cls.kind) != cls.kind:
            raise CheckpointError(f"not a slice plan (kind {d.get('kind')!r}): slice-by-slice inference and "
                                  "training need a slice model")
        try:
            d = dict(d)
            d.pop("kind", None)
            intensity = d.pop("intensity", None) or {}
            if intensity and intensity.get("kind", "piecewise_linear") != "piecewise_linear":
                raise ValueError(f"unknown intensity kind {intensity.get('kind')!r}")
            kwargs = {k: d[k] for k in ("spacing_mm", "spacing_tolerance", "adjacent_slices", "size_multiple",
                                        "patch_size", "extra") if k in d}
            if intensity:
                kwargs["intensity_hu"] = tuple(float(v) for v in intensity["hu"])
                kwargs["intensity_value"] = tuple(float(v) for v in intensity["value"])
            return cls(**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"invalid preprocessing plan: {exc}") from exc

    # ---------------------------------------------------------------- intensity and stacks
    def check_fits(self, config: dict, path=None) -> None:
        """The model must take one input channel per stacked slice."""
        in_chans = config.get("in_chans", self.adjacent_slices)
        if in_chans != self.adjacent_slices:
            raise CheckpointError(f"plan stacks {self.adjacent_slices} adjacent slices but the model takes "
                                  f"{in_chans} input channels", path)

    def map_intensity(self, hu: np.ndarray) -> np.ndarray:
        """HU -> network input (float32), piecewise linear, clamped outside the knots (NaN: as air)."""
        return piecewise_linear(hu, self.intensity_hu, self.intensity_value)

    @property
    def pad_value(self) -> float:
        return float(self.map_intensity(np.float32(-1000.0)))

    def input_stack(self, hu_volume_zyx: np.ndarray, z: int) -> np.ndarray:
        """Network input (adjacent_slices, H, W) for slice z, on the scan's own grid."""
        return self.map_intensity(make_stack(hu_volume_zyx, z, self.adjacent_slices))

    def grid(self, shape_yx, spacing_yx) -> "ModelGrid":
        """How a slice of this shape and in-plane spacing maps to and from the model's grid."""
        shape_yx = (int(shape_yx[0]), int(shape_yx[1]))
        resized = shape_yx
        if self.spacing_mm is not None:
            scale = np.asarray(spacing_yx, float) / self.spacing_mm
            if np.any(np.abs(scale - 1.0) > self.spacing_tolerance):
                resized = tuple(max(1, int(round(n * s))) for n, s in zip(shape_yx, scale))
        m = self.size_multiple
        padded = tuple(-(-n // m) * m for n in resized)
        pads = tuple(((p - n) // 2, p - n - (p - n) // 2) for n, p in zip(resized, padded))
        return ModelGrid(shape_yx, resized, padded, pads, self.pad_value)

    def training_pair(self, hu_volume_zyx: np.ndarray, labels_zyx: np.ndarray, z: int, spacing_yx):
        """(input (C, H', W') float32 tensor, target (H', W') int64 tensor) on the model's grid for slice z."""
        g = self.grid(hu_volume_zyx.shape[1:], spacing_yx)
        x = g.to_model(torch.from_numpy(self.input_stack(hu_volume_zyx, z))[None])[0]
        y = g.labels_to_model(torch.from_numpy(np.ascontiguousarray(labels_zyx[z]))[None])[0]
        return x, y


def plan_from_dict(d: dict):
    """A card's plan: ``Plan`` (slice models) or ``VolumePlan`` (``"kind": "volume"``)."""
    kind = d.get("kind", Plan.kind) if isinstance(d, dict) else None
    if kind == Plan.kind:
        return Plan.from_dict(d)
    from ctseg_core.volume_plan import KIND, VolumePlan

    if kind == KIND:
        return VolumePlan.from_dict(d)
    raise CheckpointError(f"invalid preprocessing plan: unknown kind {kind!r} (known: {Plan.kind}, {KIND})")


def make_stack(hu_volume_zyx: np.ndarray, z: int, n_slices: int = 3) -> np.ndarray:
    """Slices z - n//2 .. z + n//2 stacked as (n, H, W); indices beyond the ends repeat the edge slice."""
    return hu_volume_zyx[stack_indices(z, hu_volume_zyx.shape[0], n_slices)]


def stack_indices(z: int, depth: int, n_slices: int = 3) -> np.ndarray:
    if not 0 <= z < depth:
        raise IndexError(f"slice {z} outside 0..{depth - 1}")
    half = n_slices // 2
    return np.clip(np.arange(z - half, z + half + 1), 0, depth - 1)


@dataclass(frozen=True)
class ModelGrid:
    """The mapping between a scan's slice grid and the model's (resampled, padded) grid."""

    scan_shape: tuple[int, int]
    resized_shape: tuple[int, int]
    padded_shape: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]  # (before, after) along y and x
    pad_value: float

    @property
    def resampled(self) -> bool:
        return self.resized_shape != self.scan_shape

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) input on the scan's grid -> (N, C, H', W') on the model's grid (bilinear)."""
        if self.resampled:
            x = F.interpolate(x, size=self.resized_shape, mode="bilinear", align_corners=False)
        (top, bottom), (left, right) = self.pads
        return F.pad(x, (left, right, top, bottom), value=self.pad_value) if top + bottom + left + right else x

    def labels_to_model(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, H, W) class indices -> (N, H', W') int64 on the model's grid (nearest; padding is background)."""
        y = labels.to(torch.float32)[:, None]
        if self.resampled:
            y = F.interpolate(y, size=self.resized_shape, mode="nearest-exact")
        (top, bottom), (left, right) = self.pads
        return F.pad(y, (left, right, top, bottom), value=0.0)[:, 0].to(torch.int64)

    def to_scan(self, y: torch.Tensor) -> torch.Tensor:
        """(N, C, H', W') model output (logits or probabilities) -> (N, C, H, W) on the scan's grid."""
        (top, _), (left, _) = self.pads
        h, w = self.resized_shape
        y = y[:, :, top:top + h, left:left + w]
        if self.resampled:
            y = F.interpolate(y, size=self.scan_shape, mode="bilinear", align_corners=False)
        return y


def default_plan() -> Plan:
    return Plan()
