"""Pixel decoding into a preallocated float32 HU stack.

Uncompressed little-endian single-frame files are read straight from the pixel-data offset found while
reading the header (no second parse). Everything else (compressed transfer syntaxes, multi-frame objects,
big-endian, deflated) goes through pydicom's pixel handlers and the installed plugins (pylibjpeg, gdcm).
Files are decoded on a small thread pool: file reads, numpy casts and the C decoders release the GIL.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.uid import UID

from ctseg_core.errors import UnsupportedTransferSyntaxError
from ctseg_core.io.dicom_geometry import AIR_HU
from ctseg_core.io.dicom_headers import FileHeader, SliceRef

PLUGIN_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle python-gdcm"


@dataclass
class DecodeFailure:
    path: object
    reason: str


def check_decodable(header: FileHeader) -> None:
    """Raise UnsupportedTransferSyntaxError (naming the file and what to install) if no plugin decodes it."""
    from pydicom.pixels import get_decoder

    ts = UID(header.transfer_syntax)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            f"pixel data is encoded as {ts.name} ({ts}), which no pixel handler of pydicom decodes",
            header.path) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise UnsupportedTransferSyntaxError(
            f"pixel data is compressed as {ts.name} ({ts}) and no installed plugin decodes it "
            f"(missing: {missing}); install one, e.g. `{PLUGIN_HINT}`", header.path)


def is_lossy(header: FileHeader) -> bool:
    ts = UID(header.transfer_syntax)
    return bool(ts) and ts.is_compressed and ts not in _LOSSLESS


_LOSSLESS = {UID(u) for u in (
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless only
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",  # HTJ2K lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.1.99",  # deflated (lossless)
)}


def _native_dtype(header: FileHeader) -> np.dtype | None:
    if header.samples_per_pixel != 1 or header.n_frames != 1 or header.pixel_offset is None:
        return None
    kinds = {8: "i1", 16: "i2", 32: "i4"} if header.pixel_representation else {8: "u1", 16: "u2", 32: "u4"}
    code = kinds.get(header.bits_allocated)
    return np.dtype("<" + code) if code else None


_scratch = threading.local()  # per-thread buffers: no large allocation (mmap + page faults) per slice


def _buffer(name: str, size: int, dtype) -> np.ndarray:
    buf = getattr(_scratch, name, None)
    if buf is None or buf.nbytes < size * np.dtype(dtype).itemsize:
        buf = np.empty(size * np.dtype(dtype).itemsize, dtype=np.uint8)
        setattr(_scratch, name, buf)
    return buf[: size * np.dtype(dtype).itemsize].view(dtype)


def _read_native(header: FileHeader, dtype: np.dtype) -> np.ndarray:
    """The raw pixels straight from the file (a per-thread buffer: use before the next read)."""
    count = header.rows * header.cols
    raw = _buffer("raw", count, dtype)
    with open(header.path, "rb") as fp:
        fp.seek(header.pixel_offset)
        got = fp.readinto(memoryview(raw).cast("B"))
    if got != raw.nbytes:
        raise ValueError(f"pixel data ends early ({got // dtype.itemsize} of {count} pixels)")
    raw = raw.reshape(header.rows, header.cols)
    shift = header.bits_allocated - header.bits_stored
    if header.pixel_representation and 0 < shift < header.bits_allocated:
        raw <<= shift  # sign-extend from the stored bits
        raw >>= shift
    return raw


def _read_with_pydicom(header: FileHeader) -> np.ndarray:
    ds = pydicom.dcmread(header.path)
    arr = ds.pixel_array
    if header.n_frames == 1 and arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected monochrome frames, got pixel array of shape {arr.shape}")
    return arr


def to_hu(raw: np.ndarray, dst: np.ndarray, slope: float, intercept: float, padding: int | None) -> int:
    """HU = raw * slope + intercept into ``dst``; padding pixels become air. Returns how many were padding."""
    np.copyto(dst, raw, casting="unsafe")
    if slope != 1.0:
        dst *= np.float32(slope)
    if intercept != 0.0:
        dst += np.float32(intercept)
    if padding is None:
        return 0
    mask = np.equal(raw, padding, out=_buffer("mask", raw.size, np.bool_).reshape(raw.shape))
    n = int(np.count_nonzero(mask))
    if n:
        np.copyto(dst, np.float32(AIR_HU), where=mask)
    return n


def _decode_file(header: FileHeader, items: list[tuple[int, SliceRef]], out: np.ndarray) -> int:
    dtype = _native_dtype(header)
    if dtype is not None:
        frames = _read_native(header, dtype)[None]
    else:
        frames = _read_with_pydicom(header)
    padded = 0
    for k, s in items:
        raw = frames[s.frame or 0]
        if raw.shape != out.shape[1:]:
            raise ValueError(f"pixel array {raw.shape} does not match Rows x Columns {out.shape[1:]}")
        padded += to_hu(raw, out[k], s.slope, s.intercept, header.padding_value)
    return padded


def decode_stack(slices: list[SliceRef], progress=None, workers: int | None = None
                 ) -> tuple[np.ndarray, list[DecodeFailure], int]:
    """HU float32 array (n, rows, cols) of ``slices`` in their order, decode failures, padded-pixel count.

    Raises UnsupportedTransferSyntaxError before decoding anything when a file needs a missing plugin.
    """
    by_file: dict[object, list[tuple[int, SliceRef]]] = {}
    headers: dict[object, FileHeader] = {}
    for k, s in enumerate(slices):
        by_file.setdefault(s.path, []).append((k, s))
        headers[s.path] = s.header
    for h in headers.values():
        if _native_dtype(h) is None:
            check_decodable(h)
    rows, cols = slices[0].header.rows, slices[0].header.cols
    out = np.empty((len(slices), rows, cols), dtype=np.float32)
    failures: list[DecodeFailure] = []
    padded = 0
    total = len(by_file)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_decode_file, headers[p], items, out): p for p, items in by_file.items()}
        for done, fut in enumerate(as_completed(futures), 1):
            try:
                padded += fut.result()
            except UnsupportedTransferSyntaxError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoder failure is reported for that file
                failures.append(DecodeFailure(futures[fut], f"pixel data could not be decoded "
                                                            f"({type(exc).__name__}: {exc})"))
            if progress is not None:
                progress(done, total, "reading pixels")
    return out, failures, padded
