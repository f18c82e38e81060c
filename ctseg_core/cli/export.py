"""``ctseg export CASE_OR_LABELS --format nifti|dicom-seg|csv|json|lesions-csv|lesions-json -o OUT``: export a
case's labels, its per-class findings (csv, json) or its lesion list (lesions-csv, lesions-json: each lesion
with volume, side, location, thickness, diameters; needs the scan).

CASE_OR_LABELS is a case folder (``<workspace>/cases/<id>``), a case id of the workspace (its final label
map, or the prediction with ``--source prediction``), or a label map file (NIfTI/NRRD/MHA; ``--scan`` is
then needed for DICOM SEG, and when given, the label map must lie on the scan's grid).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ctseg_core.cli import output_file
from ctseg_core.export import FORMATS


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a case's label map (NIfTI, DICOM SEG), findings or lesion list "
                              "(CSV, JSON)",
                              description=__doc__.splitlines()[0])
    p.add_argument("target", metavar="CASE_OR_LABELS",
                   help="a case folder, a case id in the workspace, or a label map file")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("-o", "--out", required=True, type=output_file, help="output file")
    p.add_argument("--workspace", type=Path, help="the workspace folder (default $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--scan", type=Path, help="the scan (DICOM folder or image file) the labels belong to")
    p.add_argument("--source", choices=("final", "prediction"), default="final",
                   help="which label map of a case to export (default: final)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.errors import CtsegError
    from ctseg_core.export import export_result
    from ctseg_core.io import is_image_file

    target = Path(args.target)
    findings = None
    if target.is_file() and is_image_file(target):
        labels, volume_of, model_version, scan_name = _from_file(target, args.scan)
    else:
        case = _open_case(args.target, args.workspace)
        labels, volume_of, model_version, scan_name = _from_case(case, args)
        if args.format in ("csv", "json"):
            findings = _case_findings(case, labels, args.source)
    volume = None
    if FORMATS[args.format].needs_scan:
        volume = volume_of()
        if volume is None:
            raise CtsegError(f"{FORMATS[args.format].title.lower()} needs the scan: give --scan with the DICOM "
                             "folder or image", args.target)
    export_result(args.format, args.out, labels, volume, model_version=model_version, findings=findings,
                  scan=scan_name, source=str(args.target))
    print(f"wrote {args.out} ({args.format})", file=sys.stdout)
    return 0


def _load_scan(path):
    from ctseg_core.io import load_volume

    return load_volume(path) if path is not None else None


def _from_file(path: Path, scan):
    from ctseg_core.io.images import read_labels

    volume = _load_scan(scan)
    labels = read_labels(path, like=volume)  # refuses a map that does not fit the scan
    return labels, (lambda: volume), None, str(scan or "")


def _open_case(target: str, workspace):
    """A case folder path (it holds case.json), else a case id of the workspace."""
    from ctseg_core.store import Case, Workspace
    from ctseg_core.store.case import CASE_JSON

    folder = Path(target)
    if folder.is_dir() and (folder / CASE_JSON).is_file():
        return Case(folder)
    return Workspace(workspace, create=False).case(target)


def _from_case(case, args):
    from ctseg_core.errors import StoreError

    volume = _load_scan(args.scan)
    if args.source == "final":
        labels, model_version = case.load_final(volume), (case.record.model_version or None)
    else:
        labels, model_version = case.load_prediction(volume), (case.record.model_version or "unknown")
    if labels is None:
        hint = " (the model's output: --source prediction)" if args.source == "final" else ""
        raise StoreError(f"case {case.id} has no {args.source} label map yet{hint}", case.folder)
    return labels, (lambda: volume if volume is not None else case.load_volume()), model_version, \
        case.record.source.path


def _case_findings(case, labels, source: str):
    """The findings of a case's map with the model's confidence (its stored prediction and uncertainty),
    each class's origin, the model's name and the review state."""
    from ctseg_core.findings import reviewed_findings
    from ctseg_core.store import TRAINING_STATUSES

    prediction = case.load_prediction()
    model = case.prediction_model()
    rec = case.record
    reviewed = rec.status in TRAINING_STATUSES  # a person settled the final map (corrected, adjudicated, approved)
    review = f"{rec.status.replace('_', ' ')}" + (f" by {rec.annotator}" if rec.annotator else "") if reviewed \
        else "not reviewed"
    return reviewed_findings(labels, None if prediction is None else prediction.array,
                             case.load_uncertainty() if prediction is not None else None,
                             model=model.label if model is not None else rec.model_version, review=review,
                             source=source, scan=rec.source.path)
