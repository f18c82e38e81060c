"""Choosing a model's own guard settings (ctseg_core.guard: rule 4's unsure-piece threshold
``min_piece_confidence`` and rule 5's ``min_type_share``, both on ``ModelCard.guard``) on labelled scans the
model never trained on. ``ctseg choose-guard`` runs it.

1. The model runs through the Predictor with the guard's first three rules only; every 3-D piece of a class
   it leaves is recorded (``measure``): its volume, the mean probability of its class, how much of it is that
   class in the truth. For every threshold, the extra-axial collections that rule 4 would leave (touching
   SDH, EDH and CSDH) are recorded too: each type's summed probability, painted and true volume.
2. For thresholds 0.80, 0.82 ... 0.98 and shares 0.5 ... 1, a set is scored as if the rules ran with them
   (``score``): the Table-I-style sample-averaged Dice, the findings lost (a scan's class the model found, at
   least in part, and no longer finds), the true and false volume rule 4 removes; on normal scans the volume
   still painted (``painted_ml``; rule 5 removes nothing).
3. The choice, on one set alone. The threshold (``choose``): the highest at which none of its findings is lost,
   one step lower as a margin (0: none is safe). Then the share (``choose_share``): among the shares losing
   none of its findings, the highest whose Dice is within 0.005 of the best, so that as little as possible is
   retyped (0: retyping does not help). Other sets show what the choice does on cases that played no part in it.

The settings belong to the model's calibration, so a model trained anew (``ctseg pretrain``), or fine-tuned far
from its parent, needs its own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage as ndi

from ctseg_core.guard import EXTRA_AXIAL, leading_types, piece_confidences
from ctseg_core.labels import LESION_CLASSES

THRESHOLDS = tuple(round(0.80 + 0.02 * i, 2) for i in range(10))
SHARES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MARGIN = 0.02
SHARE_TOLERANCE = 0.005
CLASS_IDS = tuple(c.id for c in LESION_CLASSES)


@dataclass
class Piece:
    cls: int
    ml: float
    mean: float  # mean probability of its class
    true_ml: float  # of it, that class in the truth


@dataclass
class Collection:
    """Touching extra-axial blood (rule 5's unit), per type in EXTRA_AXIAL order."""

    prob: tuple  # summed probability of each type over the collection
    painted_ml: tuple  # painted as each type
    hit_ml: tuple  # painted as each type where the truth is that type
    truth_ml: tuple  # where the truth is each type (whatever was painted)

    @property
    def ml(self) -> float:
        return float(sum(self.painted_ml))

    def lead(self, share: float) -> int | None:
        """Index of the type rule 5 gives the whole collection at ``share`` (None: it keeps its types)."""
        lead = int(leading_types(np.asarray(self.prob, np.float64)[:, None], share)[0])
        return None if lead < 0 else lead


@dataclass
class Scan:
    name: str
    truth_ml: dict  # class id -> mL in the truth (all 0 on a normal scan)
    pieces: list
    collections: dict = field(default_factory=dict)  # threshold -> [Collection] left by rule 4 at it


def measure(predictor, volume, truth: np.ndarray, name: str) -> Scan:
    """Every piece and, for every threshold, every extra-axial collection the predictor's labels hold (its guard
    should have no threshold and no share of its own)."""
    pred = predictor.predict(volume)
    labels, channels = pred.labels.array, list(pred.channel_labels)
    voxel_ml = float(np.prod(volume.spacing)) / 1000
    pieces, means = [], np.zeros(labels.shape, np.float32)  # each voxel: its piece's mean probability
    for cls in CLASS_IDS:
        if cls not in channels:
            continue
        found, piece_means = piece_confidences(labels, pred.probabilities[:, channels.index(cls)], cls)
        ids = np.arange(1, len(piece_means) + 1)
        sizes = np.bincount(found.ravel(), minlength=len(piece_means) + 1)[1:]
        true = ndi.sum_labels(truth == cls, found, ids)
        pieces += [Piece(cls, float(s * voxel_ml), float(m), float(t * voxel_ml))
                   for s, m, t in zip(sizes, piece_means, true)]
        means[found > 0] = piece_means[found[found > 0] - 1]
    scan = Scan(name, {c: float((truth == c).sum() * voxel_ml) for c in CLASS_IDS}, pieces)
    types = [c for c in EXTRA_AXIAL if c in channels]
    if len(types) == len(EXTRA_AXIAL):
        probs = [np.asarray(pred.probabilities[:, channels.index(c)], np.float32) for c in types]
        for t in (0.0, *THRESHOLDS):
            scan.collections[t] = _collections(np.where(means >= t, labels, 0), probs, truth, voxel_ml)
    return scan


def _collections(labels: np.ndarray, probs: list, truth: np.ndarray, voxel_ml: float) -> list[Collection]:
    found, n = ndi.label(np.isin(labels, EXTRA_AXIAL), np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    ids = np.arange(1, n + 1)

    def per_type(masks) -> np.ndarray:
        return np.stack([ndi.sum_labels(m, found, ids) for m in masks])

    prob = np.stack([ndi.sum_labels(p, found, ids) for p in probs])
    painted = per_type([labels == c for c in EXTRA_AXIAL]) * voxel_ml
    hit = per_type([(labels == c) & (truth == c) for c in EXTRA_AXIAL]) * voxel_ml
    truth_ml = per_type([truth == c for c in EXTRA_AXIAL]) * voxel_ml
    return [Collection(tuple(prob[:, i]), tuple(painted[:, i]), tuple(hit[:, i]), tuple(truth_ml[:, i]))
            for i in range(n)]


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


def _class_volumes(scan: Scan, t: float, share: float) -> dict:
    """class id -> (painted mL, truly painted mL) with rule 4 at ``t`` and rule 5 at ``share``."""
    out = {}
    for cls in CLASS_IDS:
        kept = [p for p in scan.pieces if p.cls == cls and p.mean >= t]
        out[cls] = (sum(p.ml for p in kept), sum(p.true_ml for p in kept))
    if t not in scan.collections:
        return out
    painted, hit = dict.fromkeys(EXTRA_AXIAL, 0.0), dict.fromkeys(EXTRA_AXIAL, 0.0)
    for col in scan.collections[t]:
        lead = col.lead(share)
        for i, cls in enumerate(EXTRA_AXIAL):
            painted[cls] += col.painted_ml[i] if lead is None else (col.ml if i == lead else 0.0)
            hit[cls] += col.hit_ml[i] if lead is None else (col.truth_ml[i] if i == lead else 0.0)
    out.update({cls: (painted[cls], hit[cls]) for cls in EXTRA_AXIAL})
    return out


def score(scans: Iterable[Scan], t: float, share: float = 0.0) -> dict:
    """The scans as if rule 4 ran at ``t`` and rule 5 at ``share`` (0: off)."""
    dice, lost, true_removed, false_removed = [], 0, 0.0, 0.0
    for scan in scans:
        before, after = _class_volumes(scan, 0.0, 0.0), _class_volumes(scan, t, share)
        row = []
        for cls in CLASS_IDS:
            (painted, tp), truth = after[cls], scan.truth_ml[cls]
            row.append(np.nan if painted + truth == 0 else 2 * tp / (painted + truth))
            lost += before[cls][1] > 0 and tp <= 0
        removed = [p for p in scan.pieces if p.mean < t]
        true_removed += sum(p.true_ml for p in removed)
        false_removed += sum(p.ml - p.true_ml for p in removed)
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


def choose_share(scans: list[Scan], t: float) -> float:
    """With rule 4 at ``t``: the highest share losing none of the findings of ``scans`` whose Dice is within
    SHARE_TOLERANCE of the best such share's; 0 where no share does better than none."""
    plain = score(scans, t)["dice"]
    safe = {s: score(scans, t, s)["dice"] for s in SHARES if score(scans, t, s)["lost"] == 0}
    if not safe or max(safe.values()) <= plain + SHARE_TOLERANCE:
        return 0.0
    best = max(safe.values())
    return max(s for s, d in safe.items() if d >= best - SHARE_TOLERANCE)
