"""The Lesions dock, the midline overlay, the prior comparison and the report action, on generated cases."""

import numpy as np
import pytest

from ctseg_core.synth import generate_case


@pytest.fixture(scope="module")
def case():
    return generate_case(32, shape_yx=(256, 256), lesion_classes=[1, 4], midline_shift_mm=9.0)


@pytest.fixture
def measured(qtbot, window, case):
    from app.measurements import install_measurements

    c = install_measurements(window)
    with qtbot.waitSignal(c.updated, timeout=60000):
        window.session.set_volume(case.volume)
        window.session.set_final(case.labels)
    return window, c


def test_lesions_dock_lists_and_navigates(qtbot, measured):
    window, c = measured
    m = c.measurements
    assert c.panel.table.rowCount() == len(m.lesions.lesions) >= 2
    assert f"{m.midline.shift_mm:.1f} mm to the {m.midline.side}" in c.panel.midline_label.text()
    assert c.panel.table.item(0, 1).text() == m.lesions.lesions[0].key.upper()
    assert c.panel.activate(1)
    assert window.session.position == m.lesions.lesions[1].centre
    c.next_action.trigger()  # N: the next lesion, wrapping around
    assert window.session.position == m.lesions.lesions[2 % len(m.lesions.lesions)].centre
    c.previous_action.trigger()
    assert window.session.position == m.lesions.lesions[1].centre
    edh = next(les for les in m.lesions.lesions if les.key == "edh")
    row = m.lesions.lesions.index(edh)
    assert c.panel.table.item(row, 4).text() == f"{edh.thickness.mm:.1f}"


def test_midline_lines_drawn_on_the_axial_view(qtbot, measured):
    window, c = measured
    m = c.measurements.midline
    assert m.found
    view, overlay = window.views["axial"], c.overlay
    window.session.set_position(m.slice_index, int(m.point[0]), int(m.point[1]))
    assert overlay.ideal.isVisible() and overlay.points.isVisible() and overlay.distance.isVisible()
    x, y = overlay.distance.getData()
    expected = [view.index_to_view(r + 0.5, c_ + 0.5) for r, c_ in (m.foot, m.point)]
    assert np.allclose(np.c_[x, y], expected)
    assert np.hypot(x[1] - x[0], y[1] - y[0]) == pytest.approx(m.shift_mm, abs=1.0)  # view units are mm
    assert overlay.label.toPlainText() == f"{m.shift_mm:.1f} mm"
    far = next(k for k in range(view.slice_count()) if m.slice(k) is None)
    window.session.set_position(far, 10, 10)
    assert not overlay.ideal.isVisible() and not overlay.distance.isVisible()
    c.show_action.setChecked(False)
    window.session.set_position(m.slice_index, 10, 10)
    assert not overlay.ideal.isVisible()


def test_compare_with_a_grown_prior_links_cursors(qtbot, measured, case):
    window, c = measured
    prior = generate_case(32, shape_yx=(256, 256), lesion_classes=[1, 4], midline_shift_mm=9.0, lesion_scale=0.7)
    win = c.comparison_window()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.aligned, timeout=180000) as blocker:
        win.show_prior(prior.volume, prior.labels, "test")
    growth = blocker.args[0]
    assert growth.ich_expansion and "MET" in win.status.text()
    assert win.prior_session.volume.shape == case.volume.shape
    window.session.set_position(5, 100, 120)
    assert win.prior_session.position == (5, 100, 120)
    win.prior_session.set_position(7, 90, 110)
    assert window.session.position == (7, 90, 110)
    texts = [win.table.item(r, 6).text() for r in range(win.table.rowCount())]
    assert "expansion" in texts and any(t.startswith("grown") for t in texts)


def test_report_action_writes_the_folder(qtbot, measured, tmp_path):
    window, c = measured
    with qtbot.waitSignal(c.report_written, timeout=60000) as blocker:
        c.write_report(str(tmp_path / "r"))
    files = blocker.args[0]
    assert files.html.is_file() and files.csv.is_file() and files.json.is_file()
    assert files.sr is None and files.notes  # a generated volume, not a DICOM series: no SR, and it says so
    assert "NOT FOR CLINICAL USE" in files.html.read_text()
