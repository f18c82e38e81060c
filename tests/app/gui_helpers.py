"""GUI test helpers (imported by tests/app): a predictor stub that follows ctseg_core.predictor's contract, the tiny real
model, small volumes with known content, a main window with editing, and mouse strokes on its views."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ctseg_core.io.images import write_volume
from ctseg_core.jobs import CancelToken
from ctseg_core.volume import LabelMap, Volume

BLOOD_HU = (50.0, 90.0)
MOVE_GAP_MS = 15  # pyqtgraph drops mouse moves closer than 10 ms (its mouseRateLimit of 100 per second)


class ThresholdPredictor:
    """Labels blood-density voxels as ``class_id`` (ICH), one slice at a time in the predictor's order, with
    a delay. ``name`` tells two stub models apart (their identity has no weights hash)."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False, class_id: int = 1, name: str = "stub-threshold v0",
                 finish=None, guard_report=None):
        """``finish(labels)``: the returned labels, changed after the slices were sent (as the guard's speck
        rule does); ``guard_report`` what the prediction says the guard did."""
        self.card = SimpleNamespace(summary=lambda: f"{name} — trained on nothing (test stub)")
        self.delay_s, self.fail, self.calls, self.class_id = delay_s, fail, [], class_id
        self.finish, self.guard_report = finish, guard_report

    def predict(self, volume: Volume, start_slice=None, on_slice=None, cancel: CancelToken | None = None,
                progress=None):
        from ctseg_core.predictor import slice_order

        depth = volume.shape[0]
        self.calls.append(start_slice)
        labels = np.zeros(volume.shape, np.uint8)
        for n, z in enumerate(slice_order(depth, start_slice), start=1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if self.fail:
                raise RuntimeError("stub predictor failure")
            time.sleep(self.delay_s)
            hu = volume.array[z]
            blood = (hu >= BLOOD_HU[0]) & (hu <= BLOOD_HU[1])
            labels[z] = blood.astype(np.uint8) * self.class_id
            p1 = blood.astype(np.float16)
            probs = np.zeros((8,) + hu.shape, np.float16)
            probs[0], probs[self.class_id] = 1 - p1 * 0.7, p1 * 0.7  # uncertainty 0.3 on blood
            if on_slice is not None:
                on_slice(z, labels[z], probs)
            if progress is not None:
                progress(n, depth, "")
        if self.finish is not None:
            labels = self.finish(labels.copy())
        return SimpleNamespace(labels=LabelMap(labels, volume.geometry), guard_report=self.guard_report)


def phantom_volume(depth=12, size=128, spacing=(5.0, 0.8, 0.8)) -> Volume:
    """A head-like ellipse (brain 35 HU, skull 1200 HU) with a 70 HU blob on slices 3..8."""
    _, y, x = np.ogrid[:depth, :size, :size]
    c = size / 2
    head = ((y - c) / (0.4 * size)) ** 2 + ((x - c) / (0.33 * size)) ** 2 < 1
    brain = ((y - c) / (0.37 * size)) ** 2 + ((x - c) / (0.30 * size)) ** 2 < 1
    arr = np.full((depth, size, size), -1000.0, np.float32)
    arr[np.broadcast_to(head, arr.shape)] = 1200.0
    arr[np.broadcast_to(brain, arr.shape)] = 35.0
    arr[3:9, int(0.3 * size):int(0.45 * size), int(0.35 * size):int(0.5 * size)] = 70.0
    return Volume.from_array(arr, spacing=spacing)


def tiny_real_predictor():
    """A small real All-Attention U-Net (random weights) behind the real Predictor, on the CPU."""
    from tiny_models import tiny_predictor

    return tiny_predictor()


def open_and_wait(qtbot, win, path, timeout=60000, **kw) -> str:
    with qtbot.waitSignal(win.pipeline_done, timeout=timeout) as blocker:
        win.open_path(path, **kw)
    return blocker.args[0]


# ---------------------------------------------------------------- a window with editing, mouse input
def make_window(qtbot, settings, tmp_path, workspace, autosave_ms=150):
    from app.editing import install_editing
    from app.main_window import MainWindow

    win = MainWindow(model_path=str(tmp_path / "no_model.safetensors"), enable_3d=False, settings=settings,
                     interactive=False)
    qtbot.addWidget(win)
    editor = install_editing(win, workspace)
    editor.store.autosave_timer.setInterval(autosave_ms)
    win.show()
    win.activateWindow()
    qtbot.waitUntil(lambda: win.isActiveWindow(), timeout=5000)
    return win, editor


def write_phantom(path, seed_shift=0.0):
    vol = phantom_volume()
    vol.array[0, 0, 0] += seed_shift  # a different scan (content hash) per value
    write_volume(vol, path)
    return path


def widget_point(view, row, col):
    """Viewport pixel of the in-plane position (row, col) (voxel index, fractional; centre = n + 0.5)."""
    x, y = view.index_to_view(row, col)
    return view.graphics.mapFromScene(view.viewbox.mapViewToScene(QPointF(x, y)))


def stroke_point(view, pos):
    """What a tool sees at the viewport pixel ``pos``: (slice, row, col) voxel-centre coordinates in the plane."""
    p = view.viewbox.mapSceneToView(view.graphics.mapToScene(pos))
    index = view.view_to_index(p.x(), p.y())
    plane = view.plane
    return float(view.slice_index), index[plane.row_axis] - 0.5, index[plane.col_axis] - 0.5


def settle():
    """Let pending layout changes (tool bars showing a tool's options) reach the views before mapping."""
    for _ in range(3):
        QApplication.processEvents()


def drag(view, cells, modifiers=Qt.NoModifier):
    """Press at the first (row, col), move through the others, release at the last; returns the pixels."""
    settle()
    vp = view.graphics.viewport()
    pts = [widget_point(view, r + 0.5, c + 0.5) for r, c in cells]
    QTest.mousePress(vp, Qt.LeftButton, modifiers, pts[0])
    for p in pts[1:]:
        QTest.qWait(MOVE_GAP_MS)
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, Qt.LeftButton, modifiers, pts[-1])
    return pts


def click(view, row, col, modifiers=Qt.NoModifier):
    settle()
    p = widget_point(view, row + 0.5, col + 0.5)
    QTest.mouseClick(view.graphics.viewport(), Qt.LeftButton, modifiers, p)
    return p


def key(win, k, modifiers=Qt.NoModifier):
    QTest.keyClick(win.views["axial"].graphics, k, modifiers)


def to_zyx(view, point):
    out = [0.0, 0.0, 0.0]
    plane = view.plane
    out[plane.slice_axis], out[plane.row_axis], out[plane.col_axis] = point
    return tuple(out)
