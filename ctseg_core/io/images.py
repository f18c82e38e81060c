"""NIfTI / NRRD / MHA through SimpleITK, in ctseg's LPS convention (SimpleITK converts NIfTI's RAS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctseg_core.atomic import atomic_write_with
from ctseg_core.errors import LabelMismatchError, LoadError, WriteError
from ctseg_core.io.nifti_header import check_nifti, is_nifti
from ctseg_core.volume import (LabelMap, Volume, VolumeMeta, geometry_from_sitk, replace_non_finite, to_sitk,
                               volume_from_sitk)


def _read_sitk(path: Path):
    import SimpleITK as sitk

    if not path.exists():
        raise LoadError("file not found", path)
    if not path.is_file():
        raise LoadError("not a regular file", path)
    if is_nifti(path):
        check_nifti(path)  # what ITK would read silently wrong (truncated data, voxel size 0 or NaN)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise LoadError(f"not a readable NIfTI/NRRD/MHA image ({first})", path) from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise LoadError(f"expected a single-channel 3-D image, got {img.GetDimension()}-D with "
                        f"{img.GetNumberOfComponentsPerPixel()} components", path)
    _check_grid(img, path)
    return img


def _check_grid(img, path: Path) -> None:
    """Size, spacing and direction that describe a real grid (any format)."""
    size, spacing, direction = img.GetSize(), img.GetSpacing(), np.asarray(img.GetDirection(), float)
    if min(size) < 1:
        raise LoadError(f"image has a dimension of size 0 (size {size})", path)
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise LoadError(f"voxel size {spacing} mm is not a positive number in every direction", path)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction.reshape(3, 3))) < 1e-6:
        raise LoadError("the image's direction matrix is degenerate (its axes are not independent)", path)


def read_volume(path: str | Path) -> Volume:
    """A CT volume from an image file; voxel values are taken as HU (no rescaling is guessed)."""
    path = Path(path)
    img = _read_sitk(path)
    meta = VolumeMeta(modality="CT", description=path.name, source_path=str(path))
    vol = volume_from_sitk(img, meta)
    replace_non_finite(vol)
    lo = float(vol.array.min()) if vol.array.size else 0.0
    if lo >= 0 and float(vol.array.max()) > 2000:
        vol.meta.notes.append("values are all >= 0: the file may hold raw stored values, not HU "
                              "(no rescale was applied)")
    return vol


def write_volume(volume: Volume, path: str | Path) -> None:
    """Write HU voxels atomically (int16 when they are whole numbers in range, else float32)."""
    arr = volume.array
    if np.isfinite(arr).all() and np.all(np.mod(arr, 1) == 0) and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    _write_sitk(arr, volume.geometry, path)


def read_labels(path: str | Path, like: Volume | None = None) -> LabelMap:
    """A label map from an image file; with ``like`` it must lie on that volume's grid."""
    path = Path(path)
    img = _read_sitk(path)
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.mod(arr, 1) == 0):
        raise LoadError("label map holds non-integer values", path)
    from ctseg_core.labels import NUM_LABEL_VALUES

    if arr.min() < 0 or arr.max() >= NUM_LABEL_VALUES:
        raise LoadError(f"label values must be 0..{NUM_LABEL_VALUES - 1}, found {arr.min()}..{arr.max()}", path)
    labels = LabelMap(arr.astype(np.uint8), geometry_from_sitk(img))
    if like is not None:
        try:
            labels.check_matches(like, path)
        except LabelMismatchError:
            raise
    return labels


def write_labels(labels: LabelMap, path: str | Path) -> None:
    _write_sitk(labels.array.astype(np.uint8, copy=False), labels.geometry, path)


def _write_sitk(array: np.ndarray, geometry, path: str | Path) -> None:
    """Write atomically and read the result back before it replaces ``path``: ITK does not raise when the
    disk fills up, it leaves a short or empty file."""
    import SimpleITK as sitk

    def read_back(tmp: Path) -> None:
        try:
            back = sitk.ReadImage(str(tmp))
            same = np.array_equal(sitk.GetArrayViewFromImage(back), array, equal_nan=array.dtype.kind == "f")
        except RuntimeError:
            same = False
        if not same or not geometry_from_sitk(back).matches(geometry):
            raise WriteError("could not be written: the file read back differs from what was written (is the "
                             "disk full?); the previous file is kept unchanged", path, disk_full=True)

    img = to_sitk(array, geometry)
    atomic_write_with(path, lambda tmp: sitk.WriteImage(img, str(tmp), useCompression=True), verify=read_back)
