"""DICOM CT series: find the series in a folder, choose one, and load it in HU with its true geometry.

The work is split by job: ``dicom_headers`` (one file's header), ``dicom_scan`` (series discovery and
classification), ``dicom_geometry`` (sort, tilt, spacing, output grid) and ``dicom_decode`` (pixels).
This module holds the public API and puts them together.

A loaded volume is always on an orthogonal, evenly spaced grid: a tilted (sheared) stack is shifted slice
by slice in its plane, uneven spacing is resampled along the slice normal, and ``meta.notes`` says what
was done. ``meta.extra`` keeps what is needed to map results back onto the source slices (DICOM SEG).
"""

from __future__ import annotations

from pathlib import Path

from ctseg_core.errors import GeometryError, LoadError, NotCTError
from ctseg_core.io.dicom_decode import decode_stack, is_lossy
from ctseg_core.io.dicom_geometry import AIR_HU, GridPlan, Stack, apply_plan, build_stack, plan_grid, tilt_tag_note
from ctseg_core.io.dicom_scan import FolderScan, SeriesInfo, Skipped, scan_folder, summarise_skipped, warn_skipped
from ctseg_core.volume import Geometry, Volume, VolumeMeta, replace_non_finite

__all__ = ["FolderScan", "SeriesInfo", "Skipped", "choose_series", "load_dicom_series", "scan_folder",
           "series_of_file"]

DEFAULT_MAX_GAP_FACTOR = 2.5


def series_of_file(scan: FolderScan, file: Path) -> SeriesInfo:
    """The series holding ``file``; LoadError naming the file (and why it was skipped) otherwise."""
    file = Path(file).resolve()
    for s in scan.series:
        if any(Path(f).resolve() == file for f in s.files):
            return s
    reason = next((k.reason for k in scan.skipped if Path(k.path).resolve() == file), "")
    raise LoadError(f"not an image of any series in its folder ({reason or 'not found by the scan'})", file)


def choose_series(scan: FolderScan, folder: Path, series_uid: str | None = None,
                  file: Path | None = None) -> SeriesInfo:
    """The series to open: the one named, else the one holding ``file``, else the selected (largest axial
    CT) one; clear errors otherwise."""
    if not series_uid and file is not None:
        series_uid = series_of_file(scan, file).series_uid
    if series_uid:
        info = scan.find(series_uid)
        if info.modality.upper() != "CT":
            raise NotCTError(f"series {series_uid} is {info.modality or 'of unknown modality'}, not CT", info.files[0])
        if info.slices[0].header.samples_per_pixel != 1 or "secondary capture" in " ".join(info.notes):
            raise LoadError(f"series {series_uid} is not CT image data: {'; '.join(info.notes)}", info.files[0])
        scan.select(info)
        return info
    info = scan.selected()
    if info is not None:
        return info
    if not scan.series:
        reasons = "; ".join(f"{k.path.name}: {k.reason}" for k in scan.skipped[:8]) or "the folder is empty"
        raise LoadError(f"no DICOM image found ({reasons})", folder)
    listing = "; ".join(f"{s.series_uid} {s.modality} {s.n_slices} slice(s): {', '.join(s.notes) or 'ok'}"
                        for s in scan.series)
    broken = [s for s in scan.series if s.geometry_error is not None]
    if broken:  # axial CT series that cannot be put together: say why
        raise max(broken, key=lambda s: s.n_slices).geometry_error
    if not any(s.modality.upper() == "CT" for s in scan.series):
        raise NotCTError(f"no CT series found, only: {listing}", folder)
    raise LoadError(f"no axial CT image series found (name one with --series to open it anyway): {listing}", folder)


def load_dicom_series(folder, series_uid: str | None = None, progress=None,
                      max_gap_factor: float = DEFAULT_MAX_GAP_FACTOR, file: Path | None = None) -> Volume:
    """Load one CT series from ``folder`` (searched recursively) as HU float32 on an orthogonal grid.

    ``series_uid`` names the series (as listed by ``scan_folder``); by default the largest axial CT
    series. ``max_gap_factor``: refuse (GeometryError) when two neighbouring slices are farther apart
    than this many times the median spacing. ``file``: a file of the series meant (when no UID is given).
    """
    folder = Path(folder)
    scan = scan_folder(folder, progress)
    info = choose_series(scan, folder, series_uid, file)
    corrupt = [k for k in scan.skipped if not k.reason.startswith("not a DICOM file") and "directory" not in k.reason]
    stack = build_stack(info.slices)
    plan = _plan(stack, max_gap_factor, corrupt)
    hu, failures, padded = decode_stack(stack.slices, progress)
    if failures:
        failed = {f.path for f in failures}
        bad = [Skipped(Path(f.path), f.reason) for f in failures]
        warn_skipped(bad)
        scan.skipped.extend(bad)
        keep = [k for k, s in enumerate(stack.slices) if s.path not in failed]
        if not keep:
            raise LoadError(f"no slice of series {info.series_uid} could be decoded: {failures[0].reason}",
                            failures[0].path)
        stack = build_stack([stack.slices[k] for k in keep])
        hu = hu[keep]
        plan = _plan(stack, max_gap_factor, corrupt + [Skipped(Path(f.path), f.reason) for f in failures])
    array = apply_plan(plan, hu)
    notes = _load_notes(plan, info, scan, padded, folder)
    volume = Volume(array, Geometry(array.shape, (plan.slice_spacing_mm,) + plan.stack.pixel_spacing,
                                    tuple(plan.origin), plan.direction), _meta(info, plan, folder, notes))
    replace_non_finite(volume)
    return volume


