"""Writing results for other systems, one path for the command line and the app.

``export_result(fmt, out, labels, ...)`` writes the labels as NIfTI (in the scan's geometry) or as a
DICOM SEG referencing the source series, the findings as CSV or JSON, or the lesion list (each lesion
measured, ``ctseg_core.measure``) as CSV or JSON; every file is written atomically. ``FORMATS`` lists the
formats with the suffix a file of that kind gets and whether the scan is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctseg_core.errors import CtsegError
from ctseg_core.volume import LabelMap, Volume


@dataclass(frozen=True)
class ExportFormat:
    key: str
    title: str  # menu text
    suffix: str  # of a suggested file name
    file_filter: str  # for a file chooser
    needs_scan: bool = False  # the scan itself is needed (its source series, or its HU and geometry)


FORMATS = {f.key: f for f in (
    ExportFormat("dicom-seg", "Labels as DICOM SEG", ".seg.dcm", "DICOM SEG (*.dcm)", needs_scan=True),
    ExportFormat("nifti", "Labels as NIfTI", ".nii.gz", "NIfTI (*.nii.gz *.nii)"),
    ExportFormat("csv", "Findings as CSV", ".csv", "CSV (*.csv)"),
    ExportFormat("json", "Findings as JSON", ".json", "JSON (*.json)"),
    ExportFormat("lesions-csv", "Lesion list as CSV", "_lesions.csv", "CSV (*.csv)", needs_scan=True),
    ExportFormat("lesions-json", "Lesion list as JSON", "_lesions.json", "JSON (*.json)", needs_scan=True),
)}


def export_result(fmt: str, out: str | Path, labels: LabelMap, volume: Volume | None = None,
                  model_version: str | None = None, findings=None, scan: str = "", source: str = "final",
                  annotator: str | None = None) -> Path:
    """Write ``labels`` (or their findings) as ``fmt`` to ``out``; returns the path written.

    ``volume`` is needed for a DICOM SEG (its source series is referenced); ``model_version`` marks SEG
    segments as made by that model and then corrected (without it they are manual); ``findings``
    (``ctseg_core.findings.Findings``) replaces the findings computed from ``labels`` (e.g. with the
    model's confidence and the review state the app knows)."""
    from ctseg_core.io import is_image_file

    out = Path(out)
    if fmt not in FORMATS:
        raise CtsegError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    if out.is_dir():
        raise CtsegError("the output is a folder; give a file name", out)
    if fmt == "nifti":
        from ctseg_core.io.images import write_labels

        if not is_image_file(out):
            raise CtsegError("a NIfTI export must end in .nii.gz or .nii (or .nrrd/.mha)", out)
        write_labels(labels, out)
    elif fmt == "dicom-seg":
        from ctseg_core.io.seg import write_dicom_seg

        if volume is None:
            raise CtsegError("a DICOM SEG needs the scan its labels belong to", out)
        write_dicom_seg(labels, volume, out, model_version=model_version, content_creator=annotator or None)
    elif fmt.startswith("lesions-"):
        from ctseg_core.measure import measure_scan
        from ctseg_core.measure.lesions import write_lesions_csv, write_lesions_json

        if volume is None:
            raise CtsegError("a lesion list needs the scan its labels belong to", out)
        lesions = measure_scan(volume, labels).lesions
        (write_lesions_csv if fmt == "lesions-csv" else write_lesions_json)(lesions, out)
    else:
        from ctseg_core.findings import compute_findings, write_findings_csv, write_findings_json

        if findings is None:
            findings = compute_findings(labels, source=source, scan=scan)
        (write_findings_csv if fmt == "csv" else write_findings_json)(findings, out)
    return out
