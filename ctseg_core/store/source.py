"""The reference from a case to its scan: path, series UID, and a content hash of the source files.

The hash identifies the scan cheaply without decoding pixels and survives copying the folder:
- DICOM series: sha256 over the sorted (file name, size) of the series' files plus the full bytes of the
  first and the last file (``HASH_DICOM``). File modification times are not used.
- Image file (NIfTI/NRRD/MHA): sha256 of the whole file (``HASH_FILE``).
Source files are only ever read.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from ctseg_core.errors import StoreError
from ctseg_core.io import is_image_file
from ctseg_core.volume import Volume

HASH_DICOM = "sha256(sorted name+size of series files, bytes of first and last file)"
HASH_FILE = "sha256(file bytes)"


@dataclass
class SourceRef:
    path: str
    kind: str  # "dicom" or "image"
    series_uid: str
    content_hash: str
    hash_method: str
    n_files: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "SourceRef":
        return cls(**obj)


def source_files(volume: Volume, source_path: Path) -> list[Path]:
    """The files the volume was read from (the loader's list, else every file in the folder)."""
    if source_path.is_file() and is_image_file(source_path):
        return [source_path]
    listed = volume.meta.extra.get("source_files")
    if listed:
        return sorted(Path(p) for p in listed)
    folder = source_path if source_path.is_dir() else source_path.parent
    return sorted(p for p in folder.iterdir() if p.is_file())


def _file_digest(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def content_hash(files: list[Path], kind: str) -> str:
    h = hashlib.sha256()
    try:
        if kind == "image":
            _file_digest(h, files[0])
            return h.hexdigest()
        for p in files:
            h.update(f"{p.name}\0{p.stat().st_size}\n".encode())
        _file_digest(h, files[0])
        _file_digest(h, files[-1])
    except OSError as exc:
        raise StoreError(f"cannot read the source to identify it ({exc.strerror})", exc.filename) from exc
    return h.hexdigest()


def describe_source(volume: Volume, source_path: str | Path | None = None) -> SourceRef:
    path = Path(source_path or volume.meta.source_path)
    if not str(path) or not path.exists():
        raise StoreError("the scan's source is not found (a case needs its source path)", path)
    kind = "image" if path.is_file() and is_image_file(path) else "dicom"
    files = source_files(volume, path)
    if not files:
        raise StoreError("no source files found", path)
    return SourceRef(str(path.resolve()), kind, volume.meta.series_uid or "", content_hash(files, kind),
                     HASH_FILE if kind == "image" else HASH_DICOM, len(files))
