"""Series discovery: read every file's header once, group slices into series, say what each series is.

A series (SeriesInstanceUID) whose slices differ in size or orientation is split into sub-series
(``UID``, ``UID#2``, ...). Each series is classified (axial CT image stack, scout, dose screen, ...) and
the largest axial CT series is selected by default. Files that are not usable images are listed in
``skipped`` with the reason, never fatal here.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctseg_core.errors import GeometryError, LoadError
from ctseg_core.io.dicom_geometry import build_stack, drop_repeated_instances, plan_grid, tilt_tag_note
from ctseg_core.io.dicom_headers import (CT_IMAGE, ENHANCED_CT, LEGACY_ENHANCED_CT, SECONDARY_CAPTURE_PREFIX,
                                         CorruptFile, NoPixelData, NotDicomFile, SliceRef, read_file_header)

log = logging.getLogger(__name__)

CT_IMAGE_CLASSES = {CT_IMAGE, ENHANCED_CT, LEGACY_ENHANCED_CT}
AXIAL_MIN_COS = np.cos(np.radians(45.0))  # slice normal within 45 degrees of the patient's z axis


@dataclass
class SeriesInfo:
    series_uid: str
    modality: str
    description: str
    n_slices: int
    rows: int
    cols: int
    pixel_spacing_mm: tuple[float, float]  # (row, col)
    slice_spacing_mm: tuple[float, float]  # (min, max) between consecutive positions along the normal
    gantry_tilt_deg: float  # computed from ImageOrientationPatient and the positions
    is_axial_ct: bool
    selected: bool
    notes: list[str]
    files: list[Path]
    slices: list[SliceRef] = field(default_factory=list, repr=False, compare=False)  # sorted when placeable
    geometry_error: GeometryError | None = field(default=None, repr=False, compare=False)  # why it cannot load

    def to_json(self) -> dict:
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "description": self.description,
            "n_slices": self.n_slices,
            "rows": self.rows,
            "cols": self.cols,
            "pixel_spacing_mm": [round(float(v), 6) for v in self.pixel_spacing_mm],
            "slice_positions_spacing_mm": {"min": round(float(self.slice_spacing_mm[0]), 4),
                                           "max": round(float(self.slice_spacing_mm[1]), 4)},
            "gantry_tilt_deg": round(float(self.gantry_tilt_deg), 3) + 0.0,
            "selected": self.selected,
            "notes": list(self.notes),
        }


@dataclass
class Skipped:
    path: Path
    reason: str

    def to_json(self) -> dict:
        return {"path": str(self.path), "reason": self.reason}


@dataclass
class FolderScan:
    series: list[SeriesInfo]
    skipped: list[Skipped]

    def selected(self) -> SeriesInfo | None:
        return next((s for s in self.series if s.selected), None)

    def find(self, series_uid: str) -> SeriesInfo:
        """The series with this UID; LoadError listing the available ones otherwise."""
        for s in self.series:
            if s.series_uid == series_uid:
                return s
        listing = "; ".join(f"{s.series_uid} ({s.modality}, {s.n_slices} slices, {s.description or 'no description'})"
                            for s in self.series) or "none"
        raise LoadError(f"no series with UID {series_uid}; available: {listing}")

    def select(self, series: SeriesInfo) -> None:
        for s in self.series:
            s.selected = s is series

    def to_json(self) -> dict:
        return {"series": [s.to_json() for s in self.series], "skipped": [k.to_json() for k in self.skipped]}


def list_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """Regular files under ``folder`` (sorted, any depth, without recursion limits) and what was left out:
    pipes, sockets and devices (reading them would block or never end) and folders that cannot be read.
    Symbolic links to folders are not followed (no loops)."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(current, f"folder cannot be read ({exc.strerror or exc})"))
            continue
        subfolders = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    subfolders.append(Path(e.path))
                elif e.is_file(follow_symlinks=True):
                    files.append(Path(e.path))
                elif not e.is_symlink() or os.path.exists(e.path):
                    skipped.append(Skipped(Path(e.path), "not a regular file (a pipe, socket or device): not read"))
            except OSError as exc:
                skipped.append(Skipped(Path(e.path), f"cannot be read ({exc.strerror or exc})"))
        stack.extend(reversed(subfolders))
    return files, skipped


