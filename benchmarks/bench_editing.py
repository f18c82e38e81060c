"""Editing speed: brush segment + overlay refresh, 3-D undo, journal append, autosave. Prints a table.

    .venv/bin/python benchmarks/bench_editing.py [--repeat N]

Scene: a 512x512x40 label map at 0.49 x 0.49 x 5 mm with busy existing labels.
- brush segment: one mouse move (15 px) of a 10 mm (diameter) 2-D brush: ops.brush + History.apply +
  the RGBA overlay refresh of the changed bounding box on that slice through a 256x4 LUT (numpy);
  target <= 16 ms (one frame at 60 Hz).
- undo of a 3-D edit: a 20 mm (diameter) sphere painted, then History.undo (and redo).
- journal append: one committed brush stroke written and fsync'd (Case.journal_append).
- autosave: Case.save_final of the whole map (compressed NIfTI, atomic, journal trimmed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ctseg_core.edit import History, ops
from ctseg_core.io.images import read_volume, write_volume
from ctseg_core.labels import CLASSES
from ctseg_core.store import Workspace
from ctseg_core.volume import LabelMap, Volume

SHAPE = (40, 512, 512)
SPACING = (5.0, 0.49, 0.49)


def overlay_lut() -> np.ndarray:
    lut = np.zeros((256, 4), np.uint8)
    for c in CLASSES[1:]:
        lut[c.id, :3], lut[c.id, 3] = c.colour, 160
    return lut


def timed(fn, repeat):
    times = []
    for k in range(repeat):
        t = time.perf_counter()
        fn(k)
        times.append((time.perf_counter() - t) * 1000)
    return np.median(times), np.percentile(times, 95)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:30, 150:350, 150:350] = rng.integers(0, 4, (20, 200, 200))
    hu = rng.normal(40, 20, SHAPE).astype(np.float32)
    history = History(labels)
    lut = overlay_lut()
    rgba = np.zeros(SHAPE[1:] + (4,), np.uint8)  # the overlay image of the shown slice
    rows = []

    def brush_move(k):
        z = 20
        a = (z, 100 + (k * 3) % 300, 100 + (k * 5) % 300)
        b = (z, a[1] + 9, a[2] + 12)  # a 15 px mouse move
        delta = ops.brush(labels, [a, b], SPACING, 5.0, 1 + k % 7)
        history.apply(delta)
        if delta:
            _, _, y0, y1, x0, x1 = delta.bbox
            rgba[y0:y1, x0:x1] = lut[labels[z, y0:y1, x0:x1]]

    history.begin_stroke("brush")
    rows.append(("brush segment 10 mm + overlay bbox", *timed(brush_move, args.repeat), "<= 16"))
    history.commit()

    def brush_move_threshold(k):
        a = (21, 100 + (k * 3) % 300, 100 + (k * 5) % 300)
        history.apply(ops.brush(labels, [a, (21, a[1] + 9, a[2] + 12)], SPACING, 5.0, 2, hu=hu,
                                hu_range=ops.HU_PRESETS["fresh_blood"]))

    rows.append(("brush segment 10 mm, HU-limited", *timed(brush_move_threshold, args.repeat), "<= 16"))

    def sphere_then_undo(k):
        history.apply(ops.brush(labels, [(20, 250 + k % 20, 250)], SPACING, 10.0, 3, sphere=True))
        t = time.perf_counter()
        history.undo()
        sphere_then_undo.undo_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        history.redo()
        sphere_then_undo.redo_ms.append((time.perf_counter() - t) * 1000)

    sphere_then_undo.undo_ms, sphere_then_undo.redo_ms = [], []
    paint_med, paint_p95 = timed(sphere_then_undo, max(10, args.repeat // 5))
    rows.append(("3-D sphere 20 mm: paint+undo+redo", paint_med, paint_p95, ""))
    rows.append(("  undo alone", np.median(sphere_then_undo.undo_ms), np.percentile(sphere_then_undo.undo_ms, 95), ""))
    rows.append(("  redo alone", np.median(sphere_then_undo.redo_ms), np.percentile(sphere_then_undo.redo_ms, 95), ""))
    rows.append(("flood fill 3-D (whole volume)",
                 *timed(lambda k: ops.flood_fill(labels, hu, (20, 256, 256), (0, 90), 4, three_d=True), 3), ""))

    with tempfile.TemporaryDirectory() as tmp:
        vol = Volume.from_array(np.zeros(SHAPE, np.float32), spacing=SPACING)
        write_volume(vol, Path(tmp) / "scan.nii.gz")
        vol = read_volume(Path(tmp) / "scan.nii.gz")
        case = Workspace(Path(tmp) / "ws").open_case(vol, Path(tmp) / "scan.nii.gz")
        stroke = [ops.brush(labels, [(5, 100, 100 + 10 * i), (5, 100, 110 + 10 * i)], SPACING, 5.0, 1)
                  for i in range(20)]
        rows.append(("journal append (20-move stroke, fsync)", *timed(lambda k: case.journal_append(stroke), 20), ""))
        lm = LabelMap(labels, vol.geometry)
        rows.append(("autosave 512x512x40 (save_final)", *timed(lambda k: case.save_final(lm), 5), ""))

    print(f"{'operation':44s} {'median ms':>10s} {'p95 ms':>10s} {'target ms':>10s}")
    for name, med, p95, target in rows:
        print(f"{name:44s} {med:10.2f} {p95:10.2f} {target:>10s}")
    print(f"history holds {history.nbytes / 2**20:.2f} MiB for {history.undo_count} steps "
          f"(the label map is {labels.nbytes / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
