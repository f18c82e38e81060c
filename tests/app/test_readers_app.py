"""Several readers in the app: the reader is in the title bar and recorded; in a double-reading workspace
each reader edits their own map (a second window of the same reader is read-only, another reader's window
is not), the adjudication view compares two readers and its result becomes the final map, the agreement
table and the audit log show what happened, and the case list follows other people's changes."""

from __future__ import annotations

import numpy as np
import pytest

from gui_helpers import make_window, open_and_wait, write_phantom
from ctseg_core.edit import Delta
from ctseg_core.io.images import read_labels
from ctseg_core.store import Workspace
from ctseg_core.store.readers import ReaderCase, load_reader_map, readers_of


def _window(qtbot, tmp_path, workspace, scan, name):
    from PySide6.QtCore import QSettings

    from app.reading import install_reading

    own = QSettings(str(tmp_path / f"{name}.ini"), QSettings.IniFormat)
    own.setValue("review/annotator", name)
    win, editor = make_window(qtbot, own, tmp_path, workspace, autosave_ms=600000)
    reading = install_reading(win, editor)
    assert open_and_wait(qtbot, win, scan) == "no model"
    return win, editor, reading


def _paint(editor, z, rows, value):
    labels = editor.history.labels
    m = np.zeros(labels.shape, bool)
    m[z, rows[0]:rows[1], 40:60] = True
    editor.apply_step("test stroke", Delta.write(labels, (0, 0, 0), m, value))


@pytest.fixture
def double_ws(workspace):
    Workspace(workspace).set_double_reading(True)
    return workspace


def test_each_reader_edits_their_own_map_and_the_title_says_who(qtbot, tmp_path, double_ws):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win_a, ed_a, reading_a = _window(qtbot, tmp_path, double_ws, scan, "alice")
    case = ed_a.store.case
    assert isinstance(case, ReaderCase) and case.reader == "alice"
    assert "reader: alice (own map" in win_a.windowTitle() and "Reader: alice" in reading_a.label.text()
    _paint(ed_a, 4, (40, 50), 1)
    ed_a.store.save_now()

    win_b, ed_b, _ = _window(qtbot, tmp_path, double_ws, scan, "bob")
    assert not ed_b.store.read_only and ed_b.store.case.reader == "bob"  # another reader: editable
    assert not ed_b.history.labels.any()  # bob does not start from alice's map unless he chooses to
    _paint(ed_b, 4, (44, 56), 1)
    ed_b.store.save_now()
    ed_b.store.set_status("done")

    win_a2, ed_a2, _ = _window(qtbot, tmp_path, double_ws, scan, "alice")  # alice again, in a second window
    assert "being edited by" in ed_a2.store.read_only and ed_a2.history is None
    win_a2.close()

    ws = Workspace(double_ws)
    assert [r.reader for r in readers_of(case.folder)] == ["alice", "bob"]
    alice, bob = (load_reader_map(case, r).array for r in ("alice", "bob"))
    assert (alice[4, 40:50, 40:60] == 1).all() and not alice[4, 50:56].any()
    assert (bob[4, 44:56, 40:60] == 1).all()
    assert not (case.folder / "final.nii.gz").exists()
    assert ws.case(case.id).record.status == "read"
    who = {(e["op"], e["who"]) for e in ws.audit.entries(case.id)}
    assert {("edit", "alice"), ("save", "alice"), ("edit", "bob"), ("status", "bob")} <= who

    # a reader change in the app switches to that reader's own map
    ed_a.store.set_annotator("carol")
    assert ed_a.store.case.reader == "carol" and "reader: carol" in win_a.windowTitle()
    assert reading_a.start_action.isEnabled()
    assert reading_a.start_from("reader:bob")
    assert (ed_a.history.labels == bob).all() and ed_a.store.case.reader_record().started_from == "reader:bob"
    assert not reading_a.start_action.isEnabled()  # her map is begun: it is never replaced
    win_a.close()
    win_b.close()


