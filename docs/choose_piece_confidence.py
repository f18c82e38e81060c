"""How the guard's unsure-piece threshold on a model card (``ModelCard.guard``, rule 4 of ctseg_core.guard)
was chosen, on held-out generated cases the model never trained on.

    .venv/bin/python docs/choose_piece_confidence.py MODEL --choose FIRST_SET --check SECOND_SET \
        --check THIRD_SET --normal-scan ../shared/data/dicom/ge_head_tilt [--write]

1. The model runs through the Predictor with the guard's other rules (and no threshold of its own); every
   3-D piece of a class it leaves is recorded: its volume, the mean probability of its class, and how much
   of it is that class in the truth.
2. For thresholds 0.80, 0.82, ... 0.98, each set is scored as if the pieces under the threshold were removed:
   the Table-I-style sample-averaged Dice, the findings lost (a scan's class that the model found, at least
   in part, and no longer finds), the true and the false volume removed; on the normal scans the volume
   still painted.
3. The choice, made on the ``--choose`` set alone: the highest threshold at which no finding of that set is
   lost, one step lower as a margin. The ``--check`` sets and the normal scans then show what it does on
   cases that played no part in the choice.
``--write`` puts the choice on the model's card (the weights are not touched). Nothing here downloads anything.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ctseg_core.checkpoint import checkpoint_paths, read_card
from ctseg_core.guard import Guard, piece_confidences
from ctseg_core.io import load_volume
from ctseg_core.io.images import read_labels, read_volume
from ctseg_core.io.labelled_cases import find_cases
from ctseg_core.predictor import Predictor
from ctseg_core.atomic import atomic_write_text

THRESHOLDS = [round(0.80 + 0.02 * i, 2) for i in range(10)]
CLASSES = range(1, 8)


@dataclass
class Piece:
    cls: int
    ml: float
    mean: float  # mean probability of its class
    true_ml: float  # of it, that class in the truth


@dataclass
class Scan:
    name: str
    truth_ml: dict  # class -> mL in the truth (all 0 on a normal scan)
    pieces: list


def measure(predictor: Predictor, volume, truth: np.ndarray, name: str) -> Scan:
    pred = predictor.predict(volume)
    labels, channels = pred.labels.array, list(pred.channel_labels)
    voxel_ml = float(np.prod(volume.spacing)) / 1000
    pieces = []
    for cls in CLASSES:
        found, means = piece_confidences(labels, pred.probabilities[:, channels.index(cls)], cls)
        ids = np.arange(1, len(means) + 1)
        sizes = np.bincount(found.ravel(), minlength=len(means) + 1)[1:]
        true = ndi.sum_labels(truth == cls, found, ids)
        pieces += [Piece(cls, float(s * voxel_ml), float(m), float(t * voxel_ml)) for s, m, t in zip(sizes, means, true)]
    return Scan(name, {c: float((truth == c).sum() * voxel_ml) for c in CLASSES}, pieces)


def measure_set(predictor: Predictor, folder: Path) -> list[Scan]:
    scans = []
    for name, ct, lab in find_cases(folder):
        volume = read_volume(ct)
        scans.append(measure(predictor, volume, read_labels(lab, like=volume).array, name))
        print(f"  {folder.name}/{name}: {len(scans[-1].pieces)} pieces", flush=True)
    return scans


def score(scans: list[Scan], t: float) -> dict:
    """The set as if pieces under ``t`` were removed."""
    dice, lost, true_removed, false_removed = [], 0, 0.0, 0.0
    for scan in scans:
        row = []
        for cls in CLASSES:
            mine = [p for p in scan.pieces if p.cls == cls]
            kept = [p for p in mine if p.mean >= t]
            tp, painted, truth = sum(p.true_ml for p in kept), sum(p.ml for p in kept), scan.truth_ml[cls]
            row.append(np.nan if painted + truth == 0 else 2 * tp / (painted + truth))
            lost += any(p.true_ml > 0 for p in mine) and not any(p.true_ml > 0 for p in kept)
            true_removed += sum(p.true_ml for p in mine if p.mean < t)
            false_removed += sum(p.ml - p.true_ml for p in mine if p.mean < t)
        dice.append(row)
    with warnings.catch_warnings():  # a class no scan of the set holds nor is painted with: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_class = np.nanmean(np.array(dice, float), axis=0)
    return {"dice": float(np.nanmean(per_class)), "per_class": per_class.round(3).tolist(), "lost": int(lost),
            "true_removed_ml": round(true_removed, 2), "false_removed_ml": round(false_removed, 2)}


def painted_ml(scans: list[Scan], t: float) -> float:
    return round(sum(p.ml for s in scans for p in s.pieces if p.mean >= t), 2)


def choose(scans: list[Scan]) -> float:
    safe = [t for t in THRESHOLDS if score(scans, t)["lost"] == 0]
    best = max(safe) if safe else 0.0
    return round(best - 0.02, 2) if best > THRESHOLDS[0] else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--choose", type=Path, required=True)
    ap.add_argument("--check", type=Path, action="append", default=[])
    ap.add_argument("--normal-scan", type=Path, action="append", default=[])
    ap.add_argument("--write", action="store_true", help="put the chosen threshold on the model's card")
    args = ap.parse_args()
    predictor = Predictor.from_checkpoint(args.model, device="cpu", guard=Guard(min_piece_confidence=0))
    sets = {folder.name: measure_set(predictor, folder) for folder in [args.choose, *args.check]}
    normal = [measure(predictor, v, np.zeros(v.shape, np.uint8), str(p))
              for p, v in ((p, load_volume(p)) for p in args.normal_scan)]
    chosen = choose(sets[args.choose.name])
    print(f"\n{'threshold':>9} " + " ".join(f"{n[:10]:>34}" for n in sets) + ("   normal mL" if normal else ""))
    for t in [0.0, *THRESHOLDS]:
        cells = []
        for scans in sets.values():
            s = score(scans, t)
            cells.append(f"{s['dice']:.3f} lost {s['lost']} true {s['true_removed_ml']:5.2f} false {s['false_removed_ml']:6.2f}")
        mark = "  <- chosen" if t == chosen else ""
        print(f"{t:>9.2f} " + " ".join(f"{c:>34}" for c in cells) + (f"   {painted_ml(normal, t):9.2f}" if normal else "") + mark)
    pooled = [s for scans in sets.values() for s in scans]
    print(f"all {len(pooled)} scans: {score(pooled, 0)['dice']:.3f} -> {score(pooled, chosen)['dice']:.3f} at {chosen}"
          f" (per class {score(pooled, chosen)['per_class']})")
    if args.write:
        write_choice(Path(args.model), chosen, args.choose.name, [f.name for f in args.check])


def write_choice(model: Path, chosen: float, choose_set: str, check_sets: list[str]) -> None:
    card = read_card(model)
    card.guard = {"min_piece_confidence": chosen,
                  "chosen": f"{date.today().isoformat()} by docs/choose_piece_confidence.py on the held-out generated "
                            f"set {choose_set} (the highest threshold losing none of its findings, one step lower); "
                            f"checked on {', '.join(check_sets) or 'no other set'}"}
    _, card_path = checkpoint_paths(model)
    atomic_write_text(card_path, card.to_json())
    print(f"wrote min_piece_confidence {chosen} to {card_path}")


if __name__ == "__main__":
    main()
