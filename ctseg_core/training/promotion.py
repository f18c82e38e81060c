"""Judging a new model as the user will see it, and the rule that makes it active.

``score_cases`` runs the real ``Predictor`` (the viewer's path: the model card's plan, sliding windows of a
patch-trained model, the result mapped back to the scan's own grid, the anatomical guard) on each
validation case and compares its labels with the case's corrected labels on the case's *reviewed* slices.
Dice per lesion class is reported two ways: the **sample average** (the mean over the validation cases of
each case's Dice, as the paper reports; a case where the class is absent from both maps does not count)
and the **voxel average** (voxels pooled over the cases) beside it.

The promotion rule (``decide``), written out in docs/learning.md and shown in the app with its numbers:
the new model becomes active only when, on the same validation cases,
1. its mean sample Dice over the lesion classes of the validation labels is not lower than the parent's, and
2. no one of those classes loses more than ``tolerance`` (0.05) of sample Dice.
Otherwise it is kept as a version that a person may still make active.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ctseg_core.labels import LESION_CLASSES
from ctseg_core.metrics import OverlapCounts, overlap_counts, overlap_scores

TOLERANCE = 0.05
RULE = ("a new version becomes active only if, on the same validation cases and through the viewer's own "
        "prediction path, its mean per-class Dice (sample average) is not lower than its parent's and no lesion "
        f"class loses more than {TOLERANCE:.2f} Dice")


@dataclass
class Scores:
    """Validation Dice of one model: ``dice`` (sample average) and ``dice_voxel`` per lesion class key, for
    the classes present in the validation labels; ``per_case`` the overlap counts of each case."""

    dice: dict[str, float]
    dice_voxel: dict[str, float]
    per_case: dict[str, OverlapCounts] = field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        return mean_dice(self.dice)


def mean_dice(dice: dict[str, float]) -> float | None:
    return float(np.mean(list(dice.values()))) if dice else None


def case_counts(predicted: np.ndarray, truth: np.ndarray, reviewed: np.ndarray | None) -> OverlapCounts:
    """Overlap counts of one case on its reviewed slices (``reviewed`` bool (z,); None: all)."""
    if reviewed is not None:
        predicted, truth = predicted[reviewed], truth[reviewed]
    return overlap_counts(predicted, truth)


def scores_from_counts(per_case: dict[str, OverlapCounts]) -> Scores:
    if not per_case:
        raise ValueError("no validation case to score")
    s = overlap_scores(list(per_case.values()))
    pooled_truth = sum(c.tp + c.fn for c in per_case.values())
    present = [c for c in LESION_CLASSES if pooled_truth[c.id] > 0]
    return Scores({c.key: round(float(s.dice_sample[c.id]), 6) for c in present},
                  {c.key: round(float(s.dice_voxel[c.id]), 6) for c in present}, dict(per_case))


def score_cases(predictor, cases: Sequence, progress: Callable[[int, int], None] | None = None) -> Scores:
    """Scores of ``predictor`` on ``cases`` (``LoadedCase``: ``scan`` a Volume, ``labels``, ``reviewed``).
    ``progress(done, total)`` before the first case and after each."""
    per_case = {}
    if progress is not None:
        progress(0, len(cases))
    for i, case in enumerate(cases):
        labels = predictor.predict(case.scan).labels.array
        per_case[case.case_id] = case_counts(labels, case.labels, case.reviewed)
        if progress is not None:
            progress(i + 1, len(cases))
    return scores_from_counts(per_case)


@dataclass
class Decision:
    promoted: bool
    reason: str
    per_class: dict  # key -> {"before", "after", "change", "ok"}
    tolerance: float = TOLERANCE

    def to_json(self) -> dict:
        return {"promoted": self.promoted, "tolerance": self.tolerance, "per_class": self.per_class,
                "rule": RULE}


def decide(before: dict[str, float], after: dict[str, float], version: str, parent: str,
           tolerance: float = TOLERANCE) -> Decision:
    """The promotion rule (module docstring) on sample-average Dice per class."""
    keys = [k for k in before if k in after] or list(after)
    per_class = {}
    for k in keys:
        b, a = before.get(k), after.get(k)
        change = None if a is None or b is None else round(a - b, 6)
        per_class[k] = {"before": b, "after": a, "change": change, "ok": change is None or change >= -tolerance}
    b, a = mean_dice(before), mean_dice(after)
    if a is None or b is None:
        return Decision(False, f"{version} was kept but not made active: the validation cases contain no lesion, "
                               f"so it cannot be compared with {parent}", per_class, tolerance)
    worse = [k for k, v in per_class.items() if not v["ok"]]
    if a >= b and not worse:
        return Decision(True, f"{version} is active: validation Dice {a:.3f} is not lower than {parent}'s {b:.3f} "
                              f"on the same cases and no class lost more than {tolerance:.2f}", per_class, tolerance)
    if a < b:
        why = f"validation Dice {a:.3f} is lower than {parent}'s {b:.3f} on the same cases"
    else:
        why = "; ".join(f"{k.upper()} fell from {per_class[k]['before']:.3f} to {per_class[k]['after']:.3f}"
                        for k in worse) + f" (more than the tolerance of {tolerance:.2f})"
    return Decision(False, f"{version} was kept but not made active: {why} (use 'ctseg models use {version}' "
                           "to make it active anyway)", per_class, tolerance)
