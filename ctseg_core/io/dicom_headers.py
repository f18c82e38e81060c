"""Reading one DICOM file's header once: identity, pixel format, and the 2-D images (slices) it holds.

A single-frame file holds one slice; an enhanced (multi-frame) CT file holds one slice per frame, with
geometry and rescale taken from its per-frame / shared functional groups. For uncompressed little-endian
files the byte offset of the pixel data is recorded, so pixels can later be read without parsing the
header a second time.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian)

PIXEL_DATA_TAG = 0x7FE00010
NATIVE_LE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


class NotDicomFile(Exception):
    """The file is not DICOM at all (no DICM marker): listed as skipped, not warned about."""


class CorruptFile(Exception):
    """The file claims to be DICOM but cannot be read (truncated, garbled)."""


class NoPixelData(Exception):
    """A DICOM object without an image (report, directory, presentation state, ...)."""


@dataclass
class FileHeader:
    """What one file says about itself (shared by all slices of a multi-frame file)."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    modality: str
    description: str
    patient_id: str
    series_number: int | None
    image_type: tuple[str, ...]
    rows: int
    cols: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    padding_value: int | None
    transfer_syntax: str
    n_frames: int
    gantry_tilt_tag: float | None
    pixel_offset: int | None = None  # byte offset of raw native pixel data (fast path), else None

    @property
    def sop_class_name(self) -> str:
        return pydicom.uid.UID(self.sop_class_uid).name if self.sop_class_uid else "unknown SOP class"


@dataclass
class SliceRef:
    """One 2-D image: a single-frame file or one frame of a multi-frame file."""

    header: FileHeader
    frame: int | None  # 0-based frame index in a multi-frame file, None for single-frame files
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6)
    position: tuple[float, float, float] | None  # ImagePositionPatient
    pixel_spacing: tuple[float, float] | None  # (row, col) mm
    thickness: float | None
    slope: float = 1.0
    intercept: float = 0.0
    instance_number: int | None = None

    @property
    def path(self) -> Path:
        return self.header.path

    @property
    def label(self) -> str:
        """The file name (with frame number for multi-frame files), for messages."""
        name = self.header.path.name
        return name if self.frame is None else f"{name} frame {self.frame + 1}"


class BadValue(ValueError):
    """A header value that is present but unusable (not a number, infinite, out of range)."""


def _floats(value, n: int, name: str = "value") -> tuple[float, ...] | None:
    """``n`` finite numbers; None when absent; BadValue when present but not that."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise BadValue(f"{name} {_show(value)} is not a list of numbers") from exc
    if len(out) != n:
        raise BadValue(f"{name} has {len(out)} values, {n} expected")
    if not all(np.isfinite(out)):
        raise BadValue(f"{name} {_show(value)} is not finite")
    return out


def _float(value, default=None, name: str = "value"):
    """A finite number; ``default`` when absent; BadValue when present but not a finite number."""
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise BadValue(f"{name} {_show(value)} is not a number") from exc
    if not np.isfinite(out):
        raise BadValue(f"{name} {_show(value)} is not finite")
    return out


def _lenient_float(value, default=None):
    """An informative value (thickness, tilt): unusable values count as absent."""
    try:
        return _float(value, default)
    except BadValue:
        return default


def _show(value) -> str:
    text = repr(value if not isinstance(value, (list, tuple)) else list(value))
    return text if len(text) <= 40 else text[:37] + "..."


MAX_ABS_SLOPE = 1e4  # HU per stored unit; beyond this (or 0) the rescale cannot describe a CT
MAX_ABS_INTERCEPT = 1e5
MAX_PIXEL_SPACING_MM = 100.0
MAX_POSITION_MM = 1e6


def check_slice(s: SliceRef) -> None:
    """Raise BadValue when a slice's geometry or rescale cannot be trusted."""
    if s.slope == 0 or abs(s.slope) > MAX_ABS_SLOPE:
        raise BadValue(f"RescaleSlope {s.slope:g} cannot map stored values to HU")
    if abs(s.intercept) > MAX_ABS_INTERCEPT:
        raise BadValue(f"RescaleIntercept {s.intercept:g} is out of range")
    if s.pixel_spacing is not None and not all(0 < v <= MAX_PIXEL_SPACING_MM for v in s.pixel_spacing):
        raise BadValue(f"PixelSpacing {list(s.pixel_spacing)} mm is not a usable pixel size")
    if s.position is not None and max(abs(v) for v in s.position) > MAX_POSITION_MM:
        raise BadValue(f"ImagePositionPatient {list(s.position)} is out of range")
    if s.orientation is not None:
        r, c = np.asarray(s.orientation[:3]), np.asarray(s.orientation[3:])
        nr, nc = float(np.linalg.norm(r)), float(np.linalg.norm(c))
        if not (0.9 < nr < 1.1 and 0.9 < nc < 1.1) or abs(float(r @ c)) > 0.01 * nr * nc:
            raise BadValue(f"ImageOrientationPatient {[round(v, 4) for v in s.orientation]} is not two "
                           "perpendicular unit vectors")


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return default


