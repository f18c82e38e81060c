"""The main window end to end: real DICOM series, model runs in the background, errors as dialogs."""

import json
import time

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from gui_helpers import ThresholdPredictor, open_and_wait, phantom_volume, tiny_real_predictor
from ctseg_core.io.images import write_volume


def _use_predictor(qtbot, win, predictor):
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(predictor)


def test_opens_real_ge_series_without_model_as_viewer(qtbot, window, ge_tilt):
    state = open_and_wait(qtbot, window, ge_tilt)
    assert state == "no model"
    vol = window.session.volume
    assert vol is not None and vol.shape[2] == 512 and vol.shape[1] >= 512  # tilt correction pads rows
    assert window.views["axial"].hu_item.image is not None
    assert window.model_label.text() == "No model: viewer only"
    assert "model: no model" in window.windowTitle()
    logs = "\n".join(window.log_panel.text_lines())
    assert "No model installed" in logs
    assert any("loader:" in t for t in window.log_panel.text_lines()), logs  # tilt / spacing notes shown
    assert str(ge_tilt) in window.recent_files()


def test_folder_without_dicom_shows_an_error_not_a_crash(qtbot, window, tmp_path):
    empty = tmp_path / "not_dicom"
    empty.mkdir()
    (empty / "readme.txt").write_text("hello")
    assert open_and_wait(qtbot, window, empty) == "failed"
    assert window.error_boxes and window.error_boxes[-1].isVisible()
    assert str(empty) in window.error_boxes[-1].text() or "DICOM" in window.error_boxes[-1].text()
    assert any(level == "error" for level, _ in window.log_panel.lines)
    assert window.session.volume is None
    assert open_and_wait(qtbot, window, tmp_path / "missing.nii.gz") == "failed"  # and it keeps working


def test_multi_series_folder_opens_the_recommended_ct(qtbot, window, philips_multi):
    assert open_and_wait(qtbot, window, philips_multi) == "no model"
    vol = window.session.volume
    assert vol.shape[2] == 512 and vol.shape[0] >= 50
    assert any("series in" in t for t in window.log_panel.text_lines())


def test_series_dialog_lists_series_and_preselects(qtbot, philips_multi):
    from app.panels.series_dialog import SeriesDialog
    from ctseg_core.io.dicom import scan_folder

    scan = scan_folder(philips_multi)
    dialog = SeriesDialog(scan, str(philips_multi))
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == len(scan.series) >= 3
    assert dialog.chosen_uid() == scan.selected().series_uid


def test_stub_model_fills_overlay_findings_and_exports(qtbot, window, tmp_path):
    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(), path)
    stub = ThresholdPredictor(delay_s=0.01)
    _use_predictor(qtbot, window, stub)
    assert "stub-threshold v0" in window.model_label.text() and "stub-threshold" in window.windowTitle()
    ax = window.views["axial"]
    window.session.position = (5, 64, 64)  # no scan yet; the view starts at the middle slice after opening
    assert open_and_wait(qtbot, window, path) == "inferred"
    s = window.session
    assert stub.calls == [6]  # the viewed (middle) slice first
    assert s.predicted_slices.all()
    assert (s.final.array == 1).sum() == (phantom_volume().array == 70).sum() == 6 * 19 * 20 and (s.final.array[:3] == 0).all()
    ax.set_slice(5)
    overlay = ax.rendered_overlay()
    assert overlay[45, 50, 3] == 255 and tuple(overlay[45, 50, :3]) == (230, 25, 75)
    qtbot.waitUntil(lambda: window.findings_panel.findings is not None and not window.findings_panel.updating
                    and window.findings_panel.findings.by_key("ich").abc2 is not None, timeout=5000)
    ich = window.findings_panel.findings.by_key("ich")
    assert ich.positive and ich.slices == [3, 4, 5, 6, 7, 8] and ich.abc2 is not None
    assert ich.origin == "model" and ich.confidence.mean_probability == pytest.approx(0.7, abs=0.01)
    assert window.findings_panel.table.item(0, 3).text() == "positive?"  # from the model, nobody reviewed it
    assert window.findings_panel.table.item(0, 3).font().italic()
    window.export_findings(str(tmp_path / "f.json"))
    window.export_findings(str(tmp_path / "f.csv"))
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["classes"][0]["voxels"] == ich.voxels
    assert (tmp_path / "f.csv").read_text().splitlines()[1].startswith("1,ich,")
    # the uncertainty display fills from the streamed probabilities
    s.set_show_uncertainty(True)
    assert ax.uncertainty_item.isVisible() and np.nanmax(s.uncertainty) == pytest.approx(0.3, abs=0.01)


