"""Where an annotator's minutes help most: cases and slices ordered by the model's uncertainty.

The uncertainty the app stores with each prediction is ``1 - p_max`` per voxel (``Prediction.uncertainty``):
the model's own probability that its label there is wrong. Its sum over a region is the number of voxels the
model expects to have got wrong there; in physical units it is the **expected error**: mL for a case,
mm^2 for a slice. Voxels below ``FLOOR`` (0.05) are left out so that the faint doubt of millions of sure
background voxels does not drown the few uncertain ones.

- ``case_expected_error_ml(case)``: a case's expected error from its stored uncertainty (None: none stored);
- ``cases_to_review(workspace, ...)``: the cases not yet corrected or approved, most uncertain first
  (those without a stored uncertainty last, oldest first) — "next case";
- ``slice_expected_error_mm2(uncertainty, spacing)``, ``next_slice(...)``: the most uncertain slice that
  nobody reviewed yet — "next slice".
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

FLOOR = 0.05
TO_REVIEW = ("new", "in_review")


def slice_expected_error_mm2(uncertainty_zyx: np.ndarray, spacing_zyx) -> np.ndarray:
    """float (z,): expected wrongly labelled area of each slice in mm^2."""
    u = np.asarray(uncertainty_zyx, dtype=np.float32)
    per_slice = np.where(u >= FLOOR, u, 0.0).sum(axis=(1, 2), dtype=np.float64)
    return per_slice * float(spacing_zyx[1]) * float(spacing_zyx[2])


def case_expected_error_ml(case) -> float | None:
    """A case's expected error in mL from its stored uncertainty, or None when none is stored."""
    u = case.load_uncertainty()
    if u is None:
        return None
    spacing = case.geometry.spacing
    return float(slice_expected_error_mm2(u, spacing).sum() * float(spacing[0]) / 1000.0)


def cases_to_review(workspace, exclude: Iterable[str] = (), statuses=TO_REVIEW) -> list[tuple[str, float | None]]:
    """(case id, expected error mL or None) of the cases with one of ``statuses``, most uncertain first."""
    from ctseg_core.errors import StoreError

    excluded = set(exclude)
    scored, unscored = [], []
    for rec in workspace.cases():  # oldest first
        if rec.status not in statuses or rec.id in excluded:
            continue
        try:
            err = case_expected_error_ml(workspace.case(rec.id))
        except StoreError:
            err = None
        (unscored if err is None else scored).append((rec.id, err))
    return sorted(scored, key=lambda item: -item[1]) + unscored


def next_slice(uncertainty_zyx: np.ndarray, spacing_zyx, reviewed: np.ndarray | None = None,
               current: int | None = None) -> int | None:
    """The slice (index from 0) with the largest expected error among those not reviewed (and not ``current``);
    None when every slice is reviewed or nothing is uncertain."""
    score = slice_expected_error_mm2(uncertainty_zyx, spacing_zyx)
    candidates = np.ones(len(score), bool)
    if reviewed is not None:
        candidates &= ~np.asarray(reviewed, bool)
    if current is not None and 0 <= current < len(score) and candidates.sum() > 1:
        candidates[current] = False
    score = np.where(candidates, score, -1.0)
    best = int(np.argmax(score))
    return best if score[best] > 0 else None
