"""Midline-shift accuracy on generated cases with known truth. Prints one row per case and a summary.

    .venv/bin/python benchmarks/eval_midline.py [--first 20] [--count 140] [--size 256]

Every third seed keeps the shift its lesions imply; the others request a shift of 0-15 mm
(``generate_case(midline_shift_mm=)``) with one space-occupying lesion (ICH, SDH, EDH or CSDH). Heads are
rotated in-plane by up to 10 degrees (per seed). Truth: ``params["deep_midline_shift_mm"]``, where the
generator put the septum pellucidum and third ventricle.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ctseg_core.measure.midline import measure_midline_shift
from ctseg_core.synth import generate_case


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", type=int, default=20)
    ap.add_argument("--count", type=int, default=140)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    errors, missed = [], 0
    print(f"{'seed':>5s} {'classes':8s} {'asked':>6s} {'truth':>7s} {'measured':>9s} {'error':>6s} {'angle':>6s} {'ms':>6s}")
    for seed in range(args.first, args.first + args.count):
        if seed % 3 == 0:
            classes, asked = None, None
        else:
            classes, asked = [int(rng.choice([1, 2, 4, 5]))], float(rng.choice([0, 2, 4, 6, 8, 10, 12, 15]))
        case = generate_case(seed, shape_yx=(args.size, args.size), lesion_classes=classes, midline_shift_mm=asked)
        t = time.perf_counter()
        m = measure_midline_shift(case.volume, case.labels)
        ms = (time.perf_counter() - t) * 1000
        truth = case.params["deep_midline_shift_mm"] or 0.0
        if not m.found:
            missed += 1
            print(f"{seed:5d} {str(classes):8s} {str(asked):>6s} {truth:+7.2f} {'not found':>9s}")
            continue
        err = m.signed_mm - truth
        errors.append(err)
        print(f"{seed:5d} {str(classes):8s} {str(asked):>6s} {truth:+7.2f} {m.signed_mm:+9.2f} {err:+6.2f} "
              f"{case.params['head_angle_deg']:+6.1f} {ms:6.0f}")
    e = np.abs(np.array(errors))
    print(f"\n{len(errors)} measured, {missed} not found; |error| mean {e.mean():.2f} mm, median {np.median(e):.2f}, "
          f"95th percentile {np.percentile(e, 95):.2f}, max {e.max():.2f}; over 1 mm: {int((e > 1).sum())}")


if __name__ == "__main__":
    main()
