"""What a reader wants to know about the open scan, in sections: patient, study, series, geometry and what
the loader changed (tilt corrected, slices resampled, padding, skipped files).

``describe_scan(volume)`` reads the header of the first source DICOM file (no pixels) for the patient,
study and series fields; an image file (NIfTI ...) has none of them and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctseg_core.slices import is_resampled
from ctseg_core.volume import Volume

Section = tuple[str, list[tuple[str, str]]]

_DICOM_FIELDS = {
    "Patient": (("Name", "PatientName"), ("ID", "PatientID"), ("Birth date", "PatientBirthDate"),
                ("Sex", "PatientSex")),
    "Study": (("Date", "StudyDate"), ("Time", "StudyTime"), ("Description", "StudyDescription"),
              ("Accession", "AccessionNumber"), ("Institution", "InstitutionName")),
    "Series": (("Description", "SeriesDescription"), ("Number", "SeriesNumber"), ("Modality", "Modality"),
               ("Body part", "BodyPartExamined"), ("Scanner", "Manufacturer"), ("Model", "ManufacturerModelName"),
               ("Kernel", "ConvolutionKernel"), ("kVp", "KVP"), ("Tube current (mA)", "XRayTubeCurrent"),
               ("Slice thickness (mm)", "SliceThickness"), ("Gantry tilt (°)", "GantryDetectorTilt")),
}


def _date(value: str) -> str:
    v = str(value)
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _dicom_sections(volume: Volume) -> list[Section]:
    import pydicom

    files = volume.meta.extra.get("source_files") or []
    if not files:
        return [("Patient", [("", "not stored in this file format (not DICOM)")])]
    try:
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - the panel must show the rest; the reason is shown instead
        return [("Patient", [("", f"the header of {Path(files[0]).name} could not be read ({exc})")])]
    sections = []
    for title, fields in _DICOM_FIELDS.items():
        rows = []
        for label, keyword in fields:
            value = ds.get(keyword)
            text = "" if value is None else str(value).strip()
            rows.append((label, (_date(text) if "Date" in keyword else text) or "-"))
        sections.append((title, rows))
    return sections


def _geometry_section(volume: Volume) -> Section:
    g, extra = volume.geometry, volume.meta.extra
    z, y, x = g.shape
    dz, dy, dx = g.spacing
    normal = g.direction_matrix[:, 2]
    rows = [("Voxels (cols x rows x slices)", f"{x} x {y} x {z}"),
            ("Spacing (mm)", f"{dx:.3f} x {dy:.3f} x {dz:.3f}"),
            ("Field of view (mm)", f"{x * dx:.0f} x {y * dy:.0f} x {z * dz:.0f}"),
            ("Slice normal (LPS)", "(" + ", ".join(f"{v:+.3f}" for v in normal) + ")"),
            ("Gantry tilt of the acquisition", f"{volume.meta.gantry_tilt_deg:.1f}°")]
    n_src = len(extra.get("source_files") or [])
    if n_src:
        rows.append(("Source images", f"{n_src}" + (f" -> {z} slices (resampled)" if is_resampled(volume) else "")))
        thickness = [t for t in extra.get("source_slice_thickness") or [] if t]
        if thickness:
            lo, hi = min(thickness), max(thickness)
            rows.append(("Source slice thickness (mm)", f"{lo:g}" if lo == hi else f"{lo:g} to {hi:g}"))
    hu = volume.array
    rows.append(("HU range", f"{float(np.min(hu)):.0f} to {float(np.max(hu)):.0f}"))
    return "Geometry", rows


def describe_scan(volume: Volume) -> list[Section]:
    """The scan's information as [(section title, [(field, value), ...]), ...]."""
    meta = volume.meta
    sections = _dicom_sections(volume)
    sections.append(_geometry_section(volume))
    notes = meta.notes or ["nothing: the slices were used as stored"]
    sections.append(("What the loader did", [("", n) for n in notes]))
    sections.append(("Source", [("Path", meta.source_path or "-"), ("Series UID", meta.series_uid or "-"),
                                ("Study UID", meta.study_uid or "-")]))
    return sections


def loader_summary(volume: Volume) -> str:
    """One sentence on what the loader changed in the pixels or the grid ("" when nothing): tilt corrected,
    slices resampled, gaps filled, padding set to air."""
    parts = []
    if abs(volume.meta.gantry_tilt_deg) > 0.05:
        parts.append(f"gantry tilt of {abs(volume.meta.gantry_tilt_deg):.1f}° corrected (slices shifted in plane)")
    n_src = len(volume.meta.extra.get("source_files") or [])
    if n_src and is_resampled(volume):
        parts.append(f"{n_src} images resampled to {volume.shape[0]} evenly spaced slices")
    notes = " ".join(volume.meta.notes).lower()
    if "missing" in notes:
        parts.append("missing slices filled by interpolation")
    if "padding" in notes:
        parts.append("padding outside the field of view set to air")
    return "; ".join(parts)
