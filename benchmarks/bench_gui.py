"""GUI speed, offscreen, in one run (prints a table):

1. redraw after a slice change with the overlay on: a 512x512 slice in an 800x800 axial view
   (target <= 16 ms), beside pyqtgraph alone drawing the same frame (grey image with levels + RGBA
   label overlay through a lookup table) as the reference;
2. opening the real GE series (../shared/data/dicom/ge_head_tilt) to the first image painted;
3. rebuilding the 3-D surfaces of a 512x512x40 label map in a worker thread (target <= 300 ms), and
   the GUI event loop's worst lateness meanwhile.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

GE = Path(os.environ.get("CTSEG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dicom" / "ge_head_tilt"
REPEATS = 40


def test_volume(depth=40, size=512):
    rng = np.random.default_rng(0)
    _, y, x = np.ogrid[:depth, :size, :size]
    c = size / 2
    head = ((y - c) / (0.42 * size)) ** 2 + ((x - c) / (0.35 * size)) ** 2 < 1
    hu = np.where(head, 35.0, -1000.0).astype(np.float32) + rng.normal(0, 5, (depth, size, size)).astype(np.float32)
    labels = np.zeros((depth, size, size), np.uint8)
    z, y, x = np.ogrid[:depth, :size, :size]
    labels[((z - 20) / 8.0) ** 2 + ((y - 200) / 40.0) ** 2 + ((x - 220) / 50.0) ** 2 < 1] = 1
    labels[((z - 12) / 6.0) ** 2 + ((y - 330) / 25.0) ** 2 + ((x - 330) / 60.0) ** 2 < 1] = 2
    labels[5:30, 120:135, 380:400] = 7
    return hu, labels


def median_ms(samples):
    return statistics.median(samples) * 1000, max(samples) * 1000


def bench_redraw(app, hu, labels):
    from ctseg_core.volume import Volume
    from app.session import Session
    from app.viewer.slice_view import SliceView

    session = Session()
    view = SliceView(session, "axial")
    view.resize(800, 800 + view.header.sizeHint().height())
    view.show()
    session.set_volume(Volume.from_array(hu, spacing=(5.0, 0.45, 0.45)))
    session.final.array[:] = labels
    session.set_position(20, 256, 256)
    app.processEvents()
    times = []
    for n in range(REPEATS):
        t = time.perf_counter()
        view.scroll(1 if n % 2 == 0 else -1)
        view.graphics.viewport().repaint()
        times.append(time.perf_counter() - t)
    assert view.graphics.viewport().width() >= 780
    view.close()
    return times


def bench_reference(app, hu, labels):
    import pyqtgraph as pg

    from app.viewer.overlay import class_lut  # (importing app.viewer also sets row-major images)

    gv = pg.GraphicsView()
    vb = pg.ViewBox(lockAspect=True, invertY=True)
    gv.setCentralItem(vb)
    grey, over = pg.ImageItem(), pg.ImageItem()
    over.setLookupTable(class_lut([True] * 8))
    over.setOpacity(0.5)
    vb.addItem(grey)
    vb.addItem(over)
    gv.resize(800, 800)
    gv.show()
    grey.setImage(hu[20], levels=(0, 80))
    over.setImage(labels[20], levels=(0, 255))
    vb.autoRange(padding=0)
    app.processEvents()
    times = []
    for n in range(REPEATS):
        z = 21 if n % 2 == 0 else 20
        t = time.perf_counter()
        grey.setImage(hu[z], autoLevels=False, levels=(0, 80))
        over.setImage(labels[z], autoLevels=False, levels=(0, 255))
        gv.viewport().repaint()
        times.append(time.perf_counter() - t)
    gv.close()
    return times


def bench_open_ge(app):
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow

    settings = QSettings(str(Path("/tmp") / "ctseg_bench_settings.ini"), QSettings.IniFormat)
    win = MainWindow(model_path="/nonexistent.safetensors", enable_3d=False, settings=settings, interactive=False)
    win.show()
    app.processEvents()
    painted = {}
    view = win.views["axial"]

    def on_volume():
        view.graphics.viewport().repaint()  # the first frame of the scan
        painted["t"] = time.perf_counter()

    win.session.volume_changed.connect(on_volume, type=__import__("PySide6.QtCore", fromlist=["Qt"]).Qt.QueuedConnection)
    t0 = time.perf_counter()
    win.open_path(str(GE))
    while "t" not in painted and time.perf_counter() - t0 < 60:
        app.processEvents()
        time.sleep(0.001)
    elapsed = painted.get("t", float("nan")) - t0
    shape = win.session.volume.shape if win.session.volume is not None else None
    win.close()
    return elapsed, shape


def bench_surfaces(app, labels):
    from ctseg_core.volume import Geometry
    from app.viewer.surfaces import class_surfaces
    from app.workers import run_task

    geometry = Geometry(labels.shape, (5.0, 0.45, 0.45))
    class_surfaces(labels[:, :64, :64], Geometry((labels.shape[0], 64, 64), (5.0, 0.45, 0.45)))  # warm up imports
    builds, lateness = [], []
    for _ in range(5):
        done = {}
        last = [time.perf_counter()]

        def tick():
            now = time.perf_counter()
            lateness.append(now - last[0] - 0.010)
            last[0] = now

        timer = QTimer(interval=10)
        timer.timeout.connect(tick)

        def build():
            t = time.perf_counter()
            surf = class_surfaces(labels, geometry)
            return time.perf_counter() - t, surf

        timer.start()
        last[0] = time.perf_counter()
        run_task(build, lambda r: done.update(r=r))
        while "r" not in done:
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        builds.append(done["r"][0])
    return builds, lateness


def bench_inference_latency(app, hu):
    """Event-loop lateness (10 ms timer) while a small real model segments 512x512x40 and the user scrolls."""
    import torch

    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.models import create_model
    from ctseg_core.predictor import Predictor
    from ctseg_core.preprocess import Plan
    from ctseg_core.volume import Volume
    from app.session import Session
    from app.viewer.slice_view import SliceView
    from app.workers import InferenceController

    torch.manual_seed(0)
    model = create_model("aa_unet", encoder="resnest14d", decoder_channels=(8, 8, 16, 16, 32, 32))
    card = ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict())
    session = Session()
    view = SliceView(session, "axial")
    view.resize(800, 800)
    view.show()
    session.set_volume(Volume.from_array(hu, spacing=(5.0, 0.45, 0.45)))
    ctl = InferenceController()
    ctl.slice_ready.connect(lambda z, lab, unc: session.apply_predicted_slice(z, lab, unc))
    ctl.running_changed.connect(session.set_inference_running)
    loaded = []
    ctl.model_loaded.connect(loaded.append)
    ctl.load_model(Predictor(model, card, device="cpu"))
    while not loaded:
        app.processEvents()
        time.sleep(0.001)
    late, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        late.append(now - last[0] - 0.010)
        last[0] = now
        if len(late) % 5 == 0:
            view.scroll(1 if len(late) % 10 else -1)

    timer = QTimer(interval=10)
    timer.timeout.connect(tick)
    t0 = time.perf_counter()
    ctl.start(session.volume, 20)
    last[0] = time.perf_counter()
    timer.start()
    while ctl.running:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    total = time.perf_counter() - t0
    ctl.shutdown()
    return total, late


def main() -> int:
    app = QApplication.instance() or QApplication([])
    hu, labels = test_volume()
    rows = []
    redraw = bench_redraw(app, hu, labels)
    ref = bench_reference(app, hu, labels)
    med, worst = median_ms(redraw)
    rmed, rworst = median_ms(ref)
    rows.append(("slice change + redraw, overlay on (512^2 in 800x800)", f"{med:.1f}", f"{worst:.1f}", "<= 16"))
    rows.append(("  reference: pyqtgraph alone, grey + RGBA LUT overlay", f"{rmed:.1f}", f"{rworst:.1f}",
                 f"ratio {med / rmed:.2f}"))
    if GE.is_dir():
        t_open, shape = bench_open_ge(app)
        rows.append((f"open GE series -> first image painted {shape}", f"{t_open * 1000:.0f}", "", ""))
    else:
        rows.append(("open GE series (data not found)", "-", "", ""))
    builds, lateness = bench_surfaces(app, labels)
    bmed, bworst = median_ms(builds)
    rows.append(("3-D surfaces of 512x512x40 labels (worker thread)", f"{bmed:.0f}", f"{bworst:.0f}", "<= 300"))
    rows.append(("  GUI event-loop lateness during the builds (10 ms timer)", f"{statistics.median(lateness) * 1000:.1f}",
                 f"{max(lateness) * 1000:.1f}", "< 50"))
    if "--no-infer" not in sys.argv:
        total, late = bench_inference_latency(app, hu)
        rows.append((f"GUI event-loop lateness during inference (small model, {total:.0f} s, scrolling)",
                     f"{statistics.median(late) * 1000:.1f}", f"{max(late) * 1000:.1f}",
                     f"< 50 (p99 {np.percentile(late, 99) * 1000:.1f})"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'median ms':>9}  {'max ms':>7}  target")
    for name, a, b, c in rows:
        print(f"{name:<{width}}  {a:>9}  {b:>7}  {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
