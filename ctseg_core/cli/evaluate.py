"""``ctseg evaluate --data DIR --model CKPT [--model CKPT2 ...]``: score models on labelled scans.

DIR holds pairs ``<case>_ct.nii.gz`` + ``<case>_labels.nii.gz`` (as the synthetic generator writes
them); ``--data`` may be repeated (e.g. scans with hemorrhage and normal scans). Prints per-class Dice
laid out like Table I of the All Attention U-Net paper (rows: models, columns: the seven classes),
sample- and voxel-averaged, scan-level detection scores (any hemorrhage: accuracy, sensitivity,
specificity, precision, F1; a class counts when present on 3+ consecutive slices) and the inference time
per slice on this machine. A model that gives per-slice probabilities instead of labels (RADnet) is scored
on detection only: its call is 3+ consecutive slices with probability >= 0.5 (``ctseg_core.triage``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ctseg_core.io.labelled_cases import CT_SUFFIX, LABELS_SUFFIX, find_cases  # noqa: F401 (re-exported)


def evaluate(model_paths: list[Path], folder, device: str = "auto", progress=print) -> list:
    """One ``EvaluationResult`` per model over the cases in ``folder`` (a folder or a list of folders)."""
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.metrics import EvaluationResult, overlap_scores, scan_detection
    from ctseg_core.predictor import Predictor

    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    cases = [case for f in folders for case in find_cases(Path(f))]
    predictors = [Predictor.from_checkpoint(p, device=device) for p in model_paths]
    runs = [ModelRun() for _ in predictors]
    truth_detected = []
    for name, ct_path, labels_path in cases:
        volume = read_volume(ct_path)
        truth = read_labels(labels_path, like=volume)
        truth_detected.append(scan_detection(truth))
        for run, predictor in zip(runs, predictors):
            run.add(predictor, volume, truth)
        if progress:
            progress(f"evaluated {name}")
    return [EvaluationResult(model=f"{p.stem} ({pr.card.architecture} v{pr.card.version})",
                             overlap=overlap_scores(run.counts) if run.counts else None,
                             detection=run.detection(truth_detected), timing=run.timing())
            for p, pr, run in zip(model_paths, predictors, runs)]


class ModelRun:
    """One model's results over the cases: overlap counts (segmentation models), scan calls, timing."""

    def __init__(self):
        self.counts, self.detected, self.slices = [], [], 0
        self.wall_s = self.cpu_s = 0.0
        self.triage = False

    def add(self, predictor, volume, truth) -> None:
        from ctseg_core.metrics import overlap_counts, scan_detection

        t0, c0 = time.perf_counter(), time.process_time()
        pred = predictor.predict(volume)
        self.wall_s += time.perf_counter() - t0
        self.cpu_s += time.process_time() - c0
        self.slices += volume.shape[0]
        if pred.triage is not None:
            self.triage = True
            self.detected.append(pred.triage.positive)
        else:
            self.counts.append(overlap_counts(pred.labels, truth))
            self.detected.append(scan_detection(pred.labels))

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
        return {"slices": self.slices, "wall_s_per_slice": round(self.wall_s / n, 4),
                "cpu_s_per_slice": round(self.cpu_s / n, 4)}


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


def format_timing(results: list) -> str:
    width = max([len(r.model) for r in results] + [5]) + 2
    head = f"{'model':<{width}}{'wall s/slice':>14}{'CPU s/slice':>13}"
    lines = ["Inference time per slice on this machine (whole scans through the Predictor)", head, "-" * len(head)]
    for r in results:
        t = r.timing
        lines.append(f"{r.model:<{width}}{t['wall_s_per_slice']:>14.3f}{t['cpu_s_per_slice']:>13.3f}")
    return "\n".join(lines)


def column_name(cls) -> str:
    """A class's short column title: its key in capitals, at most 6 letters (PNEUMO)."""
    return cls.key.upper()[:6]


def _cell(v: float) -> str:
    return f"{v:>8.3f}" if v == v else f"{'-':>8}"


def _short(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _run(args) -> int:
    results = evaluate(args.model, args.data, args.device, progress=None if args.json else print)
    n = len([c for f in args.data for c in find_cases(f)])
    if args.json:
        print(json.dumps({"data": [str(d) for d in args.data], "n_cases": n,
                          "results": [r.as_dict() for r in results]}, indent=2))
        return 0
    print(format_table(results, "dice_sample", f"Dice per class, sample average over {n} scans (cf. Table I)"))
    print()
    print(format_table(results, "dice_voxel", "Dice per class, voxel average (all voxels pooled)"))
    print()
    print(format_detection(results))
    print()
    print(format_timing(results))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="per-class Dice and detection of models on labelled scans",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="folder of *_ct.nii.gz + *_labels.nii.gz pairs; repeat to add folders")
    p.add_argument("--model", type=Path, action="append", required=True, help="checkpoint; repeat to compare")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
