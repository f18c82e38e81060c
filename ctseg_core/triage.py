"""Scan triage from per-slice probabilities (a slice classifier such as RADnet): which slices are
positive, the scan's probability and its call, by the same rule as everywhere else in ctseg: a scan is
positive when ``MIN_CONSECUTIVE_SLICES`` (3) or more consecutive slices are.

The scan's probability is the largest, over every run of 3 consecutive slices, of the smallest slice
probability in the run: the scan is called positive exactly when that probability reaches the threshold
(then 3 consecutive slices do), so sorting a worklist by it sorts by how close each scan is to the call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctseg_core.findings import format_slice_ranges
from ctseg_core.metrics import MIN_CONSECUTIVE_SLICES, longest_run

THRESHOLD = 0.5  # a slice is positive when its probability reaches this


def scan_probability(slice_probabilities, run: int = MIN_CONSECUTIVE_SLICES) -> float:
    """max over runs of ``run`` consecutive slices of the run's smallest probability (0 for fewer slices)."""
    p = np.asarray(slice_probabilities, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"slice probabilities must be one value per slice, got shape {p.shape}")
    if len(p) < run:
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(p, run)
    return float(windows.min(axis=1).max())


def positive_slices(slice_probabilities, threshold: float = THRESHOLD) -> list[int]:
    """0-based indices of the slices whose probability reaches ``threshold``."""
    return np.flatnonzero(np.asarray(slice_probabilities) >= threshold).tolist()


@dataclass
class Triage:
    """The triage of one scan."""

    slice_probabilities: np.ndarray  # float32 (z,)
    threshold: float = THRESHOLD

    @property
    def probability(self) -> float:
        return scan_probability(self.slice_probabilities)

    @property
    def positive_slices(self) -> list[int]:
        return positive_slices(self.slice_probabilities, self.threshold)

    @property
    def positive(self) -> bool:
        """3 or more consecutive slices reach the threshold."""
        return longest_run(self.positive_slices) >= MIN_CONSECUTIVE_SLICES

    def in_positive_run(self) -> np.ndarray:
        """bool (z,): the slices that belong to a run of 3 or more consecutive positive slices."""
        positive = np.asarray(self.slice_probabilities) >= self.threshold
        out = np.zeros(len(positive), bool)
        start = None
        for z, v in enumerate(list(positive) + [False]):
            if v and start is None:
                start = z
            elif not v and start is not None:
                if z - start >= MIN_CONSECUTIVE_SLICES:
                    out[start:z] = True
                start = None
        return out

    def describe(self) -> str:
        """One line for the user, slices numbered from 1: "POSITIVE (p 0.93): 5 positive slices, 12-16"."""
        call = "POSITIVE" if self.positive else "negative"
        slices = self.positive_slices
        where = f", {format_slice_ranges([z + 1 for z in slices])}" if slices else ""
        return f"{call} (p {self.probability:.2f}): {len(slices)} positive slice{'s' if len(slices) != 1 else ''}{where}"

    def to_json(self) -> dict:
        return {"probability": round(self.probability, 4), "positive": self.positive, "threshold": self.threshold,
                "rule": f"positive = {MIN_CONSECUTIVE_SLICES}+ consecutive slices with probability >= "
                        f"{self.threshold}",
                "positive_slices": [z + 1 for z in self.positive_slices],
                "slice_probabilities": [round(float(v), 4) for v in self.slice_probabilities]}
