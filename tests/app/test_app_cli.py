"""ctseg-app end to end: a saved checkpoint loaded by path, and --screenshot in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gui_helpers import open_and_wait, phantom_volume, tiny_real_predictor
from ctseg_core.io.images import write_volume

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from ctseg_core.checkpoint import save_checkpoint

    pred = tiny_real_predictor()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(pred.model, pred.card, path)
    return path


def test_checkpoint_path_loads_in_the_worker_and_segments(qtbot, settings, tmp_path, checkpoint):
    from app.main_window import MainWindow

    scan = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(depth=6, size=96), scan)
    win = MainWindow(model_path=str(checkpoint), enable_3d=False, settings=settings, interactive=False)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.model_state != "loading", timeout=60000)
    assert win.model_state == "ready" and win.model_label.text().startswith("Model: aa_unet v")
    assert win.model_label.text().endswith("not for clinical use")
    assert "trained on nothing" in win.windowTitle()
    logged = []
    win.session.log_message.connect(lambda level, text: logged.append(text))
    assert open_and_wait(qtbot, win, scan, timeout=120000) == "inferred"
    said = [t for t in logged if t.startswith("the anatomical guard removed")]  # what the guard took, in the log
    assert len(said) == 1 and "no unsure-piece rule for this model" in said[0]
    assert win.session.guard_report.describe() == said[0]  # kept with the prediction, said beside it
    assert win.session.guard_report.brief() in win.findings_panel.model_box.prediction_label.text()
    assert win.session.predicted_slices.all()
    assert np.isfinite(win.session.uncertainty).all()
    win.inference.shutdown()


def test_screenshot_command(tmp_path, checkpoint):
    from PySide6.QtGui import QImage

    scan = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(depth=6, size=96), scan)
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path))  # settings go to the temp home
    proc = subprocess.run([sys.executable, "-m", "app", str(scan), "--model", str(checkpoint), "--screenshot",
                           str(out)], capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    img = QImage(str(out))
    assert img.width() >= 1200 and img.height() >= 800
    # the axial view shows the phantom: bright skull pixels exist left of the docks
    colours = {img.pixel(x, y) for x in range(100, 600, 7) for y in range(100, 700, 7)}
    assert len(colours) > 3


def test_the_screenshot_waits_for_the_lesion_measurements(qtbot, window):
    """The Lesions dock recomputes after the finished prediction (debounced, in a worker): a screenshot taken
    before that shows the streamed labels' lesions, so the screenshot waits for it like for the findings."""
    import time

    from app.__main__ import _ScreenshotWhenIdle
    from app.measurements import install_measurements

    install_measurements(window)
    shot = _ScreenshotWhenIdle(window, "unused.png", app=None)
    shot.timer.stop()
    shot.done_at = time.perf_counter() - 10
    assert shot._settled()
    window.measurements.schedule()  # labels changed: a recomputation is due
    assert not shot._settled()
    qtbot.waitUntil(lambda: not window.measurements.pending, timeout=10000)
    assert shot._settled()
