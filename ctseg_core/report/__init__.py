"""Reports of a scan's measurements: the one-page HTML (``html``), its key images (``key_images``), and
``write_report``, which writes everything a report folder holds:

- ``report.html``: the human-readable page (key images embedded);
- ``measurements.json`` (findings, midline shift, lesion list, growth when a prior is given) and
  ``lesions.csv``;
- for a scan loaded from DICOM: the DICOM SEG (``seg.dcm``, unless one is given) and, beside it, the DICOM
  SR measurement report (``sr.dcm``) referencing it and the source series. Other scans get no SR (it needs
  the source images to refer to); the returned notes say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import CtsegError
from ctseg_core.measure import ScanMeasurements, measure_scan
from ctseg_core.measure.lesions import write_lesions_csv
from ctseg_core.report.html import write_report_html


@dataclass
class ReportFiles:
    html: Path
    json: Path
    csv: Path
    seg: Path | None = None
    sr: Path | None = None
    notes: list[str] = field(default_factory=list)


def is_dicom_scan(volume) -> bool:
    return bool(volume.meta.extra.get("sop_instance_uids"))


def write_report(out_dir, volume, labels, *, measurements: ScanMeasurements | None = None, model_version: str | None = None,
                 model: str = "", scan: str = "", labels_source: str = "", growth=None,
                 seg_path: str | Path | None = None) -> ReportFiles:
    """Write the report folder ``out_dir`` for ``labels`` on ``volume`` (see the module's docstring)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = measurements or measure_scan(volume, labels, source=labels_source, scan=scan)
    files = ReportFiles(out_dir / "report.html", out_dir / "measurements.json", out_dir / "lesions.csv")
    data = m.to_dict()
    if growth is not None:
        data["growth"] = growth.to_dict()
    data["model"] = model or "manual"
    atomic_write_text(files.json, json.dumps(data, indent=2))
    write_lesions_csv(m.lesions, files.csv)
    write_report_html(files.html, m, volume, labels, scan=scan, labels_source=labels_source, model=model,
                      growth=growth)
    if not is_dicom_scan(volume):
        files.notes.append("no DICOM SR: the scan was not loaded from a DICOM series")
        return files
    if not m.findings.classes or all(c.voxels == 0 for c in m.findings.classes):
        files.notes.append("no DICOM SEG or SR: nothing is labelled")
        return files
    from ctseg_core.io.seg import write_dicom_seg
    from ctseg_core.io.sr import write_dicom_sr

    try:
        if seg_path is None:
            seg_path = write_dicom_seg(labels, volume, out_dir / "seg.dcm", model_version=model_version)
        files.seg = Path(seg_path)
        files.sr = write_dicom_sr(m, volume, files.seg, files.seg.parent / "sr.dcm", model_version=model_version)
    except CtsegError as exc:
        files.notes.append(f"no DICOM SR: {exc}")
    return files
