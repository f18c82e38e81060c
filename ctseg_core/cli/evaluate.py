"""``ctseg evaluate [--data DIR] [--normal-scan SCAN ...] --model M [--model M2 ...] [--members N]``:
score models side by side on the same scans.

Models are bundled names (``aa_unet``, ``blast_ct``) or checkpoints. DIR holds pairs ``<case>_ct.nii.gz`` +
``<case>_labels.nii.gz`` (as the synthetic generator writes them). Printed:
- per-class Dice laid out like Table I of the All Attention U-Net paper (rows: models whose classes are
  ctseg's seven), sample- and voxel-averaged, and scan-level detection scores;
- Dice on the classes every model shares (``ctseg_core.comparison``: ICH, extra-axial = SDH+EDH+SAH,
  IVH, and all blood), with the blood volume painted against the truth: this is where a model with other
  classes (BLAST-CT: IPH, EAH, oedema, IVH) is compared;
- for each ``--normal-scan`` (a scan known to hold no hemorrhage, e.g. a DICOM folder), the volume each
  model paints per label: every voxel of blood there is a false positive;
- the mean time per scan of each model on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ctseg_core.errors import CtsegError
from ctseg_core.io.labelled_cases import CT_SUFFIX, LABELS_SUFFIX, find_cases  # noqa: F401 (re-exported)


@dataclass
class ModelRun:
    """Everything measured for one model over the evaluated scans."""

    name: str
    predictor: object
    ctseg_classes: bool  # its labels are ctseg's seven classes (per-class Dice applies)
    counts: list = field(default_factory=list)  # OverlapCounts per labelled case (ctseg classes only)
    detected: list = field(default_factory=list)
    groups: list = field(default_factory=list)  # shared-group OverlapCounts per labelled case
    painted: list = field(default_factory=list)  # shared-group volumes (mL) per labelled case
    normal: list = field(default_factory=list)  # (scan, label volumes mL, blood mL) per normal scan
    seconds: list = field(default_factory=list)  # per scan, labelled and normal
    truth_volumes: list = field(default_factory=list)  # shared-group volumes (mL) of the truth per case

    def result(self, truth_detected):
        from ctseg_core.metrics import EvaluationResult, detection_scores, overlap_scores

        return EvaluationResult(model=self.name, overlap=overlap_scores(self.counts),
                                detection=detection_scores(self.detected, truth_detected))


def load_predictors(models, device: str = "auto", options: dict | None = None) -> list:
    """One Predictor per model (a bundled name or a checkpoint); ``options`` go to the models they fit."""
    from ctseg_core.checkpoint import load_checkpoint
    from ctseg_core.predictor import Predictor, applicable_options
    from ctseg_core.resources import model_path

    predictors = []
    for m in models:
        path = model_path(m)
        model, card = load_checkpoint(path, device="cpu")
        predictor = Predictor(model, card, device=device, **applicable_options(card, options or {}))
        predictor.source_path = path
        predictors.append(predictor)
    return predictors


def run_name(predictor) -> str:
    card, detail = predictor.card, predictor.strategy.describe()
    return f"{Path(predictor.source_path).stem} ({card.architecture} v{card.version}" + \
        (f", {detail})" if detail else ")")


def evaluate_models(models, folder: Path | None = None, normal_scans=(), device: str = "auto", options=None,
                    progress=print) -> tuple[list[ModelRun], list]:
    """Run every model on every labelled case of ``folder`` and every normal scan; (runs, truth detections)."""
    from ctseg_core.comparison import group_counts, group_volumes_ml, label_volumes_ml
    from ctseg_core.io import load_volume
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.labels import CLASSES
    from ctseg_core.metrics import overlap_counts, scan_detection

    cases = find_cases(folder) if folder is not None else []
    if not cases and not normal_scans:
        raise CtsegError("nothing to evaluate: give --data and/or --normal-scan")
    runs = [ModelRun(run_name(p), p, set(output_labels(p)) <= {c.id for c in CLASSES})
            for p in load_predictors(models, device, options)]
    truth_detected, truth_volumes = [], []
    for name, ct_path, labels_path in cases:
        volume = read_volume(ct_path)
        truth = read_labels(labels_path, like=volume)
        truth_detected.append(scan_detection(truth))
        truth_volumes.append(group_volumes_ml(truth))
        for run in runs:
            pred = _timed(run, volume)
            if run.ctseg_classes:
                run.counts.append(overlap_counts(pred, truth))
                run.detected.append(scan_detection(pred))
            run.groups.append(group_counts(pred, truth))
            run.painted.append(group_volumes_ml(pred))
        if progress:
            progress(f"evaluated {name}")
    for scan in normal_scans:
        volume = load_volume(scan)
        for run in runs:
            pred = _timed(run, volume)
            volumes = label_volumes_ml(pred)
            run.normal.append((str(scan), volumes, group_volumes_ml(pred)["blood"]))
        if progress:
            progress(f"evaluated {scan} (no hemorrhage)")
    for run in runs:
        run.truth_volumes = list(truth_volumes)
    return runs, truth_detected


def output_labels(predictor) -> list[int]:
    from ctseg_core.labels import output_label_values

    return output_label_values(predictor.card.classes)


def _timed(run: ModelRun, volume):
    t0 = time.perf_counter()
    labels = run.predictor.predict(volume).labels
    run.seconds.append(time.perf_counter() - t0)
    return labels


def evaluate(model_paths: list[Path], folder: Path, device: str = "auto", progress=print) -> list:
    """One ``EvaluationResult`` per model over the cases in ``folder`` (models with ctseg's classes)."""
    runs, truth_detected = evaluate_models(model_paths, folder, device=device, progress=progress)
    return [r.result(truth_detected) for r in runs if r.ctseg_classes]


def format_table(results: list, field: str, title: str) -> str:
    from ctseg_core.labels import LESION_CLASSES

    width = max([len(r.model) for r in results] + [5]) + 2
    head = f"{'model':<{width}}" + "".join(f"{column_name(c):>8}" for c in LESION_CLASSES) + f"{'mean':>8}"
    lines = [title, head, "-" * len(head)]
    for r in results:
        values = getattr(r.overlap, field)
        row = [values[c.id] for c in LESION_CLASSES]
        present = [v for v in row if v == v]  # drop NaN
        mean = sum(present) / len(present) if present else float("nan")
        lines.append(f"{r.model:<{width}}" + "".join(_cell(v) for v in row) + _cell(mean))
    return "\n".join(lines)


def format_detection(results: list) -> str:
    from ctseg_core.labels import LESION_CLASSES
    from ctseg_core.metrics import ANY

    width = max([len(r.model) for r in results] + [5]) + 2
    head = (f"{'model':<{width}}{'acc':>7}{'recall':>8}{'prec':>7}{'F1':>7}   F1 per class: "
            + " ".join(column_name(c) for c in LESION_CLASSES))
    lines = ["Scan-level detection (any hemorrhage; a class counts when on 3+ consecutive slices)", head,
             "-" * len(head)]
    for r in results:
        a = r.detection[ANY]
        per_class = " ".join(_short(r.detection[c.id].f1) for c in LESION_CLASSES)
        lines.append(f"{r.model:<{width}}{_short(a.accuracy):>7}{_short(a.recall):>8}{_short(a.precision):>7}"
                     f"{_short(a.f1):>7}   {per_class}")
    return "\n".join(lines)


def column_name(cls) -> str:
    """A class's short column title: its key in capitals, at most 6 letters (PNEUMO)."""
    return cls.key.upper()[:6]


def _cell(v: float) -> str:
    return f"{v:>8.3f}" if v == v else f"{'-':>8}"


def _short(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_groups(runs: list[ModelRun]) -> str:
    from ctseg_core.comparison import BLOOD, GROUP_KEYS
    from ctseg_core.metrics import overlap_scores

    n = len(runs[0].groups)
    width = max([len(r.name) for r in runs] + [5]) + 2
    head = (f"{'model':<{width}}" + "".join(f"{k.upper():>8}" for k in (*GROUP_KEYS, BLOOD))
            + f"{'blood mL painted/true':>24}")
    lines = [f"Dice on the shared classes, sample average over {n} scans (ICH = BLAST-CT IPH; EAH = SDH+EDH+SAH "
             "= BLAST-CT EAH; blood = every hemorrhage class)", head, "-" * len(head)]
    for r in runs:
        dice = overlap_scores(r.groups).dice_sample
        painted = sum(v[BLOOD] for v in r.painted) / n
        true = sum(v[BLOOD] for v in r.truth_volumes) / n
        lines.append(f"{r.name:<{width}}" + "".join(_cell(v) for v in dice[1:])
                     + f"{painted:>15.1f} / {true:.1f}")
    return "\n".join(lines)


def format_normal(runs: list[ModelRun]) -> str:
    from ctseg_core.labels import LABEL_CLASSES

    keys = [c.key for c in LABEL_CLASSES[1:]]
    width = max([len(r.name) for r in runs] + [5]) + 2
    head = (f"{'model':<{width}}{'scan':<18}" + "".join(f"{k.upper()[:6]:>8}" for k in keys)
            + f"{'blood':>8}")
    lines = ["Volume painted (mL) on scans without hemorrhage: all blood there is false positive "
             "(OEDEMA and PNEUMO are not blood)", head, "-" * len(head)]
    for r in runs:
        for scan, volumes, blood in r.normal:
            lines.append(f"{r.name:<{width}}{Path(scan).name[:17]:<18}"
                         + "".join(f"{volumes[k]:>8.1f}" for k in keys) + f"{blood:>8.1f}")
    return "\n".join(lines)


def format_times(runs: list[ModelRun]) -> str:
    import torch

    width = max([len(r.name) for r in runs] + [5]) + 2
    lines = [f"Time per scan ({runs[0].predictor.device}, {torch.get_num_threads()} threads)"]
    for r in runs:
        mean = sum(r.seconds) / len(r.seconds)
        lines.append(f"{r.name:<{width}}{mean:>8.1f} s (mean of {len(r.seconds)})")
    return "\n".join(lines)


def _run(args) -> int:
    from ctseg_core.metrics import overlap_scores

    options = {"members": args.members} if args.members else {}
    if args.no_guard:
        options["guard"] = None
    runs, truth_detected = evaluate_models(args.model, args.data, args.normal_scan, args.device, options,
                                           progress=None if args.json else print)
    labelled = runs[0].groups != []
    results = [r.result(truth_detected) for r in runs if r.ctseg_classes and labelled]
    if args.json:
        print(json.dumps({
            "data": str(args.data) if args.data else None, "n_cases": len(runs[0].groups),
            "results": [r.as_dict() for r in results],
            "shared_classes": [{"model": r.name, "overlap": overlap_scores(r.groups).as_dict(include_background=False),
                                "painted_ml": r.painted, "true_ml": r.truth_volumes} for r in runs if labelled],
            "normal_scans": [{"model": r.name, "scan": scan, "volumes_ml": v, "blood_ml": blood}
                             for r in runs for scan, v, blood in r.normal],
            "seconds_per_scan": {r.name: sum(r.seconds) / len(r.seconds) for r in runs},
        }, indent=2))
        return 0
    if results:
        n = results[0].overlap.n_scans
        print(format_table(results, "dice_sample", f"Dice per class, sample average over {n} scans (cf. Table I)"))
        print()
        print(format_table(results, "dice_voxel", "Dice per class, voxel average (all voxels pooled)"))
        print()
        print(format_detection(results))
        print()
    if labelled:
        print(format_groups(runs))
        print()
    if args.normal_scan:
        print(format_normal(runs))
        print()
    print(format_times(runs))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score models side by side on labelled and normal scans",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="folder of *_ct.nii.gz + *_labels.nii.gz pairs")
    p.add_argument("--normal-scan", type=Path, action="append", default=[],
                   help="a scan without hemorrhage (DICOM folder or image); repeat for several")
    p.add_argument("--model", action="append", required=True,
                   help="aa_unet, blast_ct, or a checkpoint; repeat to compare")
    p.add_argument("--members", type=int, help="ensemble members to run (blast_ct: 1-12; default all)")
    p.add_argument("--no-guard", action="store_true",
                   help="slice models without the anatomical guard (the model's raw labels; on by default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
