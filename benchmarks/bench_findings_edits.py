"""Findings after an edit: what the panel shows at once vs. the whole-volume computation. Prints a table.

    .venv/bin/python benchmarks/bench_findings_edits.py [--repeat N]

Scene: a 512x512x40 label map at 0.49 x 0.49 x 5 mm with several classes and a large ICH.
- after a brush edit on one slice: ``SliceCounts.update`` of that slice + ``findings_from_counts`` (what the
  findings panel does on the GUI thread); target <= 10 ms, so volumes follow the brush without lag.
- after an undo of a 3-D edit (10 slices): the same over 10 slices; target <= 30 ms.
- the details computed in the background after every edit: ABC/2 of ICH (3-D components) and the origin
  of each class (final vs prediction); target <= 1 s. The model's confidence (labels and uncertainty) is
  computed only when the prediction changes; target <= 1 s.
- whole-volume findings (``compute_findings``: every slice counted + ABC/2), as exports and the CLI use them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ctseg_core.findings import (ICH_ID, SliceCounts, abc2_estimate, class_origin, compute_findings,
                                 findings_from_counts, model_confidence)
from ctseg_core.volume import Geometry, LabelMap

SHAPE = (40, 512, 512)
SPACING = (5.0, 0.49, 0.49)


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    labels[((z - 20) * 5) ** 2 + ((y - 250) * 0.49) ** 2 + ((x - 200) * 0.49) ** 2 < 30 ** 2] = 1  # ICH ~110 mL
    labels[5:30, 100:140, 300:420] = 2
    labels[10:14, 300:360, 350:380] = 7
    prediction = labels.copy()
    prediction[rng.random(SHAPE) < 0.001] = 3
    uncertainty = rng.random(SHAPE).astype(np.float32) * 0.6
    return LabelMap(labels, Geometry(SHAPE, SPACING)), prediction, uncertainty


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    labels, prediction, uncertainty = scene()
    counts = SliceCounts(labels.array)
    g = labels.geometry

    def one_slice():
        counts.update(labels.array, 20, 21)
        findings_from_counts(counts, g)

    def ten_slices():
        counts.update(labels.array, 15, 25)
        findings_from_counts(counts, g)

    def details():
        abc2_estimate(labels.array == ICH_ID, g.spacing)
        class_origin(labels.array, prediction)

    rows = [("brush edit on one slice (GUI thread)", one_slice, 0.010),
            ("undo over 10 slices (GUI thread)", ten_slices, 0.030),
            ("ABC/2 + origin after an edit (worker)", details, 1.0),
            ("model confidence after a run (worker)", lambda: model_confidence(prediction, uncertainty), 1.0),
            ("whole-volume compute_findings (export, CLI)", lambda: compute_findings(labels), None)]
    print(f"findings of a {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} label map, median of {args.repeat}")
    print(f"{'step':<42}{'ms':>9}{'target ms':>11}  ok")
    for name, fn, target in rows:
        t = timed(fn, args.repeat)
        ok = "" if target is None else ("yes" if t <= target else "NO")
        print(f"{name:<42}{t * 1000:>9.1f}{'' if target is None else f'{target * 1000:.0f}':>11}  {ok}")


if __name__ == "__main__":
    main()
