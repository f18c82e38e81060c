"""NIfTI / NRRD / MHA through SimpleITK, in ctseg's LPS convention (SimpleITK converts NIfTI's RAS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctseg_core.atomic import atomic_write_with
from ctseg_core.errors import LabelMismatchError, LoadError
from ctseg_core.volume import LabelMap, Volume, VolumeMeta, geometry_from_sitk, to_sitk, volume_from_sitk


def _read_sitk(path: Path):
    import SimpleITK as sitk

    if not path.exists():
        raise LoadError("file not found", path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise LoadError(f"not a readable NIfTI/NRRD/MHA image ({first})", path) from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise LoadError(f"expected a single-channel 3-D image, got {img.GetDimension()}-D with "
                        f"{img.GetNumberOfComponentsPerPixel()} components", path)
    return img


def read_volume(path: str | Path) -> Volume:
    """A CT volume from an image file; voxel values are taken as HU (no rescaling is guessed)."""
    path = Path(path)
    img = _read_sitk(path)
    meta = VolumeMeta(modality="CT", description=path.name, source_path=str(path))
    vol = volume_from_sitk(img, meta)
    lo = float(vol.array.min()) if vol.array.size else 0.0
    if lo >= 0 and float(vol.array.max()) > 2000:
        vol.meta.notes.append("values are all >= 0: the file may hold raw stored values, not HU "
                              "(no rescale was applied)")
    return vol


def write_volume(volume: Volume, path: str | Path) -> None:
    """Write HU voxels atomically (int16 when they are whole numbers in range, else float32)."""
    arr = volume.array
    if np.all(np.mod(arr, 1) == 0) and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    _write_sitk(to_sitk(arr, volume.geometry), path)


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
    _write_sitk(to_sitk(labels.array.astype(np.uint8), labels.geometry), path)


def _write_sitk(img, path: str | Path) -> None:
    import SimpleITK as sitk

    atomic_write_with(path, lambda tmp: sitk.WriteImage(img, str(tmp), useCompression=True))
