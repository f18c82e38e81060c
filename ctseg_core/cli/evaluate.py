"""``ctseg evaluate [--data DIR] [--normal-scan SCAN ...] --model M [--model M2 ...] [--members N]``:
score models side by side on the same scans.

Models are bundled names (``aa_unet``, ``blast_ct``) or checkpoints. DIR holds pairs ``<case>_ct.nii.gz`` +
``<case>_labels.nii.gz`` (as the synthetic generator writes them); ``--data`` may be repeated (e.g. scans with
hemorrhage and normal scans). Printed:
- per-class Dice laid out like Table I of the All Attention U-Net paper (rows: models whose classes are
  ctseg's seven), sample- and voxel-averaged; the sample average also over the scans that hold the class
  only, with the count of scans without the class that the model painted it on; and scan-level detection
  scores (any hemorrhage: accuracy, sensitivity, specificity, precision, F1; a class counts when present
  on 3+ consecutive slices). A model that gives per-slice probabilities instead of labels (RADnet) is
  scored on detection only: its call is 3+ consecutive slices with probability >= 0.5
  (``ctseg_core.triage``);
- Dice on the classes every model shares (``ctseg_core.comparison``: ICH, extra-axial = SDH+EDH+SAH,
  IVH, and all blood), with the blood volume painted against the truth: this is where a model with other
  classes (BLAST-CT: IPH, EAH, oedema, IVH) is compared;
- for each ``--normal-scan`` (a scan known to hold no hemorrhage, e.g. a DICOM folder), the volume each
  model paints per label: every voxel of blood there is a false positive (a triage model: its call);
- the time of each model on this machine, per scan and per slice (wall clock and CPU).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ctseg_core.cli.segment import add_guard_arguments, predictor_options
from ctseg_core.errors import CtsegError
from ctseg_core.io.labelled_cases import CT_SUFFIX, LABELS_SUFFIX, find_cases  # noqa: F401 (re-exported)


@dataclass
class ModelRun:
    """Everything measured for one model over the evaluated scans."""

    name: str
    predictor: object
    ctseg_classes: bool  # its labels are ctseg's seven classes (per-class Dice applies)
    counts: list = field(default_factory=list)  # OverlapCounts per labelled case (ctseg classes only)
    detected: list = field(default_factory=list)  # scan_detection per labelled case, or the triage call (bool)
    groups: list = field(default_factory=list)  # shared-group OverlapCounts per labelled case
    painted: list = field(default_factory=list)  # shared-group volumes (mL) per labelled case
    normal: list = field(default_factory=list)  # (scan, label volumes mL, blood mL) per normal scan
    seconds: list = field(default_factory=list)  # per scan, labelled and normal
    truth_volumes: list = field(default_factory=list)  # shared-group volumes (mL) of the truth per case
    triage: bool = False  # the model gives per-slice probabilities and no labels (scored on detection only)
    triage_calls: list = field(default_factory=list)  # (scan, Triage) per normal scan, triage models
    slices: int = 0
    cpu_seconds: float = 0.0

    def result(self, truth_detected):
        from ctseg_core.metrics import EvaluationResult, overlap_scores

        return EvaluationResult(model=self.name, overlap=None if self.triage else overlap_scores(self.counts),
                                detection=self.detection(truth_detected), timing=self.timing())

    def detection(self, truth_detected: list[dict]) -> dict:
        """Per-class and "any" detection scores; "any" only for a triage model (it names no class)."""
        from ctseg_core.metrics import ANY, DetectionScores, detection_scores

        if not self.triage:
            return detection_scores(self.detected, truth_detected)
        counts = [0, 0, 0, 0]
        for p, t in zip(self.detected, truth_detected):
            t = any(t.values())
            counts[0 if p and t else 1 if p else 2 if t else 3] += 1
        return {ANY: DetectionScores(*counts)}

    def timing(self) -> dict:
        n = max(self.slices, 1)
        return {"slices": self.slices, "wall_s_per_slice": round(sum(self.seconds) / n, 4),
                "cpu_s_per_slice": round(self.cpu_seconds / n, 4)}


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


def evaluate_models(models, folder=None, normal_scans=(), device: str = "auto", options=None,
                    progress=print) -> tuple[list[ModelRun], list]:
    """Run every model on every labelled case of ``folder`` (a folder, a list of folders, or None) and every
    normal scan; (runs, truth detections)."""
    from ctseg_core.comparison import group_counts, group_volumes_ml, label_volumes_ml
    from ctseg_core.io import load_volume
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.labels import CLASSES
    from ctseg_core.metrics import overlap_counts, scan_detection

    folders = [] if folder is None else [folder] if isinstance(folder, (str, Path)) else list(folder)
    cases = [case for f in folders for case in find_cases(Path(f))]
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
            if pred.triage is not None:
                run.triage = True
                run.detected.append(pred.triage.positive)
                continue
            if run.ctseg_classes:
                run.counts.append(overlap_counts(pred.labels, truth))
                run.detected.append(scan_detection(pred.labels))
            run.groups.append(group_counts(pred.labels, truth))
            run.painted.append(group_volumes_ml(pred.labels))
        if progress:
            progress(f"evaluated {name}")
    for scan in normal_scans:
        volume = load_volume(scan)
        for run in runs:
            pred = _timed(run, volume)
            if pred.triage is not None:
                run.triage = True
                run.triage_calls.append((str(scan), pred.triage))
                continue
            volumes = label_volumes_ml(pred.labels)
            run.normal.append((str(scan), volumes, group_volumes_ml(pred.labels)["blood"]))
        if progress:
            progress(f"evaluated {scan} (no hemorrhage)")
    for run in runs:
        run.truth_volumes = list(truth_volumes)
    return runs, truth_detected


def output_labels(predictor) -> list[int]:
    from ctseg_core.labels import output_label_values

    return output_label_values(predictor.card.classes)


def _timed(run: ModelRun, volume):
    """The model's ``Prediction`` of ``volume``; its wall and CPU time and the slices are added to ``run``."""
    t0, c0 = time.perf_counter(), time.process_time()
    pred = run.predictor.predict(volume)
    run.seconds.append(time.perf_counter() - t0)
    run.cpu_seconds += time.process_time() - c0
    run.slices += volume.shape[0]
    return pred


