"""How a scan becomes the input of a 3-D (volume) model, and how the model's output returns to the scan.

A ``VolumePlan`` is the card's plan ``{"kind": "volume", ...}``:
- **orientation**: the scan's array axes are permuted and flipped so that they run, as nearly as the
  scan's direction allows, inferior->superior, anterior->posterior, right->left (array (z, y, x) of an
  axial LPS scan; no resampling: the voxel centres stay where they are, as BLAST-CT's reorientation does);
- **spacing**: that canonical array is resampled (linear, in float) to ``spacing_mm`` from its first voxel
  centre, ``round((n - 1) * spacing / spacing_mm) + 1`` voxels per axis; positions past the last voxel
  take the scan's minimum (BLAST-CT's ``rescale``);
- **intensity**: a piecewise-linear map from HU, clamped outside its knots (BLAST-CT: -15..100 HU to -1..1);
- **head**: the largest connected region above ``head_threshold_hu``; the volume strategy computes only
  tiles that hold some of it (everything else is background).
``VolumeGrid`` holds the mapping for one scan and brings probabilities back slice by slice (linear).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctseg_core.errors import CheckpointError
from ctseg_core.volume import Geometry

KIND = "volume"


@dataclass(frozen=True)
class VolumePlan:
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (z, y, x) of the model's grid
    intensity_hu: tuple[float, ...] = (-15.0, 100.0)
    intensity_value: tuple[float, ...] = (-1.0, 1.0)
    head_threshold_hu: float = -300.0  # above: part of the head (skin, skull, brain); below: air, foam
    extra: dict = field(default_factory=dict)

    kind = KIND

    def __post_init__(self):
        hu, val = np.asarray(self.intensity_hu, float), np.asarray(self.intensity_value, float)
        if hu.ndim != 1 or hu.size < 2 or hu.size != val.size or np.any(np.diff(hu) <= 0):
            raise ValueError("plan intensity needs >= 2 strictly increasing HU knots with one value each")
        if len(self.spacing_mm) != 3 or any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm must be three positive values, got {self.spacing_mm}")

    def to_dict(self) -> dict:
        return {"kind": KIND, "spacing_mm": list(self.spacing_mm),
                "intensity": {"kind": "piecewise_linear", "hu": list(self.intensity_hu),
                              "value": list(self.intensity_value)},
                "head_threshold_hu": self.head_threshold_hu, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: dict) -> "VolumePlan":
        """Build from a card's plan dict; anything malformed raises ``CheckpointError``."""
        try:
            intensity = d.get("intensity") or {}
            if intensity.get("kind", "piecewise_linear") != "piecewise_linear":
                raise ValueError(f"unknown intensity kind {intensity.get('kind')!r}")
            kwargs = {"spacing_mm": tuple(float(v) for v in d.get("spacing_mm", (1.0, 1.0, 1.0))),
                      "head_threshold_hu": float(d.get("head_threshold_hu", -300.0)),
                      "extra": dict(d.get("extra", {}))}
            if intensity:
                kwargs["intensity_hu"] = tuple(float(v) for v in intensity["hu"])
                kwargs["intensity_value"] = tuple(float(v) for v in intensity["value"])
            return cls(**kwargs)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"invalid volume preprocessing plan: {exc}") from exc

    def check_fits(self, config: dict, path=None) -> None:
        if config.get("in_chans", 1) != 1:
            raise CheckpointError(f"a volume plan feeds one channel but the model takes {config['in_chans']}", path)

    def map_intensity(self, hu: np.ndarray) -> np.ndarray:
        from ctseg_core.windowing import piecewise_linear

        return piecewise_linear(hu, self.intensity_hu, self.intensity_value)

    def grid(self, geometry: Geometry) -> "VolumeGrid":
        axes, flips = canonical_axes(geometry.direction_matrix)
        shape = tuple(geometry.shape[a] for a in axes)
        spacing = tuple(geometry.spacing[a] for a in axes)
        model_shape = tuple(round((n - 1) * s / t) + 1 for n, s, t in zip(shape, spacing, self.spacing_mm))
        return VolumeGrid(tuple(geometry.shape), axes, flips, spacing, tuple(self.spacing_mm), model_shape)