def test_cancel_keeps_the_gui_alive_and_stale_results_are_dropped(qtbot, window, tmp_path):
    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(depth=30), path)
    _use_predictor(qtbot, window, ThresholdPredictor(delay_s=0.05))
    with qtbot.waitSignal(window.inference.cancelled, timeout=20000):
        window.open_path(path)
        qtbot.waitUntil(lambda: window.session.predicted_slices.any(), timeout=20000)
        window.cancel_inference()
    n_done = window.session.predicted_slices.sum()
    assert 0 < n_done < 30 and not window.inference.running
    qtbot.wait(200)
    assert window.session.predicted_slices.sum() == n_done  # nothing arrives after the cancel
    # a second run replaces the first; slices of a stale request id are ignored
    with qtbot.waitSignal(window.inference.finished, timeout=30000):
        window.run_inference()
        stale_id = window.inference.request_id - 1
        window.inference.worker.slice_ready.emit(stale_id, 0, np.full((128, 128), 5, np.uint8), None)
    assert window.session.predicted_slices.all() and (window.session.prediction.array[0] != 5).all()


def test_model_failure_is_reported(qtbot, window, tmp_path):
    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(depth=4), path)
    _use_predictor(qtbot, window, ThresholdPredictor(fail=True))
    assert open_and_wait(qtbot, window, path) == "failed"
    assert "stub predictor failure" in window.error_boxes[-1].text()


def test_real_small_model_runs_and_event_loop_stays_responsive(qtbot, window, tmp_path):
    """A real All-Attention U-Net through the real Predictor; a 10 ms timer measures event-loop lateness."""
    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(depth=16, size=192), path)
    _use_predictor(qtbot, window, tiny_real_predictor())
    assert "aa_unet" in window.model_label.text()
    ax = window.views["axial"]
    window._auto_override = False  # open first, measure the machine's own noise, then run the model
    assert open_and_wait(qtbot, window, path) == "not run"

    def lateness_while(wait):
        """Lateness of a 10 ms timer while ``wait()`` runs and the user scrolls every 50 ms."""
        late, last = [], [time.perf_counter()]

        def tick():
            now = time.perf_counter()
            late.append(now - last[0] - 0.010)
            last[0] = now

        timer, scroll = QTimer(interval=10), QTimer(interval=50)
        timer.timeout.connect(tick)
        scroll.timeout.connect(lambda: ax.scroll(1 if len(late) % 2 else -1))
        last[0] = time.perf_counter()
        timer.start()
        scroll.start()
        wait()
        timer.stop()
        scroll.stop()
        return np.array(late)

    baseline = lateness_while(lambda: qtbot.wait(1500))

    def run_model():
        with qtbot.waitSignal(window.pipeline_done, timeout=120000) as blocker:
            window.run_inference()
        assert blocker.args[0] == "inferred"

    during = lateness_while(run_model)
    assert window.session.predicted_slices.all() and len(during) > 20
    p99, p99_base = float(np.percentile(during, 99)), float(np.percentile(baseline, 99))
    print(f"lateness p99 {p99 * 1000:.1f} ms (baseline {p99_base * 1000:.1f} ms), max {during.max() * 1000:.1f} ms")
    # under 50 ms at the 99th percentile, beyond what the machine shows without the model (other
    # processes sharing the CPU); on a quiet machine the baseline is ~1 ms (see benchmarks/bench_gui.py)
    assert p99 < 0.050 + p99_base, f"event loop late by {p99 * 1000:.0f} ms (p99; baseline {p99_base * 1000:.0f} ms)"


