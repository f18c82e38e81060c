"""Scan triage in the app: a model that gives per-slice probabilities (RADnet) shows the triage strip beside the
axial view and no overlay; clicking the strip goes to a slice; the case list shows and sorts by the scan's
probability; a reopened case shows its stored triage."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from gui_helpers import open_and_wait, make_window, write_phantom
from ctseg_core.predictor import slice_order
from ctseg_core.store import Workspace
from ctseg_core.triage import Triage
from ctseg_core.volume import LabelMap


class TriagePredictor:
    """Follows the Predictor's contract for a scan model: empty labels, given slice probabilities."""

    def __init__(self, probabilities, name="stub-triage v0"):
        self.probabilities = np.asarray(probabilities, np.float32)
        self.card = SimpleNamespace(summary=lambda: f"{name} — trained on nothing (test stub)")

    def predict(self, volume, start_slice=None, on_slice=None, cancel=None, progress=None):
        depth = volume.shape[0]
        p = self.probabilities[:depth]
        empty = np.zeros(volume.shape[1:], np.uint8)
        for n, z in enumerate(slice_order(depth, start_slice), start=1):
            if on_slice is not None:
                on_slice(z, empty, None)
            if progress is not None:
                progress(n, depth, "")
        return SimpleNamespace(labels=LabelMap(np.zeros(volume.shape, np.uint8), volume.geometry),
                               slice_probabilities=p, triage=Triage(p))


POSITIVE = [0.05, 0.1, 0.2, 0.7, 0.9, 0.95, 0.8, 0.3, 0.1, 0.05, 0.02, 0.01]  # slices 4-7
NEGATIVE = [0.05, 0.6, 0.1, 0.7, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.02, 0.01]


def _run_with(qtbot, win, predictor, scan):
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(predictor)
    assert open_and_wait(qtbot, win, scan) == "inferred"


def test_triage_strip_shows_slice_probabilities_and_jumps_to_a_slice(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    strip = win.triage_strip
    assert not strip.isVisible()
    logs = []
    win.session.log_message.connect(lambda level, text: logs.append(text))
    _run_with(qtbot, win, TriagePredictor(POSITIVE), scan)
    qtbot.waitUntil(strip.isVisible, timeout=5000)
    assert np.allclose(win.session.slice_probabilities, POSITIVE)
    assert not win.session.prediction.array.any()  # no overlay
    assert strip.triage.positive and any("triage: POSITIVE (p 0.80): 4 positive slices, 4-7" in t for t in logs)
    # slice 1 at the bottom: clicking the row of slice 6 (index 5) goes there
    row = strip._row_rect(5, 12)
    QTest.mouseClick(strip, Qt.LeftButton, Qt.NoModifier, QPoint(strip.width() // 2, int(row.center().y())))
    assert win.session.position[0] == 5
    assert strip.slice_at(strip._row_rect(0, 12).center().y()) == 0
    # what it draws: red bars on the positive slices, none on the others
    image = strip.grab().toImage()
    def red_on(z):
        r = strip._row_rect(z, 12)
        y = int(r.center().y())
        return any(image.pixelColor(x, y).red() > 200 and image.pixelColor(x, y).green() < 100
                   for x in range(8, strip.width() - 4))
    assert all(red_on(z) for z in (3, 4, 5, 6)) and not any(red_on(z) for z in (0, 8, 11))
    # a new model run without slice probabilities hides the strip
    from gui_helpers import ThresholdPredictor

    _run_with(qtbot, win, ThresholdPredictor(), scan)
    assert win.session.slice_probabilities is None and not strip.isVisible()
    win.close()
    win.inference.shutdown()


def test_case_list_sorts_by_the_scan_probability_and_a_reopened_case_shows_its_triage(qtbot, settings, tmp_path,
                                                                                     workspace):
    scans = [write_phantom(tmp_path / f"scan{n}.nii.gz", seed_shift=float(n)) for n in range(3)]
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    panel = editor.cases_panel
    for scan, p in zip(scans[:2], (NEGATIVE, POSITIVE)):
        _run_with(qtbot, win, TriagePredictor(p), scan)
        case = editor.store.case
        qtbot.waitUntil(lambda: Workspace(workspace).case(case.id).record.triage != {}, timeout=10000)
    win._set_auto_infer(False)  # from here on scans open without a model run
    assert open_and_wait(qtbot, win, scans[2]) == "not run"
    assert win.session.slice_probabilities is None and not win.triage_strip.isVisible()
    records = {r.description: r for r in Workspace(workspace).cases()}
    assert records["scan1.nii.gz"].triage["positive"] and records["scan1.nii.gz"].triage["probability"] == 0.8
    assert not records["scan0.nii.gz"].triage["positive"]
    qtbot.waitUntil(lambda: panel.table.item(1, 3) is not None and panel.table.item(1, 3).text() != "", timeout=5000)
    texts = {panel.table.item(r, 0).text(): panel.table.item(r, 3).text() for r in range(3)}
    assert not panel.table.isColumnHidden(3)  # shown once a triage model has run
    assert texts["scan1.nii.gz"] == "0.80 POS" and texts["scan0.nii.gz"].endswith("neg")
    panel.table.sortItems(3, Qt.DescendingOrder)
    assert [panel.table.item(r, 0).text() for r in range(3)] == ["scan1.nii.gz", "scan0.nii.gz", "scan2.nii.gz"]
    assert panel.record_at(0).description == "scan1.nii.gz"  # rows follow the sort
    # the likeliest scan opens from the top of the sorted list and shows its stored triage (no model run)
    with qtbot.waitSignal(win.pipeline_done, timeout=60000) as blocker:
        panel.open_row(0)
    assert blocker.args[0] == "not run"
    assert editor.store.case.record.description == "scan1.nii.gz"
    qtbot.waitUntil(lambda: win.session.slice_probabilities is not None, timeout=5000)
    assert np.allclose(win.session.slice_probabilities, POSITIVE) and win.triage_strip.isVisible()
    win.close()
    win.inference.shutdown()