_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_TEXT = {"DS", "IS", "CS", "UI", "AS", "DA", "TM"}


@functools.lru_cache(maxsize=None)
def _tag(keyword: str) -> int:
    return tag_for_keyword(keyword)


class _Values:
    """Top-level values read from their raw bytes: pydicom's general value conversion costs more than
    parsing the whole header, and scanning hundreds of files must be fast. Anything unusual (already
    converted, other VRs) goes through pydicom."""

    def __init__(self, ds):
        self.ds = ds

    def get(self, keyword: str):
        """A list of values (str for text VRs, numbers for binary VRs), or None when absent."""
        tag = _tag(keyword)
        if tag not in self.ds:
            return None
        elem = self.ds.get_item(tag)
        vr = elem.VR or dictionary_VR(tag)
        if not isinstance(elem, RawDataElement) or (vr not in _BINARY and vr not in _TEXT):
            value = self.ds[tag].value
            if value is None or value == "":
                return None
            return list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
        raw = elem.value or b""
        if vr in _BINARY:
            size = struct.calcsize(_BINARY[vr])
            fmt = ("<" if elem.is_little_endian else ">") + _BINARY[vr] * (len(raw) // size)
            return list(struct.unpack(fmt, raw[:len(raw) // size * size])) or None
        text = raw.decode("latin-1").strip(" \x00")
        return [t.strip(" \x00") for t in text.split("\\")] if text else None

    def string(self, keyword: str) -> str:
        """A text value; non-ASCII text is decoded by pydicom with the dataset's character set."""
        tag = _tag(keyword)
        if tag not in self.ds:
            return ""
        elem = self.ds.get_item(tag)
        if isinstance(elem, RawDataElement) and elem.value is not None and elem.value.isascii():
            return elem.value.decode("ascii").strip(" \x00")
        return str(self.ds[tag].value or "")

    def one(self, keyword: str, default=None):
        values = self.get(keyword)
        return values[0] if values else default

    def text(self, keyword: str) -> str:
        values = self.get(keyword)
        return "\\".join(str(v) for v in values) if values else ""


def read_file_header(path: Path) -> tuple[FileHeader, list[SliceRef]]:
    """Parse the header of ``path`` (pixels are not read). Raises NotDicomFile, CorruptFile or NoPixelData."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
            if len(head) < 132 or head[128:132] != b"DICM":
                raise NotDicomFile("not a DICOM file (no DICM marker)")
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            pixel_pos = fp.tell()
            element_head = fp.read(12)
            size = os.fstat(fp.fileno()).st_size
    except NotDicomFile:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds (zlib.error, NotImplementedError, ...)
        raise CorruptFile(f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    try:
        return _parse(path, ds, element_head, pixel_pos, size)
    except (NoPixelData, CorruptFile):
        raise
    except BadValue as exc:
        raise CorruptFile(f"invalid header value: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - one bad file is skipped with its reason, never fatal for the folder
        raise CorruptFile(f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc


def _parse(path: Path, ds, element_head: bytes, pixel_pos: int, size: int) -> tuple[FileHeader, list[SliceRef]]:
    ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    if not ts and "SOPClassUID" not in ds:
        raise CorruptFile("has the DICM marker but no readable header (no transfer syntax, no SOP Class UID)")
    has_pixels, pixel_offset, length = _locate_pixel_data(ts, element_head, pixel_pos, size, ds)
    if not has_pixels:
        sop = str(ds.get("SOPClassUID", "") or getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or "")
        name = pydicom.uid.UID(sop).name if sop else "unknown SOP class"
        what = ": a directory/index file, not an image" if "Directory" in name else ""
        raise NoPixelData(f"no pixel data ({name}{what})")
    header = _file_header(path, ds, ts, pixel_offset)
    _check_pixel_format(header, length)
    slices = _slices_of(ds, header)
    for s in slices:
        check_slice(s)
    return header, slices


def _check_pixel_format(h: FileHeader, length: int | None) -> None:
    """Rows, Columns, bits and frames must describe the pixel data that is there (native data)."""
    if not (1 <= h.rows <= 65535 and 1 <= h.cols <= 65535):
        raise CorruptFile(f"invalid header value: image size {h.rows} x {h.cols} (Rows x Columns)")
    if h.bits_allocated not in (1, 8, 16, 32, 64) or not 1 <= h.bits_stored <= h.bits_allocated:
        raise CorruptFile(f"invalid header value: BitsAllocated {h.bits_allocated} / BitsStored {h.bits_stored}")
    if not 1 <= h.samples_per_pixel <= 4:
        raise CorruptFile(f"invalid header value: SamplesPerPixel {h.samples_per_pixel}")
    if length is None or length == 0xFFFFFFFF:
        return  # encapsulated or read by pydicom: the decoder checks the length
    need = (h.rows * h.cols * h.samples_per_pixel * h.n_frames * h.bits_allocated + 7) // 8
    if length not in (need, need + 1):  # + 1: the pad byte of an odd length
        raise CorruptFile(f"pixel data holds {length} bytes but Rows x Columns x BitsAllocated x frames "
                          f"({h.rows} x {h.cols} x {h.bits_allocated} x {h.n_frames}) needs {need}")


def _locate_pixel_data(ts: str, element_head: bytes, pos: int, size: int, ds
                       ) -> tuple[bool, int | None, int | None]:
    """Whether the file has pixel data, for native little-endian data the offset of its bytes, and the
    pixel data's length in bytes (None where unknown here).

    Raises CorruptFile when the file ends before the pixel data it announces.
    """
    if ts in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian):
        # pydicom reads these through an inflated / byte-swapped copy, so the file position says nothing:
        # an image has Rows; its pixels are decoded by pydicom later (a missing PixelData fails there)
        return "Rows" in ds, None, None
    if len(element_head) < 8:
        return False, None, None
    group, elem = struct.unpack("<HH", element_head[:4])
    if (group << 16 | elem) != PIXEL_DATA_TAG:
        return False, None, None
    if ts == ImplicitVRLittleEndian:
        length = struct.unpack("<I", element_head[4:8])[0]
        value_at = pos + 8
    else:
        vr = element_head[4:6]
        if vr in (b"OB", b"OW", b"OF", b"UN", b"OD", b"OL", b"OV"):
            length = struct.unpack("<I", element_head[8:12])[0]
            value_at = pos + 12
        else:
            length = struct.unpack("<H", element_head[6:8])[0]
            value_at = pos + 8
    if length == 0xFFFFFFFF:  # encapsulated (compressed): decoded by pydicom later
        return True, None, None
    if value_at + length > size:
        raise CorruptFile(f"truncated: pixel data needs {length} bytes, the file holds {max(size - value_at, 0)}")
    native = ts in NATIVE_LE
    return True, (value_at if native else None), (length if native else None)


def _file_header(path: Path, ds, ts: str, pixel_offset: int | None) -> FileHeader:
    v = _Values(ds)
    pad = v.one("PixelPaddingValue")
    bits = _int(v.one("BitsAllocated"), 16)
    return FileHeader(
        path=path,
        sop_class_uid=v.text("SOPClassUID"),
        sop_instance_uid=v.text("SOPInstanceUID"),
        series_uid=v.text("SeriesInstanceUID"),
        study_uid=v.text("StudyInstanceUID"),
        frame_of_reference_uid=v.text("FrameOfReferenceUID"),
        modality=v.text("Modality"),
        description=v.string("SeriesDescription"),
        patient_id=v.string("PatientID"),
        series_number=_int(v.one("SeriesNumber")),
        image_type=tuple(str(t).upper() for t in (v.get("ImageType") or [])),
        rows=_int(v.one("Rows"), 0),
        cols=_int(v.one("Columns"), 0),
        samples_per_pixel=_int(v.one("SamplesPerPixel"), 1),
        photometric=v.text("PhotometricInterpretation"),
        bits_allocated=bits,
        bits_stored=_int(v.one("BitsStored"), bits),
        pixel_representation=_int(v.one("PixelRepresentation"), 0),
        padding_value=_int(pad) if pad is not None and not isinstance(pad, bytes) else None,
        transfer_syntax=ts,
        n_frames=max(_int(v.one("NumberOfFrames"), 1) or 1, 1),
        gantry_tilt_tag=_lenient_float(v.one("GantryDetectorTilt")),
        pixel_offset=pixel_offset,
    )


def _thickness(value) -> float | None:
    t = _lenient_float(value)
    return t if t is not None and t > 0 else None


def _group_item(ds, frame: int, sequence: str, per_frame):
    """The first item of a functional-group ``sequence`` for ``frame`` (per-frame first, then shared)."""
    if per_frame is not None and frame < len(per_frame):
        seq = per_frame[frame].get(sequence)
        if seq:
            return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(sequence)
        if seq:
            return seq[0]
    return None


def _slices_of(ds, header: FileHeader) -> list[SliceRef]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") if 0x52009230 in ds else None
    if per_frame is None:
        v = _Values(ds)
        return [SliceRef(header, None, _floats(v.get("ImageOrientationPatient"), 6, "ImageOrientationPatient"),
                         _floats(v.get("ImagePositionPatient"), 3, "ImagePositionPatient"),
                         _floats(v.get("PixelSpacing"), 2, "PixelSpacing"), _thickness(v.one("SliceThickness")),
                         _float(v.one("RescaleSlope"), 1.0, "RescaleSlope"),
                         _float(v.one("RescaleIntercept"), 0.0, "RescaleIntercept"), _int(v.one("InstanceNumber")))]
    slices = []
    for f in range(header.n_frames):
        plane_pos = _group_item(ds, f, "PlanePositionSequence", per_frame)
        plane_ori = _group_item(ds, f, "PlaneOrientationSequence", per_frame)
        measures = _group_item(ds, f, "PixelMeasuresSequence", per_frame)
        value_tf = _group_item(ds, f, "PixelValueTransformationSequence", per_frame)
        slices.append(SliceRef(
            header, f,
            _floats(plane_ori.get("ImageOrientationPatient") if plane_ori else ds.get("ImageOrientationPatient"), 6,
                    "ImageOrientationPatient"),
            _floats(plane_pos.get("ImagePositionPatient") if plane_pos else None, 3, "ImagePositionPatient"),
            _floats(measures.get("PixelSpacing") if measures else ds.get("PixelSpacing"), 2, "PixelSpacing"),
            _thickness(measures.get("SliceThickness") if measures else ds.get("SliceThickness")),
            _float(value_tf.get("RescaleSlope") if value_tf else ds.get("RescaleSlope"), 1.0, "RescaleSlope"),
            _float(value_tf.get("RescaleIntercept") if value_tf else ds.get("RescaleIntercept"), 0.0,
                   "RescaleIntercept"),
            _int(ds.get("InstanceNumber")),
        ))
    return slices