def test_adjudication_view_makes_the_final_map_and_the_tables_show_it(qtbot, tmp_path, double_ws):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win_b, ed_b, _ = _window(qtbot, tmp_path, double_ws, scan, "bob")
    _paint(ed_b, 4, (44, 56), 1)
    _paint(ed_b, 7, (30, 34), 3)
    ed_b.store.save_now()
    ed_b.store.set_status("done")
    win_b.close()
    win, editor, reading = _window(qtbot, tmp_path, double_ws, scan, "alice")
    _paint(editor, 4, (40, 50), 1)
    editor.store.save_now()
    editor.store.set_status("done")

    view = reading.open_adjudication()
    adj = view.adjudication
    assert (adj.reader_a, adj.reader_b) == ("bob", "alice")  # in the order they began
    assert [c.voxels for c in adj.components] == [6 * 20, 4 * 20, 4 * 20]
    assert view.components.rowCount() == 3 and view.classes.item(0, 0).text() == "ICH"
    assert view.classes.item(0, 1).text() == f"{2 * 6 * 20 / (10 * 20 + 12 * 20):.3f}"
    assert view.classes.item(0, 4).text() == f"{(12 - 10) * 20 * 5.0 * 0.8 * 0.8 / 1000:+.2f}"
    assert view.slider.value() == adj.components[0].centre[0] and win.session.position[0] == 4
    view.decide("a")  # bob's extra rows 50-56 on slice 5
    assert adj.components[0].decision == "a" and view.current == 1
    view.decide("b")  # alice's rows 40-44
    view.step(1)
    view.decide("a")  # bob's SAH on slice 8
    assert adj.undecided == 0
    assert view.save(redraw=True)
    final = read_labels(editor.store.case.folder / "final.nii.gz").array
    assert (final[4, 40:56, 40:60] == 1).all() and (final[7, 30:34, 40:60] == 3).all()
    ws = Workspace(double_ws)
    record = ws.case(editor.store.case.id).record
    assert record.status == "adjudicated" and record.annotator == "alice"
    assert editor.store.editing_final and not isinstance(editor.store.case, ReaderCase)  # redraw in the editor
    assert "final map, adjudicating" in win.windowTitle()
    _paint(editor, 9, (10, 12), 2)  # the adjudicator redraws: saved into the final map
    editor.store.save_now()
    assert (read_labels(editor.store.case.final_path).array[9, 10:12, 40:60] == 2).all()
    assert ws.case(editor.store.case.id).record.status == "adjudicated"

    agreement = reading.open_agreement()
    qtbot.waitUntil(lambda: agreement.report is not None, timeout=20000)
    rows = {(agreement.table.item(r, 0).text(), agreement.table.item(r, 1).text()): r
            for r in range(agreement.table.rowCount())}
    assert ("reader vs reader", "ICH") in rows and ("reader vs final", "SAH") in rows
    audit = reading.open_audit()
    ops = [audit.table.item(r, 1).text() for r in range(audit.table.rowCount())]
    assert ops[0] == "save" and "adjudicate" in ops and ops.count("status") >= 3
    assert audit.export(str(tmp_path / "audit.csv")) == len(ops)
    reading.own_map_action.trigger()
    assert isinstance(editor.store.case, ReaderCase) and editor.store.case.reader == "alice"
    win.close()


def test_the_case_list_follows_other_peoples_changes(qtbot, tmp_path, double_ws):
    scan = write_phantom(tmp_path / "scan.nii.gz")
    win, editor, _ = _window(qtbot, tmp_path, double_ws, scan, "alice")
    store, panel = editor.store, editor.cases_panel
    store.check_for_changes()
    assert not store.check_for_changes()
    other = Workspace(double_ws).reader_case(store.case.id, "zoe")  # another person, elsewhere
    other.lock_for_editing()
    labels, _ = other.load_for_editing()
    labels.array[3, 10:20, 10:20] = 2
    other.save_final(labels)
    other.set_status("done")
    with qtbot.waitSignal(store.cases_changed, timeout=5000):
        assert store.check_for_changes()
    assert panel.table.item(0, 1).text() == "read (1 reader)"
    assert "zoe ✓" in panel.table.item(0, 1).toolTip()
    assert store.case.record.status == "read"
    win.close()
