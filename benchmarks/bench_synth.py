"""Time ``generate_case``: 40-slice 512x512 (5 mm), thin 1 mm slices, 256x256, 7 mm, randomised
acquisitions (whole scans and 3-slice slabs, as a training cache asks for them); median of a few runs.

Run: .venv/bin/python benchmarks/bench_synth.py [--repeats 3]
Target: under 2 s CPU for the 40-slice 512x512 volume. Wall time depends on what else runs on the machine;
the CPU column (process time of this process, all threads) much less so, and the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from ctseg_core.synth import Acquisition, generate_case, sample_acquisition

CONFIGS = [
    ("5 mm, 512x512, 40 slices", lambda s: dict(n_slices=40)),
    ("5 mm, 512x512, default slices", lambda s: dict()),
    ("thin 1 mm, 512x512, default slices", lambda s: dict(thin=True)),
    ("5 mm, 256x256 (0.9 mm px), default slices", lambda s: dict(shape_yx=(256, 256))),
    ("7 mm, 512x512 (0.49 mm, like the GE)", lambda s: dict(acquisition=Acquisition(pixel_spacing_mm=0.49,
                                                                                    slice_thickness_mm=7.0))),
    ("sample_acquisition, 512x512, whole scan", lambda s: dict(acquisition=sample_acquisition(np.random.default_rng(s)))),
    ("sample_acquisition, 512x512, 3-slice slab", lambda s: dict(acquisition=sample_acquisition(
        np.random.default_rng(s), max_slices=3))),
    ("sample_acquisition, 256x256, 3-slice slab", lambda s: dict(acquisition=sample_acquisition(
        np.random.default_rng(s), shape_yx=(256, 256), max_slices=3))),
    ("0.6 mm, 512x512, 3-slice slab", lambda s: dict(acquisition=Acquisition(slice_thickness_mm=0.6, max_slices=3))),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    generate_case(0, shape_yx=(64, 64))  # warm imports
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'configuration':44s} {'slices':>6s} {'voxels (M)':>10s} {'median s':>9s} {'min s':>7s} {'CPU s':>6s}")
    for name, kw in CONFIGS:
        times, cpu, shapes = [], [], []
        for r in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            case = generate_case(100 + r, **kw(100 + r))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            shapes.append(case.volume.shape)
        n = statistics.median(s[0] for s in shapes)
        nvox = statistics.median(s[0] * s[1] * s[2] for s in shapes) / 1e6
        print(f"{name:44s} {n:6.0f} {nvox:10.1f} {statistics.median(times):9.2f} {min(times):7.2f} "
              f"{statistics.median(cpu):6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