def _plan(stack: Stack, max_gap_factor: float, unreadable: list[Skipped]) -> GridPlan:
    try:
        return plan_grid(stack, max_gap_factor)
    except GeometryError as exc:
        if not unreadable:
            raise
        names = ", ".join(f"{k.path.name} ({k.reason})" for k in unreadable[:5])
        raise GeometryError(f"{exc.problem}; unreadable file(s) were left out and may be the missing slices: "
                            f"{names}", exc.path) from exc


def _rel(path: Path, folder: Path) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)


def _load_notes(plan: GridPlan, info: SeriesInfo, scan: FolderScan, padded: int, folder: Path) -> list[str]:
    stack = plan.stack
    notes = list(plan.notes)
    tag_note = tilt_tag_note(stack.tilt_deg, [s.header.gantry_tilt_tag for s in stack.slices]) \
        if len(stack.slices) > 1 else None
    if tag_note:
        notes.append(tag_note)
    notes.extend(_rescale_notes(stack))
    pads = sorted({s.header.padding_value for s in stack.slices if s.header.padding_value is not None})
    if padded:
        notes.append(f"{padded} pixels marked as padding outside the reconstructed field (PixelPaddingValue "
                     f"{', '.join(map(str, pads))}) set to air ({AIR_HU:.0f} HU)")
    lossy = sorted({s.header.transfer_syntax for s in stack.slices if is_lossy(s.header)})
    if lossy:
        from pydicom.uid import UID

        notes.append("pixel data is lossy compressed (" + ", ".join(UID(u).name for u in lossy)
                     + "): HU values are approximate")
    split = next((n for n in info.notes if "split into" in n), None)
    if split:
        notes.append(split)
    notes.extend(summarise_skipped([k for k in scan.skipped
                                    if not k.reason.startswith(("not a DICOM file", "no pixel data"))], folder))
    others = [_rel(k.path, folder) for k in scan.skipped if k.reason.startswith(("not a DICOM file", "no pixel data"))]
    if others:
        notes.append(f"{len(others)} file(s) without images ignored: {', '.join(sorted(set(others))[:5])}"
                     + (", ..." if len(set(others)) > 5 else ""))
    return notes


def _rescale_notes(stack: Stack) -> list[str]:
    """A note when slices of one series use different rescales (rare in CT: a damaged file looks so)."""
    notes = []
    for name, values in (("RescaleSlope", [s.slope for s in stack.slices]),
                         ("RescaleIntercept", [s.intercept for s in stack.slices])):
        counts: dict[float, list[str]] = {}
        for s, v in zip(stack.slices, values):
            counts.setdefault(v, []).append(s.label)
        if len(counts) > 1:
            usual = max(counts, key=lambda v: len(counts[v]))
            odd = "; ".join(f"{v:g} in {', '.join(labels[:3])}" + (" ..." if len(labels) > 3 else "")
                            for v, labels in counts.items() if v != usual)
            notes.append(f"{name} varies between slices: {usual:g} in {len(counts[usual])} slice(s), {odd}")
    return notes


def _meta(info: SeriesInfo, plan: GridPlan, folder: Path, notes: list[str]) -> VolumeMeta:
    slices = plan.stack.slices
    h = slices[0].header
    extra = {
        "source_files": [str(s.path) for s in slices],
        "sop_instance_uids": [s.header.sop_instance_uid for s in slices],
        "source_instance_numbers": [s.instance_number for s in slices],
        "source_positions": [list(s.position) for s in slices],
        "source_orientation": list(slices[0].orientation),
        "source_pixel_spacing": list(plan.stack.pixel_spacing),
        "source_shape": [len(slices), h.rows, h.cols],
        "sop_class_uid": h.sop_class_uid,
        "frame_of_reference_uid": h.frame_of_reference_uid,
        "series_number": h.series_number,
        "source_slice_thickness": [s.thickness for s in slices],
        "transfer_syntax_uid": h.transfer_syntax,
        "scan_series_id": info.series_uid,
    }
    if any(s.frame is not None for s in slices):
        extra["source_frames"] = [None if s.frame is None else s.frame + 1 for s in slices]
    return VolumeMeta(modality=h.modality, study_uid=h.study_uid, series_uid=h.series_uid,
                      description=h.description, patient_id=h.patient_id, source_path=str(folder),
                      gantry_tilt_deg=float(plan.stack.tilt_deg), notes=notes, extra=extra)
