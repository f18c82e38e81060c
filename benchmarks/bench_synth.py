"""Time ``generate_case``: 40-slice 512x512 (5 mm), thin 1 mm slices, 256x256; median of a few runs.

Run: .venv/bin/python benchmarks/bench_synth.py [--repeats 3]
Target: under 2 s for the 40-slice 512x512 volume. Wall time depends on what else runs on the machine;
the CPU column (process time of this process, all threads) does not, and the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from ctseg_core.synth import generate_case

CONFIGS = [
    ("5 mm, 512x512, 40 slices", dict(n_slices=40)),
    ("5 mm, 512x512, default slices", dict()),
    ("thin 1 mm, 512x512, default slices", dict(thin=True)),
    ("5 mm, 256x256 (0.9 mm px), default slices", dict(shape_yx=(256, 256))),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    generate_case(0, shape_yx=(64, 64))  # warm imports
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'configuration':44s} {'slices':>6s} {'voxels (M)':>10s} {'median s':>9s} {'min s':>7s} {'CPU s':>6s}")
    for name, kw in CONFIGS:
        times, cpu, shape = [], [], None
        for r in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            case = generate_case(100 + r, **kw)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            shape = case.volume.shape
        nvox = shape[0] * shape[1] * shape[2] / 1e6
        print(f"{name:44s} {shape[0]:6d} {nvox:10.1f} {statistics.median(times):9.2f} {min(times):7.2f} "
              f"{statistics.median(cpu):6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