HEADER_CACHE_FILES = 8192  # headers of recently read files, keyed by (path, size, mtime): a folder
_header_cache: OrderedDict = OrderedDict()  # scanned to pick a series and then loaded is parsed once
_header_lock = threading.Lock()


def clear_header_cache() -> None:
    with _header_lock:
        _header_cache.clear()


def _read_header_cached(path: Path) -> list[SliceRef]:
    """``read_file_header``'s slices, reusing the result while the file's size and mtime are unchanged."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _header_lock:
        hit = _header_cache.get(key)
        if hit is not None:
            _header_cache.move_to_end(key)
    if hit is None:
        try:
            hit = read_file_header(path)[1]
        except (NotDicomFile, CorruptFile, NoPixelData) as exc:
            hit = exc
        with _header_lock:
            _header_cache[key] = hit
            while len(_header_cache) > HEADER_CACHE_FILES:
                _header_cache.popitem(last=False)
    if isinstance(hit, Exception):
        raise type(hit)(str(hit))
    return hit


def scan_folder(folder, progress=None) -> FolderScan:
    """Read the headers of every file under ``folder`` (recursively) and describe the series found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError("folder not found" if not folder.exists() else "not a folder", folder)
    files, skipped = list_files(folder)
    slices: list[SliceRef] = []
    warn = list(skipped)  # pipes, devices, unreadable folders
    for i, path in enumerate(files):
        try:
            slices.extend(_read_header_cached(path))
        except NotDicomFile as exc:
            skipped.append(Skipped(path, str(exc)))
            log.info("skipped %s: %s", path, exc)
        except (CorruptFile, NoPixelData) as exc:
            skipped.append(Skipped(path, str(exc)))
            if isinstance(exc, CorruptFile) or path.suffix.lower() == ".dcm":
                warn.append(skipped[-1])
        except OSError as exc:
            skipped.append(Skipped(path, f"cannot be read ({exc.strerror or exc})"))
            warn.append(skipped[-1])
        if progress is not None:
            progress(i + 1, len(files), "reading DICOM headers")
    warn_skipped(warn)
    series = [describe_series(uid, group, note) for uid, group, note in _group(slices)]
    scan = FolderScan(series, skipped)
    best = default_choice(scan)
    if best is not None:
        scan.select(best)
        best.notes.append("selected: the largest axial CT image series")
    return scan


WARN_EACH_UP_TO = 5  # more skipped files than this are summarised in one warning


def summarise_skipped(skipped: list[Skipped], folder: Path | None = None, limit: int = WARN_EACH_UP_TO) -> list[str]:
    """One line per skipped file, or (beyond ``limit``) one line with the count, the first few and the reasons."""
    def name(k: Skipped) -> str:
        if folder is not None:
            try:
                return str(Path(k.path).relative_to(folder))
            except ValueError:
                pass
        return str(k.path)

    if len(skipped) <= limit:
        return [f"skipped {name(k)}: {k.reason}" for k in skipped]
    reasons: dict[str, int] = {}
    for k in skipped:
        key = k.reason.split(" (")[0].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    common = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    first = ", ".join(name(k) for k in skipped[:3])
    return [f"skipped {len(skipped)} unreadable files ({common}), e.g. {first}; `ctseg info` lists each with its reason"]


def warn_skipped(skipped: list[Skipped]) -> None:
    for line in summarise_skipped(skipped):
        warnings.warn(line, stacklevel=3)


def default_choice(scan: FolderScan) -> SeriesInfo | None:
    candidates = [s for s in scan.series if s.is_axial_ct]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (s.n_slices, -s.slice_spacing_mm[0]))


def _split_key(s: SliceRef):
    h = s.header
    ori = None if s.orientation is None else tuple(np.round(s.orientation, 3) + 0.0)
    return (h.rows, h.cols, h.samples_per_pixel, ori)


