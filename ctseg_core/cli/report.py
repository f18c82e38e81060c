"""``ctseg report SCAN_OR_CASE -o OUTDIR``: measure a scan's labels and write the report folder.

SCAN_OR_CASE is a case id of the workspace (its final label map, or ``--source prediction``) or a scan
(DICOM folder or image file) with ``--labels LABELS.nii.gz`` on its grid (without it: an empty map, so the
midline shift alone). The folder gets report.html
(one page, key images, "not for clinical use"), measurements.json, lesions.csv and, for a DICOM scan, the
DICOM SEG and beside it the DICOM SR measurement report (TID 1500). ``--prior`` (a case id, or a scan with
``--prior-labels``) adds the change since that scan: rigid registration on the skull, per-class and
per-lesion volume change, new lesions, the ICH expansion criterion.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="measure a scan's labels; write report.html, measurements, DICOM SR",
                              description=__doc__.splitlines()[0])
    p.add_argument("target", metavar="SCAN_OR_CASE", help="a case id in the workspace, or a DICOM folder / image file")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--labels", type=Path, help="label map of the scan (NIfTI/NRRD/MHA on its grid)")
    p.add_argument("--workspace", type=Path, help="the workspace folder (default $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--source", choices=("final", "prediction"), default="final",
                   help="which label map of a case (default: final)")
    p.add_argument("--prior", help="the earlier scan: a case id, or a DICOM folder / image file with --prior-labels")
    p.add_argument("--prior-labels", type=Path, help="label map of the prior scan")
    p.add_argument("--seg", type=Path, help="an existing DICOM SEG of these labels for the SR to refer to")
    p.add_argument("--model-version", help="the model version that made the labels (default: the case's)")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.measure import measure_scan
    from ctseg_core.report import write_report

    volume, labels, model_version, scan, source = _load(args.target, args.labels, args, empty_ok=True)
    model_version = args.model_version or model_version
    growth = None
    if args.prior:
        from ctseg_core.measure.growth import compare_scans

        p_volume, p_labels, *_ = _load(args.prior, args.prior_labels, args)
        print("aligning the prior scan with this one (rigid, skull)...", file=sys.stderr)
        growth = compare_scans(p_volume, p_labels, volume, labels)
    measurements = measure_scan(volume, labels, source=source, scan=scan)
    files = write_report(args.out, volume, labels, measurements=measurements, model_version=model_version,
                         model=model_version or "", scan=scan, labels_source=source, growth=growth, seg_path=args.seg)
    if args.json:
        data = measurements.to_dict()
        if growth is not None:
            data["growth"] = growth.to_dict()
        print(json.dumps(data, indent=2))
    else:
        print(measurements.midline.summary())
        for les in measurements.lesions.lesions:
            thick = f", {les.thickness.mm:.1f} mm thick" if les.thickness else ""
            print(f"  {les.label}: {les.volume_ml:.2f} mL{thick}")
        if growth is not None:
            print("ICH expansion criterion " + ("met" if growth.ich_expansion else "not met")
                  + f"; new lesions: {len(growth.new_lesions)}")
    for path in (files.html, files.json, files.csv, files.seg, files.sr):
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)
    for note in files.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _load(target: str, labels_path: Path | None, args, empty_ok: bool = False):
    """(volume, labels, model version, scan name, labels source) of a case id or a scan + label file."""
    from ctseg_core.errors import CtsegError
    from ctseg_core.io import load_volume
    from ctseg_core.io.images import read_labels
    from ctseg_core.volume import LabelMap

    path = Path(target)
    if path.exists():
        if labels_path is None and not empty_ok:
            raise CtsegError("the prior scan needs its label map: give --prior-labels", path)
        volume = load_volume(path)
        if labels_path is None:  # nothing labelled: the midline shift and an empty lesion list
            print("note: no --labels given: measuring an empty label map (midline shift only)", file=sys.stderr)
            return volume, LabelMap.empty_like(volume), None, str(path), "none (no labels given)"
        return volume, read_labels(labels_path, like=volume), None, str(path), labels_path.name
    from ctseg_core.errors import StoreError
    from ctseg_core.store import Workspace

    case = Workspace(args.workspace).case(target)
    volume = case.load_volume()
    if args.source == "final":
        labels, version = case.load_final(volume), case.record.model_version or None
    else:
        labels, version = case.load_prediction(volume), case.record.model_version or "unknown"
    if labels is None:
        raise StoreError(f"case {target} has no {args.source} label map yet", case.folder)
    return volume, labels, version, case.record.source.path, args.source
