"""The annotation store in the app: Cases dock, opening cases, review status, prediction stored with the
model version, saving on case switch. Small generated scans in a temporary workspace."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from gui_helpers import ThresholdPredictor, open_and_wait
from gui_helpers import click, make_window, write_phantom
from ctseg_core.io.images import read_labels
from ctseg_core.store import Workspace


def _open_row(qtbot, win, panel, row):
    """Double-click a row of the case table and wait for the scan to open."""
    rect = panel.table.visualItemRect(panel.table.item(row, 0))
    with qtbot.waitSignal(win.pipeline_done, timeout=60000):
        QTest.mouseClick(panel.table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())  # Qt 6 item views
        QTest.mouseDClick(panel.table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())  # need both


def test_case_list_status_filter_next_unreviewed_and_save_on_switch(qtbot, settings, tmp_path, workspace):
    scans = [write_phantom(tmp_path / f"scan{n}.nii.gz", seed_shift=float(n)) for n in range(3)]
    win, editor = make_window(qtbot, settings, tmp_path, workspace, autosave_ms=600000)
    panel = editor.cases_panel
    for scan in scans:
        assert open_and_wait(qtbot, win, scan) == "no model"
    assert panel.table.rowCount() == 3
    assert [panel.table.item(r, 1).text() for r in range(3)] == ["new"] * 3
    assert [panel.table.item(r, 2).text() for r in range(3)] == ["-"] * 3  # not segmented: no findings either way
    assert [panel.table.item(r, 0).text() for r in range(3)] == [s.name for s in scans]
    assert panel.table.item(2, 0).font().bold()  # the open case

    # edit the open case (scan2), mark it corrected with the annotator's name from the panel
    panel.annotator.setText("dr_test")
    panel.annotator.editingFinished.emit()
    assert settings.value("review/annotator") == "dr_test"
    win.session.set_position(5, 64, 64)
    win.session.set_active_class(1)
    editor.select_tool("flood fill")
    click(win.views["axial"], 47, 50)
    edited = win.session.final.array.copy()
    panel.status.setCurrentIndex(panel.status.findData("corrected"))
    panel.set_status_button.click()
    rec = Workspace(workspace).case(editor.store.case.id).record
    assert rec.status == "corrected" and rec.annotator == "dr_test"
    assert np.array_equal(read_labels(editor.store.case.final_path).array, edited)  # saved before the status
    assert panel.table.item(2, 1).text() == "corrected" and "ICH" in panel.table.item(2, 2).text()

    # filter by status
    panel.filter.setCurrentIndex(panel.filter.findData("corrected"))
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "scan2.nii.gz"
    panel.filter.setCurrentIndex(panel.filter.findData("new"))
    assert [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())] == ["scan0.nii.gz", "scan1.nii.gz"]
    panel.filter.setCurrentIndex(0)

    # next unreviewed: the oldest "new" case opens; the edits of the case left behind are saved on the switch
    win.session.set_active_class(3)
    click(win.views["axial"], 47, 50)  # unsaved edit in scan2 (autosave is far away)
    edited = win.session.final.array.copy()
    scan2_final = editor.store.case.final_path
    with qtbot.waitSignal(win.pipeline_done, timeout=60000):
        panel.next_button.click()
    assert editor.store.case.record.source.path == str(scans[0].resolve())
    assert np.array_equal(read_labels(scan2_final).array, edited)
    assert not win.session.final.array.any()  # scan0 has no labels yet
    with qtbot.waitSignal(win.pipeline_done, timeout=60000):
        panel.next_button.click()  # scan0 is still new but open: the next one is scan1
    assert editor.store.case.record.source.path == str(scans[1].resolve())

    # double-click opens a case: back to scan2, its saved map is loaded and locked against the model
    row = [panel.table.item(r, 0).text() for r in range(3)].index("scan2.nii.gz")
    _open_row(qtbot, win, panel, row)
    assert editor.store.case.final_path == scan2_final
    assert np.array_equal(win.session.final.array, edited) and win.session.edited_slices.all()
    win.close()
    win.inference.shutdown()


def test_prediction_is_stored_with_the_model_version_and_becomes_the_map_to_edit(qtbot, settings, tmp_path,
                                                                                 workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(ThresholdPredictor())
    assert open_and_wait(qtbot, win, scan) == "inferred"
    case = editor.store.case
    qtbot.waitUntil(lambda: Workspace(workspace).case(case.id).record.prediction_saved != "", timeout=10000)
    predicted = win.session.prediction.array.copy()
    assert predicted.any()
    assert np.array_equal(read_labels(case.folder / "prediction.nii.gz").array, predicted)
    record = Workspace(workspace).case(case.id).record
    assert record.model_version == "stub-threshold v0" and record.model_findings and not record.findings
    # the Cases list shows what the model found, marked and in italics as not reviewed (not "none")
    panel = editor.cases_panel
    qtbot.waitUntil(lambda: panel.table.item(0, 2).text().startswith("model: "), timeout=10000)
    cell = panel.table.item(0, 2)
    volume = sum(f["volume_ml"] for f in record.model_findings.values())
    assert cell.font().italic() and volume > 0 and "mL" in cell.text()
    # a long list of findings is elided in its column (the tooltip holds it all): the column does not swallow
    # the list, pushing its title and the triage and validation columns out of sight
    panel.refresh()
    cell = panel.table.item(0, 2)
    cell.setText("model: " + ", ".join(f"ICH {v}.0 mL" for v in range(12)))
    qtbot.wait(50)
    header, width = panel.table.horizontalHeader(), panel.table.viewport().width()
    assert header.sectionSize(2) <= width // 2 and 0 <= header.sectionViewportPosition(2) < width
    assert "mL" in cell.toolTip()
    assert panel.table.isColumnHidden(3) and panel.table.isColumnHidden(4)  # no triage run, no validation set
    assert np.array_equal(win.session.final.array, predicted)  # the prediction is the editable map
    win.close()  # nothing edited: no final map is written
    win.inference.shutdown()
    assert not case.final_path.exists()

    # reopened without a model: the stored prediction is loaded as the map to edit
    win2, editor2 = make_window(qtbot, settings, tmp_path, workspace)
    logs = []
    win2.session.log_message.connect(lambda level, text: logs.append(text))
    assert open_and_wait(qtbot, win2, scan) == "no model"
    assert np.array_equal(win2.session.final.array, predicted)
    assert np.array_equal(win2.session.prediction.array, predicted)
    assert any("editing the stored prediction (made by stub-threshold v0" in t for t in logs)
    # an edit on top of it, then undo: back to the prediction bit for bit
    win2.session.set_position(5, 64, 64)
    win2.session.set_active_class(0)
    editor2.select_tool("component")
    editor2.options.set(component_3d=False)
    click(win2.views["axial"], 47, 50)
    assert not win2.session.final.array[5].any() and win2.session.final.array[4].any()  # 2-D: this slice only
    assert editor2.undo_action.text() == "Undo remove component"
    editor2.undo()
    assert np.array_equal(win2.session.final.array, predicted)
    editor2.options.set(component_3d=True)  # the default: the whole connected region
    click(win2.views["axial"], 47, 50)
    assert not win2.session.final.array.any()
    editor2.undo()
    assert np.array_equal(win2.session.final.array, predicted)
    win2.close()
    win2.inference.shutdown()


def test_the_finished_prediction_replaces_streamed_slices_it_changed(qtbot, settings, tmp_path, workspace):
    """The guard's speck rule runs when every slice is done: what it removed from a slice already on
    screen disappears from the prediction and the editable map, and the stored prediction matches. What the
    guard did is said with the prediction and stored with it: a reopened case says it again."""
    from ctseg_core.guard import GuardReport

    scan = write_phantom(tmp_path / "scan.nii.gz")

    def drop_slice_5(labels):
        labels[5] = 0
        return labels

    report = GuardReport(slice_rules_ml=0.5, specks_ml=0.25, unsure_ml=1.0, unsure_pieces=2, threshold=0.92,
                         retyped_ml=3.5, retyped_collections=1, type_share=0.8)
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(ThresholdPredictor(finish=drop_slice_5, guard_report=report))
    assert open_and_wait(qtbot, win, scan) == "inferred"
    case = editor.store.case
    assert win.session.prediction.array[4].any() and not win.session.prediction.array[5].any()
    assert np.array_equal(win.session.final.array, win.session.prediction.array)
    qtbot.waitUntil(lambda: Workspace(workspace).case(case.id).record.prediction_saved != "", timeout=10000)
    assert np.array_equal(read_labels(case.folder / "prediction.nii.gz").array, win.session.prediction.array)
    said = "the anatomical guard removed 1.75 mL and gave 3.50 mL another type"
    assert said in win.findings_panel.model_box.prediction_label.text()
    assert Workspace(workspace).case(case.id).prediction_guard() == report
    win.close()
    win.inference.shutdown()
    again, _ = make_window(qtbot, settings, tmp_path, workspace)  # no model: the stored prediction is shown
    assert open_and_wait(qtbot, again, scan) == "no model"
    assert again.session.guard_report == report and said in again.findings_panel.model_box.prediction_label.text()
    again.close()
    again.inference.shutdown()


def test_esc_never_cancels_inference_its_own_shortcut_does(qtbot, settings, tmp_path, workspace):
    from gui_helpers import key

    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(ThresholdPredictor(delay_s=0.3))
    editor.select_tool("polygon")
    with qtbot.waitSignal(win.pipeline_done, timeout=60000) as done:
        win.open_path(scan)
        qtbot.waitUntil(lambda: win.session.inference_running, timeout=30000)
        click(win.views["axial"], 10, 10)
        key(win, Qt.Key_Escape)  # 1: drops the polygon in progress, inference goes on
        assert editor.tools["polygon"].vertices == [] and win.session.inference_running
        key(win, Qt.Key_Escape)  # 2: leaves the tool
        assert win.session.active_tool is None and win.session.inference_running
        key(win, Qt.Key_Escape)  # 3: nothing left to leave: the model run goes on
        assert win.session.inference_running
        key(win, Qt.Key_Period, Qt.ControlModifier)  # Ctrl+. is "Cancel inference"
    assert done.args[0] == "cancelled"
    win.close()
    win.inference.shutdown()
