"""Reading and writing scans and label maps.

``load_volume(path)`` is the one entry point: a folder (or a file inside a DICOM series) goes through
``ctseg_core.io.dicom``; a NIfTI/NRRD/MHA file through ``ctseg_core.io.images``.
"""

from __future__ import annotations

from pathlib import Path

from ctseg_core.volume import Volume

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_image_file(path: str | Path) -> bool:
    name = str(path).lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def load_volume(path: str | Path, series_uid: str | None = None, progress=None) -> Volume:
    """Load a CT scan in HU with its true geometry from a DICOM folder or an image file."""
    path = Path(path)
    if path.is_file() and is_image_file(path):
        from ctseg_core.io.images import read_volume

        return read_volume(path)
    from ctseg_core.io.dicom import load_dicom_series

    folder = path if path.is_dir() else path.parent
    return load_dicom_series(folder, series_uid=series_uid, progress=progress)
