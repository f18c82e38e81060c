"""Reading and writing scans and label maps.

``load_volume(path)`` is the one entry point: a folder (or a file inside a DICOM series) goes through
``ctseg_core.io.dicom``; a NIfTI/NRRD/MHA file through ``ctseg_core.io.images``. ``resolve_scan_path``
is the one place that decides what a path given by the user means (the command line and the app use
it too): a path that does not exist is an error naming it, never replaced by its parent folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctseg_core.errors import LoadError
from ctseg_core.volume import Volume

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_image_file(path: str | Path) -> bool:
    name = str(path).lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class ScanPath:
    """What a scan path given by the user means."""

    kind: str  # "image" (a NIfTI/NRRD/MHA file) or "dicom" (a folder, or a file inside one)
    folder: Path  # DICOM: the folder searched for series; image: the file's folder
    file: Path | None  # the file given (image file, or a DICOM file whose series is the one meant)


def resolve_scan_path(path: str | Path) -> ScanPath:
    """Decide what ``path`` names; ``LoadError`` naming it when it does not exist or is not a file/folder."""
    path = Path(path).expanduser()
    if not str(path):
        raise LoadError("no path given")
    try:
        exists = path.exists()
    except OSError as exc:
        raise LoadError(f"cannot be read ({exc.strerror})", path) from exc
    if not exists:
        raise LoadError("no such file or folder", path)
    if path.is_dir():
        return ScanPath("dicom", path, None)
    if not path.is_file():
        raise LoadError("not a regular file or folder (a pipe, socket or device)", path)
    if is_image_file(path):
        return ScanPath("image", path.parent, path)
    return ScanPath("dicom", path.parent, path)


def load_volume(path: str | Path, series_uid: str | None = None, progress=None) -> Volume:
    """Load a CT scan in HU with its true geometry from a DICOM folder or an image file.

    A DICOM file (not a folder) means its own series, unless ``series_uid`` names another."""
    where = resolve_scan_path(path)
    if where.kind == "image":
        from ctseg_core.io.images import read_volume

        return read_volume(where.file)
    from ctseg_core.io.dicom import load_dicom_series

    return load_dicom_series(where.folder, series_uid=series_uid, progress=progress, file=where.file)
