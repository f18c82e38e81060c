"""Segmentation and detection metrics, and per-class volumes (the one place for them).

Overlap scores come from per-class counts (true positives, false positives, false negatives) taken
with one ``bincount`` per scan, so they scale to whole volumes without one-hot tensors:
- *sample average*: Dice/IoU per scan, then the mean over scans; a scan where the class is absent from
  both prediction and truth is left out of that class's mean (NaN when no scan has it);
- *voxel average*: counts pooled over all voxels of all scans, then one Dice/IoU per class (as
  RSANet's paper defines its "voxel-level" scores).
Scan-level detection: a class is present when it appears on ``MIN_CONSECUTIVE_SLICES`` (3) or more
consecutive slices (the rule and its run-length helper live in ``ctseg_core.findings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from ctseg_core.labels import LESION_CLASSES, NUM_CLASSES, NUM_LABEL_VALUES
from ctseg_core.volume import LabelMap


MIN_CONSECUTIVE_SLICES = 3  # the scan-level detection rule: present on 3+ consecutive slices


def longest_run(slices: list[int]) -> int:
    """Length of the longest run of consecutive integers in a sorted list."""
    best = run = 0
    prev = None
    for z in slices:
        run = run + 1 if prev is not None and z == prev + 1 else 1
        best = max(best, run)
        prev = z
    return best


def _array(labels) -> np.ndarray:
    return np.asarray(labels.array if isinstance(labels, LabelMap) else labels)


# ---------------------------------------------------------------- overlap (Dice, IoU)

@dataclass
class OverlapCounts:
    """Per-class voxel counts of one scan (or pooled over several): arrays of length ``num_classes``."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def __add__(self, other: "OverlapCounts") -> "OverlapCounts":
        return OverlapCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def dice(self) -> np.ndarray:
        """2 TP / (2 TP + FP + FN) per class; NaN where the class is absent from both maps."""
        denom = 2 * self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * self.tp / np.maximum(denom, 1), np.nan)

    def iou(self) -> np.ndarray:
        """TP / (TP + FP + FN) per class; NaN where the class is absent from both maps."""
        denom = self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, self.tp / np.maximum(denom, 1), np.nan)


def overlap_counts(pred, truth, num_classes: int = NUM_CLASSES) -> OverlapCounts:
    """TP/FP/FN per class between two label maps (arrays or ``LabelMap``) of the same shape."""
    p, t = _array(pred), _array(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} != truth shape {t.shape}")
    top = max(int(p.max(initial=0)), int(t.max(initial=0)))
    if top >= num_classes:
        raise ValueError(f"label value {top} is outside the {num_classes} classes being scored "
                         "(map review labels such as unassigned extra-axial blood first)")
    joint = np.bincount(p.ravel().astype(np.int64) * num_classes + t.ravel().astype(np.int64),
                        minlength=num_classes * num_classes)[: num_classes * num_classes]
    confusion = joint.reshape(num_classes, num_classes).astype(np.int64)  # [pred, truth]
    tp = np.diag(confusion).copy()
    return OverlapCounts(tp, confusion.sum(axis=1) - tp, confusion.sum(axis=0) - tp)


@dataclass
class OverlapScores:
    """Per-class scores (index = class id), each as sample average and voxel average.

    ``dice_sample`` averages over every scan where the class is in the truth or the prediction, so a scan
    without the class that the model paints anyway scores 0 for it. ``dice_present`` averages over the
    scans whose truth holds the class only (MONAI's ``DiceMetric(ignore_empty=True)``): how well what is
    there is outlined. ``painted_free`` counts the scans without the class where the model painted it,
    out of ``free`` such scans: the false alarms that ``dice_present`` leaves out."""

    dice_sample: np.ndarray
    dice_voxel: np.ndarray
    iou_sample: np.ndarray
    iou_voxel: np.ndarray
    n_scans: int
    dice_present: np.ndarray
    painted_free: np.ndarray
    free: np.ndarray

    def as_dict(self, include_background: bool = False) -> dict:
        first = 0 if include_background else 1
        out = {}
        for name in ("dice_sample", "dice_voxel", "iou_sample", "iou_voxel", "dice_present"):
            values = getattr(self, name)
            out[name] = {int(c): _nan_to_none(values[c]) for c in range(first, len(values))}
        for name in ("painted_free", "free"):
            out[name] = {int(c): int(v) for c, v in enumerate(getattr(self, name)) if c >= first}
        out["n_scans"] = self.n_scans
        return out


