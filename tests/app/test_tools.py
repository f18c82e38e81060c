"""Editing tools driven by real mouse strokes on the slice views of the main window (offscreen).

Each test compares the voxels a tool changed with the core operation (ctseg_core.edit.ops) run directly
on a copy with the same points, which are computed from the widget positions through the view's mapping.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtTest import QTest

from gui_helpers import (click, drag, key, make_window, open_and_wait, stroke_point, to_zyx,
                         widget_point, write_phantom)
from ctseg_core.edit import HU_PRESETS, PaintMode, PaintPolicy, ops
from ctseg_core.io.images import read_labels

BLOB = (slice(3, 9), slice(38, 57), slice(44, 64))  # the 70 HU block of conftest.phantom_volume (128 px)


# ---------------------------------------------------------------- tools
def test_brush_stroke_paints_the_swept_disc_and_undo_redo_restore_bit_for_bit(edit_win, qtbot):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    s.set_active_class(2)
    editor.options.set(radius_mm=2.5, mode=PaintMode.OVERWRITE)
    before = s.final.array.copy()
    key(win, Qt.Key_B)
    assert s.active_tool is editor.tools["brush"]
    pts = drag(ax, [(60, 30), (62, 40), (70, 52), (70, 60)])
    points = [stroke_point(ax, p) for p in pts]
    expected = before.copy()
    ops.brush(expected, points, s.volume.spacing, 2.5, 2).apply(expected)
    assert (expected != before).sum() > 100
    assert np.array_equal(s.final.array, expected)
    assert (np.nonzero(s.final.array != before)[0] == 5).all()  # a 2-D stroke stays on the slice
    assert editor.undo_action.text() == "Undo brush" and editor.history.undo_count == 1
    # the overlay shows it at once, the findings follow (SDH volume = painted voxels x voxel volume)
    shown = ax.label_item.image
    assert np.array_equal(shown, s.final.array[5])
    sdh_ml = (s.final.array == 2).sum() * s.volume.geometry.voxel_volume_ml
    table = win.findings_panel.table
    qtbot.waitUntil(lambda: table.item(1, 1) is not None and table.item(1, 1).text() == f"{sdh_ml:.2f}",
                    timeout=5000)
    key(win, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.final.array, before)
    assert editor.redo_action.text() == "Redo brush"
    key(win, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert np.array_equal(s.final.array, expected)
    key(win, Qt.Key_Z, Qt.ControlModifier)
    key(win, Qt.Key_Y, Qt.ControlModifier)
    assert np.array_equal(s.final.array, expected)


def test_3d_brush_in_the_coronal_view_and_eraser(edit_win):
    win, editor = edit_win
    s, cor = win.session, win.views["coronal"]
    s.set_active_class(4)
    editor.options.set(radius_mm=6.0, sphere=True, mode=PaintMode.OVERWRITE)
    editor.select_tool("brush")
    before = s.final.array.copy()
    pts = drag(cor, [(5, 50), (5, 60), (6, 70)])  # rows of the coronal view run along z
    points = [to_zyx(cor, stroke_point(cor, p)) for p in pts]
    expected = before.copy()
    ops.brush(expected, points, s.volume.spacing, 6.0, 4, sphere=True).apply(expected)
    assert np.array_equal(s.final.array, expected)
    changed = np.nonzero(expected != before)
    assert len(set(changed[0])) >= 3 and len(set(changed[1])) > 5  # a ball: several slices and rows
    # the eraser (2-D, on the coronal slice) removes part of it
    editor.options.set(sphere=False, radius_mm=3.0)
    editor.select_tool("eraser")
    pts = drag(cor, [(5, 55), (5, 65)])
    j = cor.slice_index
    points = [to_zyx(cor, stroke_point(cor, p)) for p in pts]
    erased = expected.copy()
    tr = np.transpose(erased, (1, 0, 2))  # the coronal plane: (slice = y, row = z, col = x)
    ops.brush(tr, [(p[1], p[0], p[2]) for p in points], (s.volume.spacing[1], s.volume.spacing[0],
                                                         s.volume.spacing[2]), 3.0, 0).apply(tr)
    assert (erased != expected).sum() > 0 and (np.nonzero(erased != expected)[1] == j).all()
    assert np.array_equal(s.final.array, erased)
    assert editor.undo_action.text() == "Undo eraser"


def test_threshold_limited_brush_paints_only_the_hu_range(edit_win):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    s.set_active_class(1)
    editor.select_tool("brush")
    key(win, Qt.Key_T)  # HU limit on, preset fresh blood 40-90
    assert editor.options.threshold and editor.options.paint_range == HU_PRESETS["fresh_blood"]
    editor.options.set(radius_mm=6.0)
    before = s.final.array.copy()
    pts = drag(ax, [(47, 35), (47, 75)])  # across the 70 HU block and the 35 HU brain around it
    points = [stroke_point(ax, p) for p in pts]
    expected = before.copy()
    ops.brush(expected, points, s.volume.spacing, 6.0, 1, hu=s.volume.array, hu_range=(40.0, 90.0)).apply(expected)
    assert np.array_equal(s.final.array, expected)
    painted = s.final.array != before
    hu = s.volume.array[painted]
    assert painted.sum() > 50 and hu.min() >= 40 and hu.max() <= 90
    unlimited = ops.brush(before, points, s.volume.spacing, 6.0, 1)
    assert unlimited.count > painted.sum()  # the stroke did cover brain that the limit kept out


def test_locked_class_is_untouched_by_a_stroke(edit_win):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    s.final.array[5, 55:70, 40:90] = 3
    s.set_class_locked(3, True)
    s.set_active_class(1)
    editor.options.set(radius_mm=8.0, mode=PaintMode.PROTECT_LOCKED)
    editor.select_tool("brush")
    before = s.final.array.copy()
    pts = drag(ax, [(62, 45), (62, 85)])
    points = [stroke_point(ax, p) for p in pts]
    covered = ops.brush(before, points, s.volume.spacing, 8.0, 1)  # overwrite: what the stroke covers
    assert (before[covered.slices][covered.mask] == 3).sum() > 100
    assert np.array_equal(s.final.array == 3, before == 3)  # not one locked voxel changed
    expected = before.copy()
    ops.brush(expected, points, s.volume.spacing, 8.0, 1, policy=PaintPolicy("protect_locked", {3})).apply(expected)
    assert np.array_equal(s.final.array, expected) and (s.final.array == 1).sum() > 0
    # only-background mode keeps the other classes too (ICH painted earlier stays as it is)
    s.set_class_locked(3, False)
    editor.options.set(mode=PaintMode.BACKGROUND_ONLY)
    s.set_active_class(2)
    before = s.final.array.copy()
    drag(ax, [(70, 45), (85, 85)])
    changed = s.final.array != before
    assert changed.any() and (before[changed] == 0).all()


def test_polygon_lasso_and_clicked_polygon(edit_win):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    s.set_active_class(5)
    key(win, Qt.Key_P)
    assert s.active_tool is editor.tools["polygon"]
    before = s.final.array.copy()
    cells = [(30, 30), (30, 60), (50, 70), (70, 55), (60, 30)]
    pts = drag(ax, cells + [(31, 31)])
    vertices = []
    for p in pts:
        v = stroke_point(ax, p)[1:]
        if not vertices or vertices[-1] != v:
            vertices.append(v)
    expected = before.copy()
    ops.polygon_fill(expected, 5, vertices, 5).apply(expected)
    assert (expected != before).sum() > 500
    assert np.array_equal(s.final.array, expected)
    assert editor.undo_action.text() == "Undo polygon"
    # clicked vertices, closed by clicking the first again
    s.set_position(6, 64, 64)
    before = s.final.array.copy()
    corners = [(80, 80), (80, 100), (100, 100), (100, 80)]
    pts = [click(ax, *c) for c in corners]
    assert s.final.array[6].sum() == before[6].sum()  # nothing yet
    assert len(editor.tools["polygon"].vertices) == 4
    click(ax, 80, 80)
    expected = before.copy()
    ops.polygon_fill(expected, 6, [stroke_point(ax, p)[1:] for p in pts], 5).apply(expected)
    assert np.array_equal(s.final.array, expected) and (expected[6] == 5).sum() >= 19 * 19
    # a double-click on the last vertex closes it too
    s.set_position(7, 64, 64)
    before = s.final.array.copy()
    pts = [click(ax, *c) for c in [(10, 60), (10, 90), (25, 75)]]
    click(ax, 25, 75)
    expected = before.copy()
    ops.polygon_fill(expected, 7, [stroke_point(ax, p)[1:] for p in pts], 5).apply(expected)
    assert np.array_equal(s.final.array, expected) and (expected[7] == 5).sum() > 150
    # Esc drops a polygon in progress, a second Esc returns to navigation
    click(ax, 10, 10)
    click(ax, 10, 20)
    key(win, Qt.Key_Escape)
    assert editor.tools["polygon"].vertices == [] and s.active_tool is editor.tools["polygon"]
    key(win, Qt.Key_Escape)
    assert s.active_tool is None


def test_flood_fill_and_component_relabel_and_remove(edit_win):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    s.set_active_class(1)
    key(win, Qt.Key_F)
    assert s.active_tool is editor.tools["flood fill"]
    before = s.final.array.copy()
    click(ax, 47, 50)
    expected = before.copy()
    ops.flood_fill(expected, s.volume.array, (5, 47, 50), HU_PRESETS["fresh_blood"], 1).apply(expected)
    assert np.array_equal(s.final.array, expected)
    blob_slice = np.zeros(s.final.array.shape, bool)
    blob_slice[(5,) + BLOB[1:]] = True
    assert np.array_equal(s.final.array == 1, blob_slice)  # exactly the 70 HU block on this slice
    # 3-D: the whole block through slices 3..8
    editor.options.set(fill_3d=True)
    click(ax, 47, 50)
    assert np.array_equal(s.final.array == 1, np.pad(np.ones((6, 19, 20), bool), ((3, 3), (38, 71), (44, 64))))
    assert editor.undo_action.text() == "Undo flood fill"
    # component: give the block class 7 with one click, then remove it with Shift+click
    s.set_active_class(7)
    key(win, Qt.Key_R)
    before = s.final.array.copy()
    click(ax, 40, 60)
    expected = before.copy()
    ops.relabel_component(expected, (5, 40, 60), 7).apply(expected)
    assert np.array_equal(s.final.array, expected) and (expected == 7).sum() == 6 * 19 * 20
    click(ax, 40, 60, Qt.ShiftModifier)
    assert not s.final.array.any()
    key(win, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.final.array, expected)


def test_fill_between_slices_interpolates_the_active_class(edit_win):
    win, editor = edit_win
    s = win.session
    s.set_active_class(2)
    s.final.array[2, 40:60, 40:60] = 2
    s.final.array[8, 50:80, 45:75] = 2
    s.set_position(5, 64, 64)
    before = s.final.array.copy()
    key(win, Qt.Key_I)
    expected = before.copy()
    ops.interpolate_slices(expected, 2, 2, 8, s.volume.spacing).apply(expected)
    assert np.array_equal(s.final.array, expected)
    assert all((s.final.array[z] == 2).sum() > 300 for z in range(3, 8))
    assert editor.undo_action.text() == "Undo fill between slices"
    key(win, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.final.array, before)
    # between two chosen slices (the nearest ones are 2 and 8; choose 2 and 5 after drawing on 5)
    s.final.array[5, 45:55, 45:55] = 2
    before = s.final.array.copy()
    editor.fill_between_slices(pair=(5, 2))
    expected = before.copy()
    ops.interpolate_slices(expected, 2, 2, 5, s.volume.spacing).apply(expected)
    assert np.array_equal(s.final.array, expected) and (expected[3:5] != before[3:5]).any()
    assert np.array_equal(s.final.array[6:8], before[6:8])  # only the slices between the chosen two
    assert editor.fill_between_slices(pair=(0, 5)) is None  # slice 0 holds no class 2: refused, nothing changed
    assert np.array_equal(s.final.array, expected)


def test_keys_switch_class_tools_and_brush_size_without_clashes(edit_win):
    win, editor = edit_win
    s = win.session
    for n, k in enumerate((Qt.Key_0, Qt.Key_1, Qt.Key_2, Qt.Key_3, Qt.Key_4, Qt.Key_5, Qt.Key_6, Qt.Key_7)):
        key(win, k)
        assert s.active_class == n
        assert editor.toolbar.class_label.text().strip().startswith(f"{n}:")
    for k, name in ((Qt.Key_B, "brush"), (Qt.Key_E, "eraser"), (Qt.Key_P, "polygon"), (Qt.Key_F, "flood fill"),
                    (Qt.Key_R, "component")):
        key(win, k)
        assert s.active_tool is editor.tools[name]
        assert editor.toolbar.actions_by_name[name].isChecked()
    key(win, Qt.Key_Escape)
    assert s.active_tool is None and editor.toolbar.actions_by_name["navigate"].isChecked()
    r0 = editor.options.radius_mm
    key(win, Qt.Key_BracketRight)
    assert editor.options.radius_mm == pytest.approx(r0 * 1.25)
    assert editor.options_bar.size.value() == pytest.approx(round(2 * r0 * 1.25, 1))  # shown as a diameter
    key(win, Qt.Key_BracketLeft)
    assert editor.options.radius_mm == pytest.approx(r0)
    # the viewer's keys still work (window presets, slice scrolling)
    key(win, Qt.Key_F2)
    assert s.window.name == "subdural"
    k0 = s.position[0]
    key(win, Qt.Key_Up)
    assert s.position[0] == k0 + 1
    # typing in a text field of the window does not trigger the single-key shortcuts
    name = editor.cases_panel.annotator
    name.setFocus()
    QTest.keyClicks(name, "Bob 2 E")
    assert name.text() == "Bob 2 E" and s.active_class == 7 and s.active_tool is None
    shortcuts = [seq.toString() for a in win.findChildren(QAction) for seq in a.shortcuts()]
    assert len(shortcuts) == len(set(shortcuts)), "two actions share a shortcut"


def test_brush_outline_follows_the_mouse_with_the_size_in_mm(edit_win, qtbot):
    win, editor = edit_win
    ax = win.views["axial"]
    editor.select_tool("brush")
    editor.options.set(radius_mm=4.0)
    p = widget_point(ax, 64.5, 64.5)
    QTest.mouseMove(ax.graphics.viewport(), p)
    qtbot.waitUntil(lambda: editor.tools["brush"].outline is not None)
    rect = editor.tools["brush"].outline.rect()
    assert rect.width() == pytest.approx(8.0) and rect.height() == pytest.approx(8.0)
    v = ax.viewbox.mapSceneToView(ax.graphics.mapToScene(p))
    assert rect.center().x() == pytest.approx(v.x()) and rect.center().y() == pytest.approx(v.y())
    editor.options.set(radius_mm=2.0)
    assert editor.tools["brush"].outline.rect().width() == pytest.approx(4.0)
    editor.select_tool(None)
    assert editor.tools["brush"].outline is None


# ---------------------------------------------------------------- store: autosave, journal, recovery
def test_autosave_writes_final_after_the_debounce(edit_win, qtbot):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    case = editor.store.case
    s.set_active_class(1)
    editor.select_tool("brush")
    drag(ax, [(20, 20), (20, 40)])
    assert case.journal.last_seq == 1 and len(case.journal) == 1  # the stroke is journaled at once
    assert not case.final_path.exists()
    qtbot.waitUntil(lambda: case.final_path.exists() and not editor.store.dirty, timeout=10000)
    qtbot.waitUntil(lambda: len(case.journal) == 0, timeout=5000)
    assert np.array_equal(read_labels(case.final_path).array, s.final.array)
    assert case.record.status == "in_review" and case.record.findings["ich"]["volume_ml"] > 0


def test_recovery_after_a_crash_restores_unsaved_edits(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "phantom.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace, autosave_ms=600000)
    assert open_and_wait(qtbot, win, scan) == "no model"
    s, ax = win.session, win.views["axial"]
    s.set_position(4, 64, 64)
    s.set_active_class(2)
    editor.select_tool("brush")
    drag(ax, [(30, 30), (50, 60)])
    editor.select_tool("flood fill")
    click(ax, 47, 50)
    edited = s.final.array.copy()
    case_dir = editor.store.case.folder
    assert not (case_dir / "final.nii.gz").exists() and len(editor.store.case.journal) == 2
    # the app dies: nothing is saved (the controller forgets its case so closing the window writes nothing),
    # and its case lock names a process that no longer runs
    editor.store.autosave_timer.stop()
    editor.store.case = None
    win.close()
    assert not (case_dir / "final.nii.gz").exists()
    lock = case_dir / "edit.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "pid": int(dead.stdout)}))

    win2, editor2 = make_window(qtbot, settings, tmp_path, workspace)
    logs = []
    win2.session.log_message.connect(lambda level, text: logs.append((level, text)))
    assert open_and_wait(qtbot, win2, scan) == "no model"
    assert editor2.store.case.folder == case_dir
    assert np.array_equal(win2.session.final.array, edited)
    assert any(level == "warning" and "Recovered 2 edit step" in text for level, text in logs)
    assert any("Recovered 2 edit step" in t for t in win2.notice_bar.texts())  # a visible notice, not only the log
    qtbot.waitUntil(lambda: (case_dir / "final.nii.gz").exists() and len(editor2.store.case.journal) == 0,
                    timeout=10000)
    assert np.array_equal(read_labels(case_dir / "final.nii.gz").array, edited)
    win2.close()
    win2.inference.shutdown()
    win.inference.shutdown()


def test_exit_saves_and_reopening_loads_the_final_map(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "phantom.nii.gz")
    win, editor = make_window(qtbot, settings, tmp_path, workspace, autosave_ms=600000)
    assert open_and_wait(qtbot, win, scan) == "no model"
    win.session.set_active_class(6)
    editor.select_tool("brush")
    drag(win.views["axial"], [(90, 90), (95, 99)])
    edited = win.session.final.array.copy()
    final = editor.store.case.final_path
    win.close()  # closeEvent: saved at once
    assert np.array_equal(read_labels(final).array, edited)
    win.inference.shutdown()
    win2, editor2 = make_window(qtbot, settings, tmp_path, workspace)
    assert open_and_wait(qtbot, win2, scan) == "no model"
    assert np.array_equal(win2.session.final.array, edited)
    assert win2.session.edited_slices.all()  # a model run will not overwrite the saved corrections
    win2.close()
    win2.inference.shutdown()


def test_undo_budget_drops_the_oldest_steps(edit_win):
    win, editor = edit_win
    s, ax = win.session, win.views["axial"]
    editor.history.budget_bytes = 1200  # about two small strokes
    editor.select_tool("brush")
    editor.options.set(radius_mm=3.0)
    for row in (20, 40, 60, 80):
        drag(ax, [(row, 20), (row, 30)])
    h = editor.history
    assert h.dropped_steps >= 1 and h.undo_count == 4 - h.dropped_steps and h.nbytes <= 1200
    while h.can_undo:
        editor.undo()
    assert (s.final.array[5, 18:23] != 0).any()  # the first stroke is beyond the budget: it stays
    assert not s.final.array[5, 75:90].any()


def test_a_loaded_label_map_replaces_the_final_map_and_is_saved(edit_win, qtbot, tmp_path):
    from ctseg_core.io.images import write_labels
    from ctseg_core.volume import LabelMap

    win, editor = edit_win
    labels = np.zeros(win.session.volume.shape, np.uint8)
    labels[4:7, 30:40, 30:40] = 5
    path = tmp_path / "other.nii.gz"
    write_labels(LabelMap(labels, win.session.volume.geometry), path)
    assert win.open_labels(str(path))
    assert editor.history.labels is win.session.final.array
    qtbot.waitUntil(lambda: editor.store.case.final_path.exists() and not editor.store.dirty, timeout=10000)
    assert np.array_equal(read_labels(editor.store.case.final_path).array, labels)
