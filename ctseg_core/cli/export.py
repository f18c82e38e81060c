"""``ctseg export CASE_OR_LABELS --format nifti|dicom-seg|csv|json|lesions-csv|lesions-json -o OUT``: export a
case's labels, its per-class findings (csv, json) or its lesion list (lesions-csv, lesions-json: each lesion
with volume, side, location, thickness, diameters; needs the scan).

CASE_OR_LABELS is a case id of the workspace (its final label map, or the prediction with
``--source prediction``) or a label map file (NIfTI/NRRD/MHA; ``--scan`` is then needed for DICOM SEG,
and when given, the label map must lie on the scan's grid).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ctseg_core.cli import output_file

FORMATS = ("nifti", "dicom-seg", "csv", "json", "lesions-csv", "lesions-json")


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a case's label map (NIfTI, DICOM SEG), findings or lesion list "
                              "(CSV, JSON)",
                              description=__doc__.splitlines()[0])
    p.add_argument("target", metavar="CASE_OR_LABELS", help="a case id in the workspace, or a label map file")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--out", required=True, type=output_file, help="output file")
    p.add_argument("--workspace", type=Path, help="the workspace folder (default $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--scan", type=Path, help="the scan (DICOM folder or image file) the labels belong to")
    p.add_argument("--source", choices=("final", "prediction"), default="final",
                   help="which label map of a case to export (default: final)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.errors import CtsegError
    from ctseg_core.io import is_image_file

    target = Path(args.target)
    if target.is_file() and is_image_file(target):
        labels, volume_of, model_version, scan_name = _from_file(target, args.scan)
    else:
        labels, volume_of, model_version, scan_name = _from_case(args.target, args)
    fmt = args.format
    if fmt == "nifti":
        from ctseg_core.io.images import write_labels

        if not is_image_file(args.out):
            raise CtsegError("a NIfTI export must end in .nii.gz or .nii (or .nrrd/.mha)", args.out)
        write_labels(labels, args.out)
    elif fmt == "dicom-seg":
        from ctseg_core.io.seg import write_dicom_seg

        volume = volume_of()
        if volume is None:
            raise CtsegError("a DICOM SEG needs the scan: give --scan with the DICOM folder", args.target)
        write_dicom_seg(labels, volume, args.out, model_version=model_version)
    elif fmt.startswith("lesions-"):
        from ctseg_core.measure import measure_scan
        from ctseg_core.measure.lesions import write_lesions_csv, write_lesions_json

        volume = volume_of()
        if volume is None:
            raise CtsegError("a lesion list needs the scan: give --scan with the DICOM folder or image", args.target)
        lesions = measure_scan(volume, labels).lesions
        (write_lesions_csv if fmt == "lesions-csv" else write_lesions_json)(lesions, args.out)
    else:
        from ctseg_core.findings import compute_findings, write_findings_csv, write_findings_json

        findings = compute_findings(labels, source=str(args.target), scan=scan_name)
        (write_findings_csv if fmt == "csv" else write_findings_json)(findings, args.out)
    print(f"wrote {args.out} ({fmt})", file=sys.stdout)
    return 0


def _load_scan(path):
    from ctseg_core.io import load_volume

    return load_volume(path) if path is not None else None


def _from_file(path: Path, scan):
    from ctseg_core.io.images import read_labels

    volume = _load_scan(scan)
    labels = read_labels(path, like=volume)  # refuses a map that does not fit the scan
    return labels, (lambda: volume), None, str(scan or "")


def _from_case(case_id: str, args):
    from ctseg_core.errors import StoreError
    from ctseg_core.store import Workspace

    case = Workspace(args.workspace, create=False).case(case_id)
    volume = _load_scan(args.scan)
    if args.source == "final":
        labels, model_version = case.load_final(volume), (case.record.model_version or None)
    else:
        labels, model_version = case.load_prediction(volume), (case.record.model_version or "unknown")
    if labels is None:
        raise StoreError(f"case {case_id} has no {args.source} label map yet", case.folder)
    return labels, (lambda: volume if volume is not None else case.load_volume()), model_version, \
        case.record.source.path