def overlap_scores(per_scan: Sequence[OverlapCounts]) -> OverlapScores:
    """Sample- and voxel-averaged Dice and IoU from the counts of each scan."""
    if not per_scan:
        raise ValueError("no scans to score")
    dice = np.stack([c.dice() for c in per_scan])
    iou = np.stack([c.iou() for c in per_scan])
    pooled = per_scan[0]
    for c in per_scan[1:]:
        pooled = pooled + c
    present = np.stack([c.tp + c.fn > 0 for c in per_scan])
    painted = np.stack([c.tp + c.fp > 0 for c in per_scan])
    return OverlapScores(_nanmean(dice), pooled.dice(), _nanmean(iou), pooled.iou(), len(per_scan),
                         dice_present=_nanmean(np.where(present, dice, np.nan)),
                         painted_free=(painted & ~present).sum(axis=0), free=(~present).sum(axis=0))


def _nanmean(stack: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(stack)
    total = np.where(valid, stack, 0).sum(axis=0)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _nan_to_none(x) -> float | None:
    return None if np.isnan(x) else float(x)


# ---------------------------------------------------------------- scan-level detection

def scan_detection(labels, min_slices: int = MIN_CONSECUTIVE_SLICES) -> dict[int, bool]:
    """{lesion class id: present} where present = on ``min_slices`` or more consecutive slices (z)."""
    arr = _array(labels)
    if arr.ndim != 3:
        raise ValueError(f"scan_detection needs a (z, y, x) label map, got shape {arr.shape}")
    on_slice = np.zeros((arr.shape[0], NUM_CLASSES), dtype=bool)  # [z, class]
    for z in range(arr.shape[0]):
        on_slice[z] = np.bincount(arr[z].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] > 0
    return {c.id: longest_run(np.flatnonzero(on_slice[:, c.id]).tolist()) >= min_slices for c in LESION_CLASSES}


@dataclass
class DetectionScores:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def accuracy(self) -> float | None:
        n = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / n if n else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def specificity(self) -> float | None:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else None

    @property
    def f1(self) -> float | None:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else None

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "accuracy": self.accuracy,
                "recall": self.recall, "specificity": self.specificity, "precision": self.precision, "f1": self.f1}


ANY = "any"  # key of the "any hemorrhage" row in detection_scores


def detection_scores(predicted: Iterable[Mapping[int, bool]],
                     truth: Iterable[Mapping[int, bool]]) -> dict[int | str, DetectionScores]:
    """Per-class (and ``"any"`` lesion) accuracy/recall/precision/F1 over scans' ``scan_detection`` dicts."""
    predicted, truth = list(predicted), list(truth)
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted scans but {len(truth)} true scans")
    keys: list[int | str] = [c.id for c in LESION_CLASSES] + [ANY]
    counts = {k: [0, 0, 0, 0] for k in keys}
    for p, t in zip(predicted, truth):
        pairs = {c.id: (bool(p.get(c.id, False)), bool(t.get(c.id, False))) for c in LESION_CLASSES}
        pairs[ANY] = (any(v[0] for v in pairs.values()), any(v[1] for v in pairs.values()))
        for k, (pv, tv) in pairs.items():
            counts[k][0 if pv and tv else 1 if pv else 2 if tv else 3] += 1
    return {k: DetectionScores(*v) for k, v in counts.items()}


# ---------------------------------------------------------------- volumes

def class_volumes_ml(labelmap: LabelMap, classes=LESION_CLASSES) -> dict[int, float]:
    """{class id: volume in mL} of ``classes`` (default: the lesion classes) from voxel counts and the
    label map's voxel size."""
    counts = np.bincount(labelmap.array.ravel(), minlength=NUM_LABEL_VALUES)
    voxel_ml = labelmap.geometry.voxel_volume_ml
    return {c.id: float(counts[c.id]) * voxel_ml for c in classes}


@dataclass
class EvaluationResult:
    """Everything ``ctseg evaluate`` reports for one model over a data set."""

    model: str
    overlap: OverlapScores | None  # None for a model that draws no labels (slice triage)
    detection: dict = field(default_factory=dict)  # class id / "any" -> DetectionScores (only "any" for triage)
    timing: dict = field(default_factory=dict)  # {"wall_s_per_slice": ..., "cpu_s_per_slice": ..., "slices": ...}

    def as_dict(self) -> dict:
        return {"model": self.model, "overlap": None if self.overlap is None else self.overlap.as_dict(),
                "detection": {str(k): v.as_dict() for k, v in self.detection.items()}, "timing": self.timing}