def _group(slices: list[SliceRef]):
    """(uid, slices, note) per series; a series with several sizes/orientations becomes several."""
    by_uid: dict[str, list[SliceRef]] = {}
    for s in slices:
        by_uid.setdefault(s.header.series_uid or f"(no SeriesInstanceUID) {s.path.parent}", []).append(s)
    for uid, members in by_uid.items():
        parts: dict[tuple, list[SliceRef]] = {}
        for s in members:
            parts.setdefault(_split_key(s), []).append(s)
        ordered = sorted(parts.values(), key=lambda p: (-len(p), min(s.instance_number or 0 for s in p)))
        if len(ordered) == 1:
            yield uid, ordered[0], None
            continue
        for i, part in enumerate(ordered):
            h = part[0].header
            note = (f"series {uid} holds slices of different size or orientation: split into {len(ordered)} "
                    f"parts; this is part {i + 1} ({h.rows}x{h.cols})")
            yield (uid if i == 0 else f"{uid}#{i + 1}"), part, note


def _kind_notes(slices: list[SliceRef]) -> list[str]:
    """Why a group is not an axial CT image stack (empty when it is one)."""
    h = slices[0].header
    reasons = []
    if h.modality.upper() != "CT":
        reasons.append(f"modality {h.modality or 'missing'}: not CT")
    if h.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX):
        reasons.append("secondary capture (screen shots such as dose reports), not CT image data")
    elif h.sop_class_uid not in CT_IMAGE_CLASSES and h.modality.upper() == "CT":
        reasons.append(f"{h.sop_class_name}: not a CT image storage object")
    if h.samples_per_pixel != 1 or not h.photometric.startswith("MONOCHROME"):
        reasons.append(f"colour image ({h.photometric or 'unknown'}), not Hounsfield units")
    if "LOCALIZER" in h.image_type:
        reasons.append("localizer (scout) image")
    if any(s.orientation is None or s.position is None for s in slices):
        reasons.append("no patient geometry (ImageOrientationPatient/ImagePositionPatient missing)")
    elif len(slices) < 2:
        reasons.append("single slice, not a volume")
    else:
        n = np.cross(np.asarray(slices[0].orientation[:3]), np.asarray(slices[0].orientation[3:]))
        if abs(n[2]) / np.linalg.norm(n) < AXIAL_MIN_COS:
            reasons.append("not axial (sagittal or coronal slices)")
    return reasons


def _loading_notes(stack) -> list[str]:
    """What loading will have to do about the spacing (the tilt has its own column)."""
    try:
        plan = plan_grid(stack)
    except GeometryError as exc:
        return [f"will not load with the default gap limit: {exc.problem}"]
    return [f"on loading: {n}" for n in plan.notes if not n.startswith("gantry tilt")]


def describe_series(uid: str, slices: list[SliceRef], split_note: str | None) -> SeriesInfo:
    slices, notes = drop_repeated_instances(slices)
    if split_note:
        notes.insert(0, split_note)
    h = slices[0].header
    reasons = _kind_notes(slices)
    notes.extend(reasons)
    spacing_range, tilt, error = (0.0, 0.0), 0.0, None
    pixel_spacing = slices[0].pixel_spacing or (0.0, 0.0)
    stackable = h.samples_per_pixel == 1 and not h.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX)
    if stackable and all(s.orientation and s.position for s in slices):
        try:
            stack = build_stack(slices)
        except GeometryError as exc:
            error = exc if not reasons else None
            notes.append(f"inconsistent geometry: {exc}")
            reasons.append("inconsistent geometry")
        else:
            slices = stack.slices
            spacing_range, tilt = stack.spacing_range(), stack.tilt_deg
            tag_note = tilt_tag_note(tilt, [s.header.gantry_tilt_tag for s in slices]) if len(slices) > 1 else None
            if tag_note:
                notes.append(tag_note)
            if not reasons:
                notes.extend(_loading_notes(stack))
    files = list(dict.fromkeys(s.path for s in slices))
    return SeriesInfo(uid, h.modality, h.description, len(slices), h.rows, h.cols,
                      tuple(float(v) for v in pixel_spacing), spacing_range, tilt, not reasons, False, notes,
                      files, slices, error)