def canonical_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """(axes, flips): canonical array axis a (0: S, 1: P, 2: L) is the scan's array axis ``axes[a]``,
    reversed where ``flips[a]``. Direction columns are the index axes (i, j, k) = array axes (2, 1, 0)."""
    d = np.asarray(direction, float).reshape(3, 3)
    axes, flips = [], []
    for a in range(3):
        row = 2 - a  # physical S, P, L rows of the direction matrix (z, y, x)
        col = int(np.argmax(np.abs(d[row])))
        axes.append(2 - col)
        flips.append(bool(d[row, col] < 0))
    if sorted(axes) != [0, 1, 2]:  # a direction at 45 degrees: keep the array as it is
        return (0, 1, 2), (False, False, False)
    return tuple(axes), tuple(flips)


@dataclass(frozen=True)
class VolumeGrid:
    """The mapping between one scan's array and the model's grid (canonical axes, model spacing)."""

    scan_shape: tuple[int, int, int]
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]  # of the canonical scan array, mm
    model_spacing: tuple[float, float, float]
    model_shape: tuple[int, int, int]

    @property
    def slice_axis(self) -> int:
        """The canonical axis along which the scan's slices (its array axis 0) are stacked."""
        return self.axes.index(0)

    def canonical(self, array: np.ndarray) -> np.ndarray:
        """A view of a scan array (z, y, x) in canonical axis order and direction."""
        view = np.transpose(array, self.axes)
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def to_model(self, hu: np.ndarray) -> np.ndarray:
        """The scan's HU on the model's grid (float32, linear; past the last voxel: the scan's minimum)."""
        import SimpleITK as sitk

        src = sitk.GetImageFromArray(np.ascontiguousarray(self.canonical(hu), dtype=np.float32))
        src.SetSpacing(self.spacing[::-1])
        ref = sitk.Image([int(n) for n in self.model_shape[::-1]], sitk.sitkFloat32)
        ref.SetSpacing(self.model_spacing[::-1])
        out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, float(np.min(hu)), sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out)

    def slice_position(self, z: int) -> float:
        """Where scan slice ``z`` lies on the model grid, along ``slice_axis`` (fractional index)."""
        a = self.slice_axis
        k = self.scan_shape[0] - 1 - z if self.flips[a] else z
        return k * self.spacing[a] / self.model_spacing[a]

    def slice_planes(self, z: int) -> tuple[int, int, float]:
        """(first plane, second plane, weight of the second) of the model grid that scan slice ``z`` blends."""
        p = min(self.slice_position(z), self.model_shape[self.slice_axis] - 1)
        lo = int(np.floor(p))
        hi = min(lo + 1, self.model_shape[self.slice_axis] - 1)
        return lo, hi, float(p - lo)

    def plane_to_scan(self, plane: np.ndarray) -> np.ndarray:
        """(C, a, b) values on one model-grid plane across ``slice_axis`` -> (C, y, x) on the scan's slice."""
        in_plane = [a for a in range(3) if a != self.slice_axis]
        out = plane
        for dim, a in enumerate(in_plane, start=1):
            n = self.scan_shape[self.axes[a]]
            out = _linear_resample(out, dim, np.arange(n) * (self.spacing[a] / self.model_spacing[a]))
            if self.flips[a]:
                out = np.flip(out, axis=dim)
        if self.axes[in_plane[0]] == 2:  # the plane's first axis is the scan's x: swap to (y, x)
            out = np.swapaxes(out, 1, 2)
        return np.ascontiguousarray(out)


def _linear_resample(values: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """``values`` sampled at fractional ``positions`` along ``axis`` (linear; clamped to the ends)."""
    n = values.shape[axis]
    positions = np.clip(positions, 0, n - 1)
    lo = np.floor(positions).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    w = (positions - lo).astype(values.dtype)
    shape = [1] * values.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return np.take(values, lo, axis=axis) * (1 - w) + np.take(values, hi, axis=axis) * w


def head_box(hu_model: np.ndarray, threshold_hu: float) -> tuple[np.ndarray, tuple[slice, ...]] | None:
    """(mask of the largest connected region above ``threshold_hu``, its bounding box) on the model grid;
    None when nothing is above the threshold."""
    from scipy import ndimage

    mask = hu_model > threshold_hu
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    return mask, ndimage.find_objects(mask.astype(np.uint8))[0]
