"""A NIfTI file's header checked against its data before ITK is trusted with it.

ITK reads some broken NIfTI files without complaint: a file shorter than its header says is zero-filled,
a voxel size of 0 or NaN becomes 1 mm, a dimension of size 0 gives an empty image. ``check_nifti``
raises ``LoadError`` (naming the file and the problem) for those. NIfTI-1 and NIfTI-2, either byte
order, plain or gzip-compressed (the compressed stream is read through once to count its bytes).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ctseg_core.errors import LoadError


@dataclass(frozen=True)
class NiftiHeader:
    dims: tuple[int, ...]  # dim[1..dim[0]]
    pixdim: tuple[float, ...]  # pixdim[1..dim[0]]
    bitpix: int
    vox_offset: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.dims) * self.bitpix // 8


def is_nifti(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith((".nii", ".nii.gz"))


def _open(path: Path):
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def parse_header(raw: bytes, path: Path) -> NiftiHeader:
    """The fields that decide the data's size and the voxel size; LoadError if it is no NIfTI header."""
    for end in "<>":
        if len(raw) >= 348 and struct.unpack(end + "i", raw[:4])[0] == 348:
            ndim = struct.unpack(end + "h", raw[40:42])[0]
            dim = struct.unpack(end + "8h", raw[40:56])
            bitpix = struct.unpack(end + "h", raw[72:74])[0]
            pixdim = struct.unpack(end + "8f", raw[76:108])
            offset = struct.unpack(end + "f", raw[108:112])[0]
            break
        if len(raw) >= 540 and struct.unpack(end + "i", raw[:4])[0] == 540:
            bitpix = struct.unpack(end + "h", raw[14:16])[0]
            dim = struct.unpack(end + "8q", raw[16:80])
            ndim = dim[0]
            pixdim = struct.unpack(end + "8d", raw[104:168])
            offset = struct.unpack(end + "q", raw[168:176])[0]
            break
    else:
        raise LoadError("not a NIfTI file (the header size field is neither 348 nor 540)", path)
    if not 1 <= ndim <= 7:
        raise LoadError(f"NIfTI header gives {ndim} dimensions (1 to 7 expected)", path)
    if bitpix <= 0 or bitpix % 8:
        raise LoadError(f"NIfTI header gives {bitpix} bits per voxel", path)
    if not math.isfinite(offset) or offset < 0:
        raise LoadError(f"NIfTI header gives an invalid data offset ({offset})", path)
    return NiftiHeader(tuple(int(d) for d in dim[1:ndim + 1]), tuple(float(p) for p in pixdim[1:ndim + 1]),
                       int(bitpix), int(offset))


def _count_bytes(path: Path) -> int:
    """Size of the (decompressed) file; LoadError when a compressed stream is cut short or corrupt."""
    if not str(path).lower().endswith(".gz"):
        return path.stat().st_size
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise LoadError(f"the compressed file is cut short or corrupt ({exc}): data missing", path) from exc
    return total


def check_nifti(path: str | Path) -> NiftiHeader:
    """Check a NIfTI file's header against its data; raises LoadError naming the problem."""
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read(540)
    except EOFError as exc:
        raise LoadError("the compressed file is cut short (it ends inside the header)", path) from exc
    except (OSError, zlib.error) as exc:
        raise LoadError(f"unreadable NIfTI file ({exc})", path) from exc
    header = parse_header(raw, path)
    if any(d < 1 for d in header.dims):
        raise LoadError(f"NIfTI image has a dimension of size 0 or less (size {header.dims})", path)
    spatial = header.pixdim[:3]
    if not all(math.isfinite(p) and p > 0 for p in spatial):
        raise LoadError(f"NIfTI voxel size {spatial} mm is not a positive number in every direction "
                        "(ITK would silently take 1 mm)", path)
    try:
        have = _count_bytes(path)
    except OSError as exc:
        raise LoadError(f"unreadable NIfTI file ({exc.strerror or exc})", path) from exc
    need = header.vox_offset + header.data_bytes
    if have < need:
        raise LoadError(f"truncated: the header announces {header.data_bytes} bytes of voxels from byte "
                        f"{header.vox_offset}, the file holds {max(have - header.vox_offset, 0)}", path)
    return header
