"""The whole findings computation of one scan: per-class findings, head frame, midline shift, lesion list.

    .venv/bin/python benchmarks/bench_findings.py [--repeat N] [--seed S]

Scene: a generated 512x512x40 head CT (about 0.45 mm pixels, 5 mm slices) with an ICH, an SDH, SAH and IVH
and a requested 8 mm midline shift, with its exact labels. Rows: each step alone, then ``measure_scan``
(everything, sharing one head frame) on the calling thread and in a worker thread as the app runs it.
For the worker run the main thread ticks every 5 ms meanwhile; its longest gap shows how much the
computation holds the GIL (what a GUI thread would feel). Target: the whole computation under 500 ms.
CPU time is printed beside wall time: on a shared machine the wall time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from ctseg_core.findings import compute_findings
from ctseg_core.measure import measure_scan
from ctseg_core.measure.head_frame import head_frame
from ctseg_core.measure.lesions import list_lesions
from ctseg_core.measure.midline import measure_midline_shift
from ctseg_core.synth import generate_case


def timed(fn, repeat: int):
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return float(np.median(wall)), float(np.percentile(wall, 95)), float(np.median(cpu))


def in_worker(fn, repeat: int):
    """Wall time of fn() in a thread, and the main thread's longest gap between 5 ms ticks meanwhile."""
    walls, gaps = [], []
    for _ in range(repeat):
        done = threading.Event()
        box = {}

        def run():
            t = time.perf_counter()
            fn()
            box["wall"] = (time.perf_counter() - t) * 1000
            done.set()

        worker = threading.Thread(target=run)
        last, gap = time.perf_counter(), 0.0
        worker.start()
        while not done.is_set():
            time.sleep(0.005)
            now = time.perf_counter()
            gap, last = max(gap, (now - last) * 1000), now
        worker.join()
        walls.append(box["wall"])
        gaps.append(gap)
    return float(np.median(walls)), float(np.percentile(walls, 95)), float(np.median(gaps))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    case = generate_case(args.seed, n_slices=40, lesion_classes=[1, 2, 3, 7], midline_shift_mm=8.0)
    volume, labels = case.volume, case.labels
    frame = head_frame(volume)
    m = measure_scan(volume, labels)  # warm up (imports, caches)
    print(f"scene: {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} at "
          f"{volume.spacing[2]:.2f}x{volume.spacing[1]:.2f}x{volume.spacing[0]:.1f} mm, "
          f"{len(m.lesions.lesions)} lesions, {m.midline.summary()} (truth "
          f"{case.params['deep_midline_shift_mm']:+.1f} mm, + = left)")
    rows = [
        ("per-class findings (compute_findings)", *timed(lambda: compute_findings(labels), args.repeat), ""),
        ("head frame (skull symmetry)", *timed(lambda: head_frame(volume), args.repeat), ""),
        ("midline shift (given the frame)", *timed(lambda: measure_midline_shift(volume, labels, frame), args.repeat), ""),
        ("lesion list (given the frame)", *timed(lambda: list_lesions(volume, labels, frame), args.repeat), ""),
        ("whole: measure_scan", *timed(lambda: measure_scan(volume, labels), args.repeat), "< 500"),
    ]
    w_med, w_p95, gap = in_worker(lambda: measure_scan(volume, labels), args.repeat)
    print(f"{'step':44s} {'median ms':>10s} {'p95 ms':>8s} {'CPU ms':>8s}  target")
    for name, med, p95, cpu, target in rows:
        print(f"{name:44s} {med:10.0f} {p95:8.0f} {cpu:8.0f}  {target}")
    print(f"{'whole, in a worker thread':44s} {w_med:10.0f} {w_p95:8.0f} {'':>8s}  < 500")
    print(f"{'  main thread: longest gap between 5 ms ticks':44s} {gap:10.0f}")


if __name__ == "__main__":
    main()
