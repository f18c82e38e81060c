"""The app with a locked case and a full disk: a second window on the same case is read-only and says so
(no edits possible, nothing written) until it takes the case over; a save that fails on a full disk is
reported, keeps the saved file and the edits, and succeeds once there is space again."""

from __future__ import annotations

import numpy as np

from gui_helpers import click, make_window, open_and_wait, write_phantom
from ctseg_core.io.images import read_labels


def _open(qtbot, settings, tmp_path, workspace, scan, name):
    from PySide6.QtCore import QSettings

    own = QSettings(str(tmp_path / f"{name}.ini"), QSettings.IniFormat)
    win, editor = make_window(qtbot, own, tmp_path, workspace, autosave_ms=600000)
    assert open_and_wait(qtbot, win, scan) == "no model"
    win.session.set_position(5, 64, 64)
    win.session.set_active_class(1)
    return win, editor


def test_second_window_on_a_case_is_read_only_until_it_takes_over(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win_a, ed_a = _open(qtbot, settings, tmp_path, workspace, scan, "a")
    assert not ed_a.store.read_only and ed_a.history is not None
    ed_a.select_tool("flood fill")
    click(win_a.views["axial"], 47, 50)
    ed_a.store.save_now()
    saved = read_labels(ed_a.store.case.final_path).array.copy()
    assert saved.any()

    win_b, ed_b = _open(qtbot, settings, tmp_path, workspace, scan, "b")
    store_b = ed_b.store
    assert store_b.case.id == ed_a.store.case.id
    assert "being edited by" in store_b.read_only and f"process {__import__('os').getpid()}" in store_b.read_only
    assert ed_b.read_only_label.isVisible() and "READ-ONLY" in ed_b.read_only_label.text()
    assert ed_b.history is None and not ed_b.toolbar.group.isEnabled()
    assert any("Case open read-only" == box.windowTitle() for box in win_b.error_boxes)
    assert np.array_equal(win_b.session.final.array, saved)  # the case is shown as saved by window A
    ed_b.select_tool("flood fill")  # a stroke does nothing: no tool, no history
    click(win_b.views["axial"], 47, 80)
    assert np.array_equal(win_b.session.final.array, saved)
    store_b.set_status("approved")
    store_b.save_now()
    assert read_labels(store_b.case.final_path).array.tolist() == saved.tolist()
    assert store_b.case.record.status != "approved"

    # B takes the case over: it becomes editable; A notices on its next save and stops writing
    ed_b.take_over_action.trigger()
    assert not store_b.read_only and ed_b.history is not None and not ed_b.read_only_label.isVisible()
    ed_b.select_tool("flood fill")
    win_b.session.set_active_class(2)
    click(win_b.views["axial"], 47, 50)
    store_b.save_now()
    by_b = read_labels(store_b.case.final_path).array.copy()
    assert (by_b == 2).any()
    win_a.session.set_active_class(3)
    click(win_a.views["axial"], 47, 50)  # A's journal append is refused: A turns read-only
    ed_a.store.save_now()
    assert "taken over" in ed_a.store.read_only and ed_a.read_only_label.isVisible()
    assert np.array_equal(read_labels(store_b.case.final_path).array, by_b)  # A overwrote nothing
    win_a.close()
    win_b.close()


def test_full_disk_is_reported_and_nothing_is_lost(qtbot, settings, tmp_path, workspace, monkeypatch):
    import SimpleITK as sitk

    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor = _open(qtbot, settings, tmp_path, workspace, scan, "w")
    editor.select_tool("flood fill")
    click(win.views["axial"], 47, 50)
    editor.store.save_now()
    case = editor.store.case
    saved_bytes = case.final_path.read_bytes()
    real = sitk.WriteImage

    def full_disk_writer(img, path, *a, **kw):  # what SimpleITK does on a full disk: an empty file, no error
        open(path, "wb").close()

    monkeypatch.setattr(sitk, "WriteImage", full_disk_writer)
    win.session.set_active_class(2)
    click(win.views["axial"], 47, 50)
    edited = win.session.final.array.copy()
    editor.store.save_now()
    assert case.final_path.read_bytes() == saved_bytes
    assert any("Disk full" in box.windowTitle() for box in win.error_boxes)
    assert len(case.journal) == 1 and np.array_equal(win.session.final.array, edited)  # edits kept
    assert editor.store.dirty
    monkeypatch.setattr(sitk, "WriteImage", real)
    editor.store.save_now()
    assert np.array_equal(read_labels(case.final_path).array, edited) and not editor.store.dirty
    win.close()
