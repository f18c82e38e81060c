"""``ctseg evaluate --data DIR --model CKPT [--model CKPT2 ...]``: score models on labelled scans.

DIR holds pairs ``<case>_ct.nii.gz`` + ``<case>_labels.nii.gz`` (as the synthetic generator writes
them). Prints per-class Dice laid out like Table I of the All Attention U-Net paper (rows: models,
columns: the seven classes), sample- and voxel-averaged, and scan-level detection scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctseg_core.io.labelled_cases import CT_SUFFIX, LABELS_SUFFIX, find_cases  # noqa: F401 (re-exported)


def evaluate(model_paths: list[Path], folder: Path, device: str = "auto", progress=print) -> list:
    """One ``EvaluationResult`` per model over the cases in ``folder``."""
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.metrics import EvaluationResult, detection_scores, overlap_counts, overlap_scores, scan_detection
    from ctseg_core.predictor import Predictor

    predictors = [Predictor.from_checkpoint(p, device=device) for p in model_paths]
    counts = [[] for _ in predictors]
    detected = [[] for _ in predictors]
    truth_detected = []
    for name, ct_path, labels_path in find_cases(folder):
        volume = read_volume(ct_path)
        truth = read_labels(labels_path, like=volume)
        truth_detected.append(scan_detection(truth))
        for i, predictor in enumerate(predictors):
            pred = predictor.predict(volume).labels
            counts[i].append(overlap_counts(pred, truth))
            detected[i].append(scan_detection(pred))
        if progress:
            progress(f"evaluated {name}")
    return [EvaluationResult(model=f"{p.stem} ({pr.card.architecture} v{pr.card.version})",
                             overlap=overlap_scores(c), detection=detection_scores(d, truth_detected))
            for p, pr, c, d in zip(model_paths, predictors, counts, detected)]


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


def _run(args) -> int:
    from ctseg_core.terminal import ProgressBar

    with ProgressBar(len(find_cases(args.data)), "evaluating", "case", enabled=not args.json) as bar:
        results = evaluate(args.model, args.data, args.device, progress=lambda text: bar.advance(1, text))
    if args.json:
        print(json.dumps({"data": str(args.data), "n_cases": results[0].overlap.n_scans,
                          "results": [r.as_dict() for r in results]}, indent=2))
        return 0
    n = results[0].overlap.n_scans
    print(format_table(results, "dice_sample", f"Dice per class, sample average over {n} scans (cf. Table I)"))
    print()
    print(format_table(results, "dice_voxel", "Dice per class, voxel average (all voxels pooled)"))
    print()
    print(format_detection(results))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="per-class Dice and detection of models on labelled scans",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder of *_ct.nii.gz + *_labels.nii.gz pairs")
    p.add_argument("--model", type=Path, action="append", required=True, help="checkpoint; repeat to compare")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
