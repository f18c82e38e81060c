"""Slice views on the real GE series: scrolling, windowing, overlay rendering, crosshair, tool events."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from app.session import Session
from app.viewer.interaction import SliceTool
from app.viewer.slice_view import SliceView, describe_voxel
from ctseg_core.io import load_volume


@pytest.fixture(scope="module")
def ge_volume(ge_tilt):
    return load_volume(ge_tilt)


@pytest.fixture
def views(qtbot, ge_volume):
    session = Session()
    views = {n: SliceView(session, n) for n in ("axial", "coronal", "sagittal")}
    for v in views.values():
        qtbot.addWidget(v)
        v.resize(500, 500)
        v.show()
    session.set_volume(ge_volume)
    return session, views


def test_views_show_the_real_scan_with_true_aspect(views, ge_volume):
    session, v = views
    ax, cor = v["axial"], v["coronal"]
    k, j, i = session.position
    assert ax.slice_index == k and cor.slice_index == j and v["sagittal"].slice_index == i
    assert np.array_equal(ax.hu_item.image, ge_volume.array[k])
    # image items are scaled to millimetres: a coronal pixel is (slice spacing) tall and (pixel spacing) wide
    tr = cor.hu_item.transform()
    assert tr.m11() == pytest.approx(ge_volume.spacing[2]) and tr.m22() == pytest.approx(ge_volume.spacing[0])
    assert "Axial" in ax.header.text() and f"/ {ge_volume.shape[0]}" in ax.header.text()
    assert [ax._edge_labels[s].text() for s in ("top", "bottom", "left", "right")] == ["A", "P", "R", "L"]


def test_keyboard_and_wheel_scroll(views, qtbot):
    session, v = views
    ax = v["axial"]
    k0 = session.position[0]
    qtbot.keyClick(ax.graphics, Qt.Key_Up)
    assert session.position[0] == k0 + 1 and ax.slice_index == k0 + 1
    qtbot.keyClick(ax.graphics, Qt.Key_PageDown)
    assert session.position[0] == max(0, k0 + 1 - 10)
    qtbot.keyClick(ax.graphics, Qt.Key_End)
    assert session.position[0] == session.volume.shape[0] - 1
    qtbot.keyClick(ax.graphics, Qt.Key_Up)  # clamped at the last slice
    assert session.position[0] == session.volume.shape[0] - 1
    ax.scroll(-2)
    assert np.array_equal(ax.hu_item.image, session.volume.array[session.volume.shape[0] - 3])


def test_window_presets_and_levels(views):
    session, v = views
    session.set_window_preset("bone")
    assert tuple(v["axial"].hu_item.levels) == (600 - 1400, 600 + 1400)
    session.set_window(40, 80)
    assert session.window.name == "brain" and tuple(v["coronal"].hu_item.levels) == (0, 80)


def test_overlay_appears_and_class_toggle_hides_it(views):
    session, v = views
    ax = v["axial"]
    k = session.position[0]
    before = ax.rendered_overlay()
    lab = np.zeros(session.volume.shape[1:], np.uint8)
    lab[200:260, 200:300] = 1
    lab[100:120, 100:120] = 7
    session.apply_predicted_slice(k, lab, None)
    ax._redraw_labels()
    after = ax.rendered_overlay()
    assert after.shape[:2] == lab.shape and after.shape[2] == 4
    assert not np.array_equal(before, after)
    assert tuple(after[230, 250, :3]) == (230, 25, 75) and after[230, 250, 3] == 255  # ICH colour, opaque
    assert after[0, 0, 3] == 0  # background transparent
    assert session.final.array[k, 230, 250] == 1  # the prediction also fills the corrected map
    session.set_class_visible(1, False)
    hidden = ax.rendered_overlay()
    assert hidden[230, 250, 3] == 0 and hidden[110, 110, 3] == 255
    session.set_outline(True)
    outl = ax.rendered_overlay()
    assert outl[110, 110, 3] == 0 and outl[100, 110, 3] == 255  # interior cleared, contour kept
    session.set_opacity(0.25)
    assert ax.label_item.opacity() == pytest.approx(0.25)
    # the coronal view shows the same labels through its own plane
    assert v["coronal"].label_item.image.shape == (session.volume.shape[0], session.volume.shape[2])


def test_edited_slices_keep_their_edits_when_prediction_arrives(views):
    session, v = views
    k = session.position[0]
    session.final.array[k, 10, 10] = 4
    session.notify_labels_edited((k, k + 1, 10, 11, 10, 11))
    session.apply_predicted_slice(k, np.zeros(session.volume.shape[1:], np.uint8), None)
    assert session.final.array[k, 10, 10] == 4 and session.prediction.array[k, 10, 10] == 0


class RecordingTool(SliceTool):
    def __init__(self):
        self.events = []

    def mouse_press(self, ev):
        self.events.append(("press", ev.voxel, ev.plane.name))
        return True

    def mouse_drag(self, ev):
        self.events.append(("drag", ev.voxel, ev.plane.name))

    def mouse_release(self, ev):
        self.events.append(("release", ev.voxel, ev.plane.name))


def _widget_point(view, k, j, i):
    """Widget pixel of voxel (k, j, i)'s centre in an axial view."""
    x, y = view.index_to_view(j + 0.5, i + 0.5)
    scene = view.viewbox.mapViewToScene(__import__("PySide6.QtCore", fromlist=["QPointF"]).QPointF(x, y))
    return view.graphics.mapFromScene(scene)


