"""Choosing a model's unsure-piece threshold (the guard's rule 4, ``ModelCard.guard["min_piece_confidence"]``)
on labelled scans the model never trained on. ``ctseg choose-piece-confidence`` runs it.

1. The model runs through the Predictor with the guard's other rules and no threshold; every 3-D piece of a
   class it leaves is recorded (``measure``): its volume, the mean probability of its class, and how much of
   it is that class in the truth.
2. For thresholds 0.80, 0.82, ... 0.98 a set is scored as if the pieces under the threshold were removed
   (``score``): the Table-I-style sample-averaged Dice, the findings lost (a scan's class the model found,
   at least in part, and no longer finds), the true and the false volume removed; on normal scans the volume
   still painted (``painted_ml``).
3. The choice (``choose``), made on one set alone: the highest threshold at which none of its findings is
   lost, one step lower as a margin (0: no threshold is safe). Other sets show what it does on cases that
   played no part in the choice.

The threshold is a property of the model's calibration, so a model trained anew (``ctseg pretrain``), or
fine-tuned far from its parent, needs its own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage as ndi

from ctseg_core.guard import piece_confidences
from ctseg_core.labels import LESION_CLASSES

THRESHOLDS = tuple(round(0.80 + 0.02 * i, 2) for i in range(10))
MARGIN = 0.02
CLASS_IDS = tuple(c.id for c in LESION_CLASSES)


@dataclass
class Piece:
    cls: int
    ml: float
    mean: float  # mean probability of its class
    true_ml: float  # of it, that class in the truth


@dataclass
class Scan:
    name: str
    truth_ml: dict  # class id -> mL in the truth (all 0 on a normal scan)
    pieces: list


def measure(predictor, volume, truth: np.ndarray, name: str) -> Scan:
    """Every piece the predictor leaves on ``volume`` (its guard should have no threshold of its own)."""
    pred = predictor.predict(volume)
    labels, channels = pred.labels.array, list(pred.channel_labels)
    voxel_ml = float(np.prod(volume.spacing)) / 1000
    pieces = []
    for cls in CLASS_IDS:
        if cls not in channels:
            continue
        found, means = piece_confidences(labels, pred.probabilities[:, channels.index(cls)], cls)
        ids = np.arange(1, len(means) + 1)
        sizes = np.bincount(found.ravel(), minlength=len(means) + 1)[1:]
        true = ndi.sum_labels(truth == cls, found, ids)
        pieces += [Piece(cls, float(s * voxel_ml), float(m), float(t * voxel_ml)) for s, m, t in zip(sizes, means, true)]
    return Scan(name, {c: float((truth == c).sum() * voxel_ml) for c in CLASS_IDS}, pieces)


def measure_folder(predictor, folder: Path, progress=None) -> list[Scan]:
    """``measure`` on every labelled scan of a folder (``<case>_ct.nii.gz`` beside ``<case>_labels.nii.gz``)."""
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.io.labelled_cases import find_cases

    scans = []
    for name, ct, lab in find_cases(folder):
        volume = read_volume(ct)
        scans.append(measure(predictor, volume, read_labels(lab, like=volume).array, name))
        if progress is not None:
            progress(f"{Path(folder).name}/{name}: {len(scans[-1].pieces)} pieces")
    return scans


def score(scans: Iterable[Scan], t: float) -> dict:
    """The scans as if the pieces under ``t`` were removed."""
    dice, lost, true_removed, false_removed = [], 0, 0.0, 0.0
    for scan in scans:
        row = []
        for cls in CLASS_IDS:
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
        mean = float(np.nanmean(per_class)) if dice else float("nan")
    return {"dice": mean, "per_class": per_class.round(3).tolist(), "lost": int(lost),
            "true_removed_ml": round(true_removed, 2), "false_removed_ml": round(false_removed, 2)}


def painted_ml(scans: Iterable[Scan], t: float) -> float:
    """Volume still painted on ``scans`` (normal scans: all of it false) with the pieces under ``t`` removed."""
    return round(sum(p.ml for s in scans for p in s.pieces if p.mean >= t), 2)


def choose(scans: list[Scan]) -> float:
    """The highest threshold losing none of the findings of ``scans``, one step lower; 0 where none is safe."""
    safe = [t for t in THRESHOLDS if score(scans, t)["lost"] == 0]
    best = max(safe) if safe else 0.0
    return round(best - MARGIN, 2) if best > THRESHOLDS[0] else 0.0
