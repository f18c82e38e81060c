"""The volume type: voxels in (z, y, x) with true patient geometry, metadata kept apart.

Orientation convention (one, everywhere in ctseg):
- Physical coordinates are DICOM patient coordinates, LPS (x to the patient's Left, y to Posterior,
  z to Superior), in millimetres, as ITK/SimpleITK use them.
- ``array[k, j, i]``: k = slice (z index), j = row (y index), i = column (x index).
- ``spacing`` is given in array-axis order ``(z, y, x)`` in mm.
- ``origin`` is the physical LPS point ``(x, y, z)`` of the centre of voxel ``[0, 0, 0]``.
- ``direction`` is ITK's 3x3 matrix: column c is the physical unit vector along index axis c, with
  index axes ordered (i, j, k) = (x, y, z). physical = origin + direction @ (spacing_xyz * (i, j, k)).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ctseg_core.errors import LabelMismatchError

AIR_HU = -1024.0  # the value of air; voxels without a measured value (padding, NaN, outside the scan) become it


@dataclass(frozen=True)
class Geometry:
    shape: tuple[int, int, int]  # (z, y, x)
    spacing: tuple[float, float, float]  # (z, y, x), mm
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # LPS (x, y, z), mm
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # ITK row-major 3x3

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(s) for s in self.origin))
        object.__setattr__(self, "direction", tuple(float(s) for s in np.asarray(self.direction).ravel()))

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        return self.spacing[::-1]

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_physical(self, k: float, j: float, i: float) -> np.ndarray:
        """LPS point (x, y, z) in mm of the (possibly fractional) voxel index [k, j, i]."""
        ijk = np.array([i, j, k], dtype=float) * np.asarray(self.spacing_xyz)
        return np.asarray(self.origin) + self.direction_matrix @ ijk

    def physical_to_index(self, point_xyz) -> np.ndarray:
        """Fractional voxel index (k, j, i) of an LPS point."""
        rel = np.asarray(point_xyz, dtype=float) - np.asarray(self.origin)
        ijk = np.linalg.solve(self.direction_matrix, rel) / np.asarray(self.spacing_xyz)
        return ijk[::-1]

    def matches(self, other: "Geometry", tol_mm: float = 1e-3) -> bool:
        """Same grid: shape equal; spacing, origin and direction equal within tolerance."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol_mm)
            and np.allclose(self.origin, other.origin, atol=tol_mm * 10)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )

    def describe_mismatch(self, other: "Geometry") -> str:
        for name in ("shape", "spacing", "origin", "direction"):
            a, b = getattr(self, name), getattr(other, name)
            if not np.allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-2):
                return f"{name} {tuple(round(x, 3) for x in b)} differs from the scan's {tuple(round(x, 3) for x in a)}"
        return "geometry differs"


@dataclass
class VolumeMeta:
    """Identifying and provenance metadata, kept apart from the pixels."""

    modality: str = "CT"
    study_uid: str = ""
    series_uid: str = ""
    description: str = ""
    patient_id: str = ""
    source_path: str = ""
    gantry_tilt_deg: float = 0.0  # tilt of the original acquisition (0 after correction is recorded here)
    notes: list[str] = field(default_factory=list)  # what the loader did: tilt corrected, resampled, ...
    extra: dict = field(default_factory=dict)  # anything else (e.g. source SOP instance UIDs)


@dataclass
class Volume:
    """A CT volume in Hounsfield units, float32 array (z, y, x)."""

    array: np.ndarray
    geometry: Geometry
    meta: VolumeMeta = field(default_factory=VolumeMeta)

    def __post_init__(self):
        if self.array.ndim != 3:
            raise ValueError(f"volume array must be 3-D (z, y, x), got shape {self.array.shape}")
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(f"array shape {self.array.shape} != geometry shape {self.geometry.shape}")

    @classmethod
    def from_array(cls, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None,
                   meta: VolumeMeta | None = None) -> "Volume":
        array = np.asarray(array)
        geom = Geometry(array.shape, spacing, origin, direction if direction is not None else np.eye(3))
        return cls(array, geom, meta or VolumeMeta())

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry and metadata, other voxels (shape must match)."""
        return Volume(array, self.geometry, replace(self.meta, notes=list(self.meta.notes)))


def replace_non_finite(volume: Volume, source: str = "") -> int:
    """Set NaN / infinite voxels to air (``AIR_HU``) in place and say so in ``meta.notes``; returns how many.

    One such voxel would otherwise spread through the model's convolutions (an empty segmentation) and
    through every statistic of the scan."""
    bad = ~np.isfinite(volume.array)
    n = int(np.count_nonzero(bad))
    if n:
        volume.array[bad] = AIR_HU
        where = f" in {source}" if source else ""
        volume.meta.notes.append(f"{n} voxel(s){where} held no finite value (NaN or infinity) and were set to "
                                 f"air ({AIR_HU:.0f} HU)")
    return n


@dataclass
class LabelMap:
    """Class indices (uint8, values from ``ctseg_core.labels``) on a volume's grid."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self):
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(f"label array shape {self.array.shape} != geometry shape {self.geometry.shape}")

    @classmethod
    def empty_like(cls, volume: Volume) -> "LabelMap":
        return cls(np.zeros(volume.shape, dtype=np.uint8), volume.geometry)

    def check_matches(self, volume: Volume, path=None) -> None:
        """Raise LabelMismatchError (naming ``path``) unless this label map lies on the volume's grid."""
        if not volume.geometry.matches(self.geometry):
            raise LabelMismatchError(
                "label map does not belong to this scan: " + volume.geometry.describe_mismatch(self.geometry), path)


def to_sitk(array: np.ndarray, geometry: Geometry):
    """A SimpleITK image with the array (z, y, x) and the geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(geometry.spacing_xyz)
    img.SetOrigin(geometry.origin)
    img.SetDirection(geometry.direction)
    return img


def geometry_from_sitk(img) -> Geometry:
    size_xyz = img.GetSize()
    return Geometry(size_xyz[::-1], img.GetSpacing()[::-1], img.GetOrigin(), img.GetDirection())


def volume_to_sitk(volume: Volume):
    return to_sitk(volume.array, volume.geometry)


def volume_from_sitk(img, meta: VolumeMeta | None = None) -> Volume:
    import SimpleITK as sitk

    if img.GetDimension() != 3:
        raise ValueError(f"expected a 3-D image, got {img.GetDimension()}-D")
    array = sitk.GetArrayFromImage(img).astype(np.float32, copy=False)
    return Volume(array, geometry_from_sitk(img), meta or VolumeMeta())