def test_click_moves_crosshair_and_tools_get_voxels(views, qtbot):
    session, v = views
    ax = v["axial"]
    k = session.position[0]
    pt = _widget_point(ax, k, 300, 150)
    qtbot.mouseClick(ax.graphics.viewport(), Qt.LeftButton, pos=pt)
    assert session.position[0] == k
    assert abs(session.position[1] - 300) <= 1 and abs(session.position[2] - 150) <= 1
    assert v["coronal"].slice_index == session.position[1]
    tool = RecordingTool()
    session.set_active_tool(tool)
    qtbot.mouseClick(ax.graphics.viewport(), Qt.LeftButton, pos=_widget_point(ax, k, 100, 400))
    kinds = [e[0] for e in tool.events]
    assert kinds == ["press", "release"]
    _, voxel, plane = tool.events[0]
    assert plane == "axial" and voxel[0] == k and abs(voxel[1] - 100) <= 1 and abs(voxel[2] - 400) <= 1
    assert abs(session.position[1] - 300) <= 1  # the tool took the click: the crosshair stayed


def test_describe_voxel_gives_hu_and_lps(ge_volume):
    text = describe_voxel(ge_volume, 5, 256, 256)
    x, y, z = ge_volume.geometry.index_to_physical(5, 256, 256)
    assert f"HU {ge_volume.array[5, 256, 256]:.0f}" in text and f"{z:.1f}" in text


def _wheel(widget, delta, modifiers=Qt.NoModifier):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta), Qt.NoButton, modifiers,
                     Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def test_wheel_scrolls_and_ctrl_wheel_zooms(views):
    session, v = views
    ax = v["axial"]
    k0 = session.position[0]
    _wheel(ax.graphics.viewport(), 120)
    assert session.position[0] == k0 + 1
    before = ax.viewbox.viewRange()
    _wheel(ax.graphics.viewport(), 120, Qt.ControlModifier)
    after = ax.viewbox.viewRange()
    assert session.position[0] == k0 + 1  # zoom does not change the slice
    assert (after[0][1] - after[0][0]) < (before[0][1] - before[0][0])  # zoomed in


class FakeDrag:
    def __init__(self, button, start, pos, first=False, last=False):
        from PySide6.QtCore import QPointF

        self._b, self._s, self._p, self._first, self._last = button, QPointF(*start), QPointF(*pos), first, last

    def button(self):
        return self._b

    def isStart(self):
        return self._first

    def isFinish(self):
        return self._last

    def screenPos(self):
        return self._p

    def buttonDownScreenPos(self):
        return self._s

    def accept(self):
        pass


def test_right_drag_changes_window_level(views):
    session, v = views
    session.set_window_preset("brain")
    ax = v["axial"]
    ax.viewbox.mouseDragEvent(FakeDrag(Qt.RightButton, (100, 100), (100, 100), first=True))
    ax.viewbox.mouseDragEvent(FakeDrag(Qt.RightButton, (100, 100), (300, 50)))  # right: wider; up: higher level
    ax.viewbox.mouseDragEvent(FakeDrag(Qt.RightButton, (100, 100), (300, 50), last=True))
    w = session.window
    assert w.width > 80 + 50 and w.level > 40 and w.name == "custom"
    low, high = ax.hu_item.levels
    assert low == pytest.approx(w.low) and high == pytest.approx(w.high)


def test_left_drag_reaches_the_tool_as_press_drag_release(views, qtbot):
    from PySide6.QtTest import QTest

    session, v = views
    ax = v["axial"]
    k = session.position[0]
    tool = RecordingTool()
    session.set_active_tool(tool)
    vp = ax.graphics.viewport()
    pts = [_widget_point(ax, k, 200, 100 + 10 * n) for n in range(5)]
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, pts[-1])
    kinds = [e[0] for e in tool.events]
    assert kinds[0] == "press" and kinds[-1] == "release" and "drag" in kinds, kinds
    assert abs(tool.events[0][1][2] - 100) <= 1 and abs(tool.events[-1][1][2] - 140) <= 1
