"""Habits of Slicer / ITK-SNAP users and visible state: numeric window/level, S/A/D for the overlay,
Shift+wheel for the brush with its diameter shown, double-click to show a view alone, the Help menu; the
Scan panel and the notice of what the loader changed (real GE series); small fixes (component tool on
background, series sizes, the inference progress text)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from gui_helpers import ThresholdPredictor, click, key, make_window, open_and_wait, widget_point, write_phantom


def _wheel(view, delta, modifiers=Qt.NoModifier, at=None):
    vp = view.graphics.viewport()
    pos = QPointF(at) if at is not None else QPointF(vp.width() / 2, vp.height() / 2)
    ev = QWheelEvent(pos, vp.mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta), Qt.NoButton, modifiers,
                     Qt.NoScrollPhase, False)
    QApplication.sendEvent(vp, ev)


def test_window_level_is_shown_and_typed_as_numbers(edit_win):
    win, _ = edit_win
    s, bar, ax = win.session, win.window_bar, win.views["axial"]
    key(win, Qt.Key_F2)
    assert (bar.level.value(), bar.width.value()) == (75, 215) and bar.preset.currentData() == "subdural"
    bar.level.setValue(60)
    bar.width.setValue(120)
    assert (s.window.level, s.window.width) == (60, 120) and bar.preset.currentData() is None
    assert ax.hu_item.levels == pytest.approx((0.0, 120.0))
    s.set_window(35, 90)  # e.g. a right-drag: the numbers follow
    assert (bar.level.value(), bar.width.value()) == (35, 90)
    bar.preset.setCurrentIndex(bar.preset.findData("bone"))
    bar.preset.activated.emit(bar.preset.currentIndex())
    assert s.window.name == "bone"


def test_s_toggles_the_overlay_and_a_d_change_its_opacity(edit_win):
    win, _ = edit_win
    s, ax = win.session, win.views["axial"]
    opacity = s.opacity
    key(win, Qt.Key_S)
    assert not s.show_labels and not ax.label_item.isVisible() and not win.labels_action.isChecked()
    key(win, Qt.Key_S)
    assert s.show_labels and ax.label_item.isVisible()
    key(win, Qt.Key_D)
    assert s.opacity == pytest.approx(opacity + 0.1) and ax.label_item.opacity() == pytest.approx(opacity + 0.1)
    key(win, Qt.Key_A)
    key(win, Qt.Key_A)
    assert s.opacity == pytest.approx(opacity - 0.1)


def test_shift_wheel_sizes_the_brush_and_the_circle_says_its_diameter(edit_win, qtbot):
    win, editor = edit_win
    ax = win.views["axial"]
    editor.select_tool("brush")
    editor.options.set(radius_mm=4.0)
    p = widget_point(ax, 64.5, 64.5)
    QTest.mouseMove(ax.graphics.viewport(), p)
    qtbot.waitUntil(lambda: editor.tools["brush"].outline is not None)
    k = win.session.position[0]
    _wheel(ax, 120, Qt.ShiftModifier, p)
    assert editor.options.radius_mm == pytest.approx(5.0) and win.session.position[0] == k  # no slice change
    _wheel(ax, -120, Qt.ShiftModifier | Qt.ControlModifier, p)
    assert editor.options.radius_mm == pytest.approx(4.0)
    assert editor.tools["brush"].outline.rect().width() == pytest.approx(8.0)
    assert editor.tools["brush"].size_label.toPlainText() == "⌀ 8.0 mm"
    assert editor.options_bar.size.value() == pytest.approx(8.0)  # the bar shows the diameter too
    editor.select_tool(None)
    _wheel(ax, 120, Qt.ShiftModifier, p)  # without a brush, Shift+wheel scrolls as usual
    assert editor.options.radius_mm == pytest.approx(4.0) and win.session.position[0] == k + 1


class _DoubleClick:
    """What pyqtgraph hands a view box for the second click of a double click (on the view's centre)."""

    def __init__(self, view):
        vp = view.graphics.viewport()
        self._pos = view.graphics.mapToScene(vp.rect().center())
        self.accepted = False

    def button(self):
        return Qt.LeftButton

    def double(self):
        return True

    def scenePos(self):
        return self._pos

    def modifiers(self):
        return Qt.NoModifier

    def accept(self):
        self.accepted = True


def test_double_click_shows_a_view_alone_and_again_all(edit_win, qtbot):
    win, _ = edit_win
    ax, cor, sag = (win.views[n] for n in ("axial", "coronal", "sagittal"))
    cor.viewbox.mouseClickEvent(_DoubleClick(cor))  # pyqtgraph's double-click event (QTest cannot time one)
    assert win.maximised == "coronal"
    assert cor.isVisible() and not ax.isVisible() and not sag.isVisible()
    cor.maximise_button.click()
    assert win.maximised is None and ax.isVisible() and sag.isVisible()
    ax.maximise_button.click()
    assert ax.isVisible() and not cor.isVisible() and not win._side.isVisible()
    win.toggle_maximised("3d")  # the 3-D view alone: the slice views and the other docks step aside
    assert win.maximised == "3d" and not win.centralWidget().isVisible() and not win.classes_dock.isVisible()
    assert win.volume_dock.isVisible()
    win.toggle_maximised("3d")
    assert win.centralWidget().isVisible() and win.classes_dock.isVisible() and cor.isVisible()


def test_help_lists_the_shortcuts_and_about_names_the_model_and_licences(edit_win, qtbot):
    from app.help import AboutDialog, ShortcutsDialog, shortcut_rows

    win, _ = edit_win
    rows = dict((b, a) for a, b in shortcut_rows(win))
    assert rows["Show labels (overlay)"] == "S" and rows["Cancel inference"] == "Ctrl+."
    assert rows["brush diameter (brush and eraser)"].startswith("Shift+wheel")
    menu_titles = [a.text().replace("&", "") for a in win.menuBar().actions()]
    assert menu_titles[-1] == "Help" and "Review" in menu_titles  # last, though editing added menus later
    win.help_actions["shortcuts"].trigger()
    assert isinstance(win.help_dialog, ShortcutsDialog) and win.help_dialog.table.rowCount() == len(shortcut_rows(win))
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(ThresholdPredictor())
    win.help_actions["about"].trigger()
    about = win.help_dialog
    assert isinstance(about, AboutDialog) and "stub-threshold v0" in about.text.text()
    libs = {about.table.item(r, 0).text(): about.table.item(r, 2).text() for r in range(about.table.rowCount())}
    assert "LGPL" in libs["PySide6-Essentials"] and libs["pyqtgraph"] and "BSD" in libs["vtk"]


def test_scan_panel_and_loader_notice_on_the_real_ge_series(qtbot, window, ge_tilt):
    assert open_and_wait(qtbot, window, ge_tilt) == "no model"
    panel = window.scan_panel
    qtbot.waitUntil(lambda: panel.value("Series", "Scanner") is not None, timeout=10000)
    assert panel.value("Series", "Scanner") == "GE MEDICAL SYSTEMS" and panel.value("Series", "Kernel") == "STD+"
    assert panel.value("Geometry", "Source images") == "28 -> 37 slices (resampled)"
    assert panel.value("Patient", "ID") == "QMNx85rKkkg"
    assert any("gantry tilt" in n for n in panel.sentences("What the loader did"))
    assert "resampled to a uniform 4.00 mm" in panel.text.toPlainText()
    notices = window.notice_bar.texts()
    assert len(notices) == 1 and "gantry tilt of 18.5° corrected" in notices[0]
    assert "28 images resampled to 37" in notices[0]


def test_component_click_on_background_says_so_and_keeps_the_crosshair(edit_win):
    win, editor = edit_win
    s = win.session
    editor.select_tool("component")
    before = s.position
    click(win.views["axial"], 10, 10, Qt.ShiftModifier)  # air: no label there
    assert s.position == before
    assert "no labelled region" in win.statusBar().currentMessage()


def test_series_sizes_read_rows_x_cols_as_ctseg_info_does(qtbot, philips_multi):
    from app.panels.series_dialog import SeriesDialog
    from ctseg_core.cli.info import format_table
    from ctseg_core.io.dicom import scan_folder

    scan = scan_folder(philips_multi)
    dialog = SeriesDialog(scan, str(philips_multi))
    qtbot.addWidget(dialog)
    sizes = [dialog.table.item(r, 3).text() for r in range(dialog.table.rowCount())]
    assert "256 x 512" in sizes and dialog.table.horizontalHeaderItem(3).text() == "Rows x cols"
    assert all(size in format_table(scan) for size in sizes)


def test_inference_progress_text_is_not_clipped(qtbot, settings, tmp_path, workspace):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, _ = make_window(qtbot, settings, tmp_path, workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_predictor(ThresholdPredictor(delay_s=0.1))
    with qtbot.waitSignal(win.pipeline_done, timeout=60000):
        win.open_path(scan)
        qtbot.waitUntil(lambda: "left" in win.model.progress_text.text(), timeout=30000)
        label = win.model.progress_text
        assert label.isVisible()
        qtbot.waitUntil(lambda: label.width() >= label.sizeHint().width(), timeout=3000)  # after the layout ran
        assert label.text().startswith("Inference: slice ") and "about" in label.text()
    win.close()
    win.inference.shutdown()