def evaluate(model_paths: list[Path], folder, device: str = "auto", progress=print) -> list:
    """One ``EvaluationResult`` per model with ctseg's classes over the cases in ``folder`` (a folder or a
    list of folders)."""
    runs, truth_detected = evaluate_models(model_paths, folder, device=device, progress=progress)
    return [r.result(truth_detected) for r in runs if r.ctseg_classes]


def format_table(results: list, field: str, title: str) -> str:
    from ctseg_core.labels import LESION_CLASSES

    width = max([len(r.model) for r in results] + [5]) + 2
    head = f"{'model':<{width}}" + "".join(f"{column_name(c):>8}" for c in LESION_CLASSES) + f"{'mean':>8}"
    lines = [title, head, "-" * len(head)]
    for r in results:
        if r.overlap is None:
            lines.append(f"{r.model:<{width}}" + "".join(_cell(float("nan")) for _ in range(len(LESION_CLASSES) + 1))
                         + "   (no labels: slice triage)")
            continue
        values = getattr(r.overlap, field)
        row = [values[c.id] for c in LESION_CLASSES]
        present = [v for v in row if v == v]  # drop NaN
        mean = sum(present) / len(present) if present else float("nan")
        lines.append(f"{r.model:<{width}}" + "".join(_cell(v) for v in row) + _cell(mean))
    return "\n".join(lines)


def format_false_alarms(results: list) -> str:
    """Per class: of the scans without it, how many the model painted it on (what ``dice_present`` leaves out)."""
    from ctseg_core.labels import LESION_CLASSES

    width = max([len(r.model) for r in results] + [5]) + 2
    head = f"{'model':<{width}}" + "".join(f"{column_name(c):>8}" for c in LESION_CLASSES)
    lines = ["Scans without the class that the model painted it on (of the scans without it)", head, "-" * len(head)]
    for r in results:
        if r.overlap is None:
            continue
        o = r.overlap
        lines.append(f"{r.model:<{width}}" + "".join(f"{f'{o.painted_free[c.id]}/{o.free[c.id]}':>8}"
                                                      for c in LESION_CLASSES))
    return "\n".join(lines)


