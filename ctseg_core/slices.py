"""Slice numbers as people see them: 1-based, and where the loader resampled the scan, the nearest source
image (its InstanceNumber) and how far it lies from the shown slice.

The loaded volume may have more (or fewer) slices than the scanner wrote: uneven spacing is resampled and
a gantry tilt sheared (``ctseg_core.io.dicom``). A radiologist talks about the scanner's image numbers,
so wherever a slice is named the nearest source image is named too. A slice's location is measured along
its own normal, so it does not change with the in-plane position (a tilted axial plane is not level in
patient z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctseg_core.volume import Geometry, Volume

_AXIS_LETTER = {0: ("L", "R"), 1: ("P", "A"), 2: ("S", "I")}  # LPS patient axes: + and - letters
_ALIGNED_COS = np.cos(np.radians(1.0))  # a plane counts as axial/coronal/sagittal within 1 degree


@dataclass(frozen=True)
class SourceImage:
    index: int  # 0-based position in the sorted source stack
    instance_number: int | None  # the scanner's image number (DICOM InstanceNumber)
    distance_mm: float  # from the shown slice's plane, along the normal

    @property
    def name(self) -> str:
        return f"image {self.instance_number}" if self.instance_number is not None else f"source slice {self.index + 1}"


def slice_number(index: int) -> int:
    """The 1-based number of a 0-based slice index."""
    return int(index) + 1


def axis_direction(geometry: Geometry, axis: int) -> np.ndarray:
    """Unit LPS direction of array axis ``axis`` (0 = k, 1 = j, 2 = i)."""
    return geometry.direction_matrix[:, 2 - axis]


def plane_location_mm(geometry: Geometry, axis: int, index: int) -> float:
    """Where the plane ``index`` along array axis ``axis`` lies, in mm along that axis's direction."""
    d = axis_direction(geometry, axis)
    return float(np.dot(geometry.origin, d) + index * geometry.spacing[axis])


def location_text(geometry: Geometry, axis: int, index: int) -> str:
    """ "S 49.3 mm" (or "I ...", "L"/"R", "P"/"A") for a plane aligned with a patient axis, "+49.3 mm along its
    normal (tilted)" for a tilted one: the same anywhere on the plane."""
    d = axis_direction(geometry, axis)
    p = int(np.argmax(np.abs(d)))
    value = plane_location_mm(geometry, axis, index)
    if abs(d[p]) >= _ALIGNED_COS:
        coordinate = value if d[p] > 0 else -value  # the patient coordinate (LPS) of the plane
        plus, minus = _AXIS_LETTER[p]
        return f"{plus if coordinate >= 0 else minus} {abs(coordinate):.1f} mm"
    return f"{value:+.1f} mm along its normal (tilted)"


def _source_locations(volume: Volume) -> tuple[np.ndarray, list] | None:
    extra = volume.meta.extra
    positions = extra.get("source_positions")
    if not positions:
        return None
    n = axis_direction(volume.geometry, 0)
    locations = np.asarray(positions, float) @ n
    numbers = list(extra.get("source_instance_numbers") or [None] * len(locations))
    return locations, numbers


def nearest_source_image(volume: Volume, k: int) -> SourceImage | None:
    """The source image nearest to axial slice ``k`` (None when the scan has no source slices, e.g. NIfTI)."""
    found = _source_locations(volume)
    if found is None:
        return None
    locations, numbers = found
    here = plane_location_mm(volume.geometry, 0, k)
    s = int(np.argmin(np.abs(locations - here)))
    return SourceImage(s, numbers[s], float(here - locations[s]))


def is_resampled(volume: Volume) -> bool:
    """The axial slices are not the scanner's images one for one (another count or other positions)."""
    found = _source_locations(volume)
    if found is None:
        return False
    locations, _ = found
    if len(locations) != volume.shape[0]:
        return True
    mine = np.array([plane_location_mm(volume.geometry, 0, k) for k in range(volume.shape[0])])
    return not np.allclose(np.sort(locations), np.sort(mine), atol=0.01)


SAME_PLANE_MM = 0.05  # a slice this close to a source image is that image


def source_text(volume: Volume, k: int) -> str:
    """ "= image 21", or "≈ image 19 (1.1 mm away)" for a resampled slice; "" without source images."""
    src = nearest_source_image(volume, k)
    if src is None:
        return ""
    if abs(src.distance_mm) < SAME_PLANE_MM:
        return f"= {src.name}"
    return f"≈ {src.name} ({abs(src.distance_mm):.1f} mm away)"


def slice_label(volume: Volume, k: int) -> str:
    """ "slice 21 / 37 ≈ image 19 (1.1 mm away)": the 1-based number and the nearest source image."""
    text = f"slice {slice_number(k)} / {volume.shape[0]}"
    src = source_text(volume, k)
    return f"{text} {src}" if src else text


def image_ranges_text(volume: Volume, slices: list[int]) -> str:
    """The source images nearest to 0-based axial ``slices``: "images 9-11, 14" ("" without source images)."""
    from ctseg_core.findings import format_slice_ranges

    found = [nearest_source_image(volume, z) for z in slices]
    numbers = sorted({s.instance_number for s in found if s is not None and s.instance_number is not None})
    if not numbers:
        return ""
    return f"image{'s' if len(numbers) > 1 else ''} {format_slice_ranges(numbers)}"
