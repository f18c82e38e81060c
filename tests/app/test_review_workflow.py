"""The review workflow keeps what the model and the people produced: Esc never cancels a model run, a
re-run keeps the previous prediction until it is complete, a reopened case does not run the same model
again. Small generated scans, stub predictors, a temporary workspace."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from gui_helpers import ThresholdPredictor, click, key, make_window, open_and_wait, write_phantom
from ctseg_core.store import Workspace


def _use(qtbot, win, predictor):
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(predictor)


def _close(win):
    win.close()
    win.inference.shutdown()


def test_esc_in_a_popup_closes_the_popup_and_not_the_model_run(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, _ = make_window(qtbot, settings, tmp_path, workspace)
    _use(qtbot, win, ThresholdPredictor(delay_s=0.3))
    with qtbot.waitSignal(win.pipeline_done, timeout=60000) as done:
        win.open_path(scan)
        qtbot.waitUntil(lambda: win.session.inference_running, timeout=30000)
        box = QMessageBox(QMessageBox.Information, "A popup", "dismiss me", QMessageBox.Ok, win)
        box.setWindowModality(Qt.NonModal)
        box.show()
        box.activateWindow()
        qtbot.waitUntil(box.isActiveWindow, timeout=5000)
        QTest.keyClick(box, Qt.Key_Escape)
        qtbot.waitUntil(lambda: not box.isVisible(), timeout=5000)
        assert win.session.inference_running  # the popup went, the model run goes on
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=5000)
        key(win, Qt.Key_Escape)  # Esc in the main window with no tool: nothing to cancel there either
        field = win.editing.cases_panel.annotator  # nor in a text field of a dock
        field.setFocus()
        QTest.keyClick(field, Qt.Key_Escape)
        qtbot.wait(400)  # a cancel would reach the worker within one slice
        assert win.session.inference_running
    assert done.args[0] == "inferred" and win.session.prediction_complete
    _close(win)


def test_a_cancelled_rerun_keeps_the_previous_prediction(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    s = win.session
    _use(qtbot, win, ThresholdPredictor())
    assert open_and_wait(qtbot, win, scan) == "inferred"
    old_pred, old_final = s.prediction.array.copy(), s.final.array.copy()
    old_unc = s.uncertainty.copy()
    assert (old_pred == 1).any() and not np.isnan(old_unc).any()
    qtbot.waitUntil(lambda: win.findings_panel.findings is not None and not win.findings_panel.updating
                    and win.findings_panel.findings.by_key("ich").voxels > 0, timeout=10000)
    ich_ml = win.findings_panel.findings.by_key("ich").volume_ml

    # a different model (it calls the blood SDH), slow; cancel it half-way
    _use(qtbot, win, ThresholdPredictor(delay_s=0.15, class_id=2, name="stub-sdh v9"))
    changes = []
    s.labels_changed.connect(lambda which, box: changes.append(which))
    with qtbot.waitSignal(win.pipeline_done, timeout=60000) as done:
        win.run_inference()
        assert win.model.rerunning and win.model.progress_text.isVisible()
        qtbot.waitUntil(lambda: win.model.progress.value() >= 4, timeout=30000)
        win.cancel_action.trigger()
    assert done.args[0] == "cancelled"
    assert np.array_equal(s.prediction.array, old_pred) and np.array_equal(s.final.array, old_final)
    assert np.array_equal(s.uncertainty, old_unc) and s.prediction_complete and changes == []
    assert "stub-threshold v0" in s.prediction_model.label  # still the model that made what is shown
    qtbot.wait(500)  # findings (debounced) would have changed by now
    assert win.findings_panel.findings.by_key("ich").volume_ml == ich_ml
    assert win.findings_panel.findings.by_key("sdh").voxels == 0

    # the same re-run to the end replaces the prediction in one piece
    with qtbot.waitSignal(win.pipeline_done, timeout=60000) as done:
        win.run_inference()
    assert done.args[0] == "inferred"
    assert np.array_equal(s.prediction.array, np.where(old_pred == 1, 2, 0))
    assert np.array_equal(s.final.array, s.prediction.array) and "stub-sdh v9" in s.prediction_model.label
    _close(win)


def test_reopening_with_a_stored_prediction_of_the_active_model_does_not_rerun(qtbot, settings, tmp_path,
                                                                               workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    _use(qtbot, win, ThresholdPredictor())
    assert open_and_wait(qtbot, win, scan) == "inferred"
    case_id = editor.store.case.id
    qtbot.waitUntil(lambda: Workspace(workspace).case(case_id).record.prediction_saved != "", timeout=10000)
    predicted, unc = win.session.prediction.array.copy(), win.session.uncertainty.copy()
    _close(win)

    win2, _ = make_window(qtbot, settings, tmp_path, workspace)
    same = ThresholdPredictor()
    _use(qtbot, win2, same)
    assert open_and_wait(qtbot, win2, scan) == "stored"
    assert same.calls == []  # the model did not run again
    s = win2.session
    assert np.array_equal(s.prediction.array, predicted) and s.prediction_complete
    assert np.abs(s.uncertainty - unc).max() <= 0.5 / 255 + 1e-6  # its uncertainty came back too
    assert win2.model.has_current_prediction()
    with qtbot.waitSignal(win2.pipeline_done, timeout=60000) as done:  # Re-run on request
        win2.findings_panel.rerun_button.click()
    assert done.args[0] == "inferred" and len(same.calls) == 1
    _close(win2)

    win3, _ = make_window(qtbot, settings, tmp_path, workspace)  # another active model: it runs
    other = ThresholdPredictor(name="stub-threshold v1")
    _use(qtbot, win3, other)
    assert open_and_wait(qtbot, win3, scan) == "inferred" and len(other.calls) == 1
    _close(win3)


def test_ai_findings_look_unreviewed_until_a_person_marks_the_case(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    _use(qtbot, win, ThresholdPredictor())
    assert open_and_wait(qtbot, win, scan) == "inferred"
    panel = win.findings_panel
    qtbot.waitUntil(lambda: not panel.updating and panel.findings.by_key("ich").origin == "model", timeout=10000)
    scan_cell, review_cell, conf_cell = (panel.table.item(0, c) for c in (3, 5, 4))
    assert scan_cell.text() == "positive?" and scan_cell.font().italic()
    assert review_cell.text() == "AI, unreviewed" and conf_cell.text() == "0.70 / 0%"
    assert "stub-threshold v0" in panel.model_box.model_label.text()
    assert panel.model_box.prediction_label.text() == "Prediction by stub-threshold v0"

    win.session.set_active_class(2)  # a person paints SDH somewhere: "drawn", still not reviewed
    win.session.final.array[2, 10:20, 10:20] = 2
    win.session.notify_labels_edited((2, 3, 10, 20, 10, 20))
    qtbot.waitUntil(lambda: not panel.updating and panel.findings.by_key("sdh").origin == "person", timeout=10000)
    assert panel.table.item(1, 5).text() == "drawn, unrev."

    editor.store.set_annotator("dr_test")
    editor.request_status("corrected")  # reviewed: the same findings now read as results
    assert panel.reviewed and panel.review_text == "corrected by dr_test"
    assert panel.table.item(0, 3).text() == "POSITIVE" and not panel.table.item(0, 3).font().italic()
    assert panel.table.item(0, 5).text() == "✓ reviewed"
    _close(win)


def test_findings_follow_an_edit_at_once_and_say_what_is_still_updating(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    _use(qtbot, win, ThresholdPredictor())
    assert open_and_wait(qtbot, win, scan) == "inferred"
    panel, s = win.findings_panel, win.session
    qtbot.waitUntil(lambda: not panel.updating and panel.findings.by_key("ich").abc2 is not None, timeout=10000)
    before = panel.findings.by_key("ich").voxels
    s.set_position(5, 64, 64)
    s.set_active_class(0)
    editor.select_tool("component")
    editor.options.set(component_3d=False)
    click(win.views["axial"], 47, 50)  # removes the ICH of slice 6 (one undo step)
    removed = before - int((s.final.array == 1).sum())
    assert removed > 0
    # no event loop has run since the edit: the volume is already right, the 3-D details are pending
    assert panel.findings.by_key("ich").voxels == before - removed
    assert panel.table.item(0, 1).text() == f"{panel.findings.by_key('ich').volume_ml:.2f}"
    assert panel.updating and "updating" in panel.status.text() and "updating" in panel.abc2_label.text()
    qtbot.waitUntil(lambda: not panel.updating, timeout=10000)
    assert panel.status.text() == "" and panel.abc2_label.text().startswith("ICH ABC/2: ")
    assert panel.findings.by_key("ich").origin == "edited"
    _close(win)