def format_detection(results: list) -> str:
    from ctseg_core.labels import LESION_CLASSES
    from ctseg_core.metrics import ANY

    width = max([len(r.model) for r in results] + [5]) + 2
    head = (f"{'model':<{width}}{'acc':>7}{'sens':>7}{'spec':>7}{'prec':>7}{'F1':>7}   F1 per class: "
            + " ".join(column_name(c) for c in LESION_CLASSES))
    lines = ["Scan-level detection (any hemorrhage; a class counts when on 3+ consecutive slices)", head,
             "-" * len(head)]
    for r in results:
        a = r.detection[ANY]
        per_class = " ".join(_short(r.detection[c.id].f1) if c.id in r.detection else "-" for c in LESION_CLASSES)
        lines.append(f"{r.model:<{width}}{_short(a.accuracy):>7}{_short(a.recall):>7}{_short(a.specificity):>7}"
                     f"{_short(a.precision):>7}{_short(a.f1):>7}   {per_class}")
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
        for scan, triage in r.triage_calls:  # a triage model paints nothing: its call is what can be wrong
            lines.append(f"{r.name:<{width}}{Path(scan).name[:17]:<18}triage {triage.describe()}")
    return "\n".join(lines)


def format_times(runs: list[ModelRun]) -> str:
    import torch

    width = max([len(r.name) for r in runs] + [5]) + 2
    head = f"{'model':<{width}}{'s/scan':>9}{'wall s/slice':>14}{'CPU s/slice':>13}"
    lines = [f"Inference time on this machine ({runs[0].predictor.device}, {torch.get_num_threads()} threads; "
             "whole scans through the Predictor, mean per scan and per slice)", head, "-" * len(head)]
    for r in runs:
        t = r.timing()
        lines.append(f"{r.name:<{width}}{sum(r.seconds) / len(r.seconds):>9.1f}{t['wall_s_per_slice']:>14.3f}"
                     f"{t['cpu_s_per_slice']:>13.3f}")
    return "\n".join(lines)


def _run(args) -> int:
    from ctseg_core.metrics import overlap_scores

    options = predictor_options(args)
    runs, truth_detected = evaluate_models(args.model, args.data, args.normal_scan, args.device, options,
                                           progress=None if args.json else print)
    segmenting = [r for r in runs if not r.triage]
    labelled = runs[0].truth_volumes != []
    results = [r.result(truth_detected) for r in runs if r.ctseg_classes and labelled]
    if args.json:
        print(json.dumps({
            "data": [str(d) for d in args.data], "n_cases": len(truth_detected),
            "results": [r.as_dict() for r in results],
            "shared_classes": [{"model": r.name, "overlap": overlap_scores(r.groups).as_dict(include_background=False),
                                "painted_ml": r.painted, "true_ml": r.truth_volumes}
                               for r in segmenting if labelled],
            "normal_scans": [{"model": r.name, "scan": scan, "volumes_ml": v, "blood_ml": blood}
                             for r in runs for scan, v, blood in r.normal]
            + [{"model": r.name, "scan": scan, "triage": t.to_json()} for r in runs for scan, t in r.triage_calls],
            "seconds_per_scan": {r.name: sum(r.seconds) / len(r.seconds) for r in runs},
        }, indent=2))
        return 0
    if results:
        n = len(truth_detected)
        print(format_table(results, "dice_sample", f"Dice per class, sample average over {n} scans (cf. Table I; "
                                                   "a scan without the class that the model paints scores 0)"))
        print()
        print(format_table(results, "dice_present", "Dice per class, sample average over the scans that hold "
                                                    "the class only (MONAI's ignore_empty)"))
        print()
        print(format_false_alarms(results))
        print()
        print(format_table(results, "dice_voxel", "Dice per class, voxel average (all voxels pooled)"))
        print()
        print(format_detection(results))
        print()
    if labelled and segmenting:
        print(format_groups(segmenting))
        print()
    if args.normal_scan:
        print(format_normal(runs))
        print()
    print(format_times(runs))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score models side by side on labelled and normal scans",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, action="append", default=[],
                   help="folder of *_ct.nii.gz + *_labels.nii.gz pairs; repeat to add folders")
    p.add_argument("--normal-scan", type=Path, action="append", default=[],
                   help="a scan without hemorrhage (DICOM folder or image); repeat for several")
    p.add_argument("--model", action="append", required=True,
                   help="aa_unet, blast_ct, or a checkpoint; repeat to compare")
    p.add_argument("--members", type=int, help="ensemble members to run (blast_ct: 1-12; default all)")
    add_guard_arguments(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