def test_opening_another_scan_during_inference_drops_the_old_run(qtbot, window, tmp_path):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    write_volume(phantom_volume(depth=30), a)
    write_volume(phantom_volume(depth=5, size=64), b)
    _use_predictor(qtbot, window, ThresholdPredictor(delay_s=0.05))
    window.open_path(a)
    qtbot.waitUntil(lambda: window.session.predicted_slices.any(), timeout=20000)
    errors = []
    import sys
    old_hook = sys.excepthook
    sys.excepthook = lambda *exc: errors.append(exc)
    try:
        assert open_and_wait(qtbot, window, b, timeout=30000) == "inferred"
        qtbot.wait(300)
    finally:
        sys.excepthook = old_hook
    assert not errors
    assert window.session.volume.shape == (5, 64, 64) and window.session.predicted_slices.all()


def test_label_file_shown_as_corrected_map(qtbot, window, tmp_path):
    from ctseg_core.io.images import write_labels
    from ctseg_core.volume import LabelMap

    vol = phantom_volume(depth=6, size=64)
    write_volume(vol, tmp_path / "s.nii.gz")
    lab = np.zeros(vol.shape, np.uint8)
    lab[2:5, 10:20, 10:20] = 2
    write_labels(LabelMap(lab, vol.geometry), tmp_path / "l.nii.gz")
    other = phantom_volume(depth=7, size=64)
    write_labels(LabelMap(np.zeros(other.shape, np.uint8), other.geometry), tmp_path / "wrong.nii.gz")
    open_and_wait(qtbot, window, tmp_path / "s.nii.gz")
    assert window.open_labels(str(tmp_path / "l.nii.gz"))
    assert (window.session.final.array == 2).sum() == 300 and window.session.edited_slices.all()
    qtbot.waitUntil(lambda: window.findings_panel.findings is not None
                    and window.findings_panel.findings.by_key("sdh").positive, timeout=5000)
    assert not window.open_labels(str(tmp_path / "wrong.nii.gz"))
    assert "does not belong" in window.error_boxes[-1].text()


def test_go_to_class_moves_to_the_largest_area(qtbot, window, tmp_path):
    vol = phantom_volume(depth=8, size=64)
    write_volume(vol, tmp_path / "s.nii.gz")
    open_and_wait(qtbot, window, tmp_path / "s.nii.gz")
    s = window.session
    s.final.array[6, 40:50, 10:14] = 5
    s.final.array[2, 40:42, 10:12] = 5
    s.notify_labels_edited()
    assert window.go_to_largest_finding()
    assert s.position[0] == 6 and 40 <= s.position[1] < 50 and 10 <= s.position[2] < 14
    assert window.views["axial"].slice_index == 6
    assert not window.go_to_class(3)


def test_window_preset_keys_and_drop_to_open(qtbot, window, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent
    from PySide6.QtCore import Qt

    keys = {name: [s.toString() for s in a.shortcuts()] for name, a in window.preset_actions.items()}
    assert keys == {"brain": ["F1", "Alt+1"], "subdural": ["F2", "Alt+2"], "stroke": ["F3", "Alt+3"],
                    "bone": ["F4", "Alt+4"]}
    window.preset_actions["subdural"].trigger()
    assert (window.session.window.level, window.session.window.width) == (75, 215)
    path = tmp_path / "dropped.nii.gz"
    write_volume(phantom_volume(depth=3, size=32), path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    ev = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(window.pipeline_done, timeout=20000):
        window.dropEvent(ev)
    assert window.session.volume.shape == (3, 32, 32)


def test_classes_panel_and_menus_stay_in_step(window):
    s, panel = window.session, window.classes_panel
    window.uncertainty_action.trigger()
    assert s.show_uncertainty and panel.uncertainty.isChecked()
    panel.outlined.setChecked(True)
    assert s.outline and window.outline_action.isChecked()
    s.set_show_source("prediction")
    assert panel.source.currentData() == "prediction"
    panel.show_boxes[3].setChecked(False)
    assert s.class_visible[3] is False
    s.set_class_visible(3, True)
    assert panel.show_boxes[3].isChecked()
    panel.lock_boxes[2].setChecked(True)
    assert s.is_locked(2) and s.locked_classes() == [2]
    panel.opacity.setValue(80)
    assert s.opacity == pytest.approx(0.8)
