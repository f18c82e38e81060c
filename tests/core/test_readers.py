"""Several readers per case: two readers edit one case in two processes at once (nothing lost, each sees
the other's map read-only), a reading starts from the prediction or another reader's map and never
overwrites anyone's, the adjudicated map becomes the final labels, and the audit log replays the history."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ctseg_core.adjudication import A_ONLY, AGREE, B_ONLY, CONFLICT, Adjudication, agreement_map, compare
from ctseg_core.edit import Delta
from ctseg_core.errors import CaseLockedError, StoreError
from ctseg_core.store.audit import array_hash, replay, replay_edits, reader_map
from ctseg_core.store.readers import load_reader_map, readers_of, save_adjudicated
from ctseg_core.volume import LabelMap

READER = """
import json, sys
import numpy as np
from ctseg_core.edit import Delta
from ctseg_core.errors import CaseLockedError
from ctseg_core.store import Workspace
from ctseg_core.store.readers import load_reader_map
root, case_id, me, other, z, value = sys.argv[1:7]
ws = Workspace(root)
mine = ws.reader_case(case_id, me)
mine.lock_for_editing()
labels, origin = mine.load_for_editing()
print("ready", flush=True)
sys.stdin.readline()  # both processes edit, save and finish at the same time
for k in range(4):
    m = np.zeros(labels.array.shape, bool)
    m[int(z), 4 + 6 * k:8 + 6 * k, 4:20] = True
    d = Delta.write(labels.array, (0, 0, 0), m, int(value))
    d.apply(labels.array)
    mine.journal_append(d)
    if k == 1:
        mine.save_final(labels)
mine.save_final(labels)
mine.set_status("done")
theirs = ws.reader_case(case_id, other)
out = {"origin": origin, "other_read_only": theirs.read_only}
try:
    theirs.lock_for_editing()
    out["took_other"] = True
except CaseLockedError as exc:
    out["locked"] = str(exc)
try:
    theirs.save_final(labels)
    out["overwrote_other"] = True
except CaseLockedError:
    pass
print("saved", flush=True)
sys.stdin.readline()  # the other one has saved too: look at its map
other_map = load_reader_map(theirs, other)
out["other_values"] = sorted(int(v) for v in np.unique(other_map.array[int(z) ^ 1]))
print(json.dumps(out), flush=True)
sys.stdin.readline()
"""


def _reader(ws, case, me, other, z, value):
    return subprocess.Popen([sys.executable, "-c", READER, str(ws.root), case.id, me, other, str(z), str(value)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _say(procs, expect):
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    return [p.stdout.readline().strip() for p in procs] if expect is None else \
        [_check(p.stdout.readline().strip(), expect) for p in procs]


def _check(line, expect):
    assert line == expect
    return line


@pytest.fixture
def predicted_case(ws, make_scan, tmp_path):
    """A case with a stored prediction: class 1 in a block on slices 3-4 (from 1)."""
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    pred = np.zeros(vol.shape, np.uint8)
    pred[2:4, 30:40, 30:40] = 1
    case.save_prediction(LabelMap(pred, vol.geometry), "v1")
    return case, vol, pred


def test_two_readers_in_two_processes_lose_nothing_and_see_each_other_read_only(ws, predicted_case):
    case, vol, pred = predicted_case
    procs = [_reader(ws, case, "alice", "bob", 0, 2), _reader(ws, case, "bob", "alice", 1, 3)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
        _say(procs, "saved")
        outs = [json.loads(line) for line in _say(procs, None)]
        _say(procs, "")
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)
    for out, other in zip(outs, ("bob", "alice")):
        assert out["origin"] == "prediction"
        assert out["other_read_only"] is True
        assert "being edited by" in out["locked"] and f"reader {other}" in out["locked"]
        assert "took_other" not in out and "overwrote_other" not in out
    assert outs[0]["other_values"] == [0, 3] and outs[1]["other_values"] == [0, 2]  # each saw the other's strokes

    # nothing lost: each map holds the prediction and all four of its reader's strokes, nothing of the other's
    for name, z, value in (("alice", 0, 2), ("bob", 1, 3)):
        labels = load_reader_map(case, name, vol).array
        assert (labels[2:4] == pred[2:4]).all()
        assert int((labels == value).sum()) == 4 * 4 * 16 and not (labels[z ^ 1] == value).any()
    # both readers finished: both steps are in the case's status history (no update lost), the case is "read"
    record = case.reload_record()
    assert record.status == "read"
    done = [h for h in record.status_history if h["status"] == "read"]
    assert sorted(h["annotator"] for h in done) == ["alice", "bob"]
    assert max(h["readers_done"] for h in done) == 2  # (both may have been done when the first one counted)
    assert [r.status for r in readers_of(case.folder)] == ["done", "done"]
    # every reader's edits and saves are in the audit log, with who made them
    entries = list(ws.audit.entries(case.id))
    for name in ("alice", "bob"):
        mine = [e for e in entries if e["who"] == name]
        assert sum(e["op"] == "edit" for e in mine) == 4 and sum(e["op"] == "save" for e in mine) == 2
        assert all(e["map"] == reader_map(name) for e in mine if e["op"] in ("edit", "save"))


def test_a_reading_starts_from_the_prediction_or_another_readers_map_and_never_overwrites(ws, predicted_case):
    case, vol, pred = predicted_case
    alice = ws.reader_case(case.id, "alice")
    alice.lock_for_editing()
    labels, origin = alice.load_for_editing(vol)
    assert origin == "prediction" and (labels.array == pred).all()
    labels.array[5, 1:5, 1:5] = 4
    alice.save_final(labels)

    carol = ws.reader_case(case.id, "carol")
    carol.lock_for_editing()
    started = carol.start(vol, "reader:alice")
    assert (started.array == labels.array).all()
    assert carol.reader_record().started_from == "reader:alice"
    with pytest.raises(StoreError, match="already begun"):
        carol.start(vol, "prediction")  # her map is kept
    with pytest.raises(StoreError, match="not 'reader:dave'"):
        ws.reader_case(case.id, "dave").start_map("reader:dave")  # not from one's own map
    with pytest.raises(StoreError, match="no map"):
        ws.reader_case(case.id, "dave").start_map("reader:erin")
    carol_map = carol.load_final(vol)
    carol_map.array[6, 1:3, 1:3] = 5
    carol.save_final(carol_map)
    assert (load_reader_map(case, "alice", vol).array == labels.array).all()  # alice's map untouched
    with pytest.raises(CaseLockedError):  # carol's process cannot write alice's map while alice holds it
        ws.reader_case(case.id, "alice").save_final(carol_map)
    assert case.load_final(vol) is None  # the final map is the adjudicator's: no reader wrote it


def _map(shape, boxes):
    a = np.zeros(shape, np.uint8)
    for value, (z, y0, y1, x0, x1) in boxes:
        a[z, y0:y1, x0:x1] = value
    return a


def test_comparison_and_adjudication_against_a_hand_count(ws, predicted_case):
    case, vol, _ = predicted_case
    shape = vol.shape
    # A: ICH 10x10 on slice 1 and SDH 4x4 on slice 5; B: ICH 10x8 (8x10 shared), SAH 2x2 on slice 7
    a = _map(shape, [(1, (0, 10, 20, 10, 20)), (2, (4, 10, 14, 10, 14))])
    b = _map(shape, [(1, (0, 10, 20, 12, 20)), (3, (6, 30, 32, 30, 32))])
    rows = {r.key: r for r in compare(a, b, vol.geometry)}
    voxel_ml = 5.0 * 0.5 * 0.6 / 1000
    assert rows["ich"].dice == pytest.approx(2 * 80 / (100 + 80))
    assert rows["ich"].difference_ml == pytest.approx(20 * voxel_ml)
    assert rows["sdh"].dice == 0.0 and rows["sdh"].volume_a_ml == pytest.approx(16 * voxel_ml)
    assert rows["sah"].dice == 0.0 and rows["sah"].volume_b_ml == pytest.approx(4 * voxel_ml)
    assert rows["edh"].dice is None
    cats = agreement_map(a, b)
    assert [(cats == c).sum() for c in (AGREE, A_ONLY, B_ONLY, CONFLICT)] == [80, 20 + 16, 4, 0]

    adj = Adjudication(a, b, "alice", "bob")
    assert [c.voxels for c in adj.components] == [20, 16, 4]  # largest first
    assert adj.components[0].slices == (1, 1) and adj.components[1].classes_a == (2,)
    assert (adj.result == np.where(a == b, a, 0)).all()
    adj.decide(0, "a")  # ICH strip: alice was right
    adj.decide(1, "b")  # SDH: bob was right (nothing there)
    adj.decide(2, "b")  # SAH: bob was right
    expected = a.copy()
    expected[4] = 0
    expected[6, 30:32, 30:32] = 3
    assert (adj.result == expected).all() and adj.undecided == 0
    assert adj.decisions() == {"components": 3, "from_a": 1, "from_b": 2, "undecided": 0}

    case.lock_for_editing()
    case.who = "chief"
    save_adjudicated(case, LabelMap(adj.result, vol.geometry), "alice", "bob", adj.decisions())
    assert (case.load_final(vol).array == expected).all()
    record = case.reload_record()
    assert record.status == "adjudicated" and record.annotator == "chief"
    assert [t.case_id for t in ws.training_cases()] == [case.id]  # training uses the adjudicated map
    log = [e for e in ws.audit.entries(case.id) if e["op"] == "adjudicate"]
    assert log[0]["readers"] == ["alice", "bob"] and log[0]["who"] == "chief" and log[0]["decisions"]["from_b"] == 2


def test_the_audit_log_replays_a_cases_history(ws, predicted_case):
    case, vol, pred = predicted_case
    alice = ws.reader_case(case.id, "alice")
    alice.lock_for_editing()
    labels, _ = alice.load_for_editing(vol)
    saved_states = []
    for step in range(3):
        m = np.zeros(vol.shape, bool)
        m[step, 2:6, 2 + step:9] = True
        d = Delta.write(labels.array, (0, 0, 0), m, step + 1)
        d.apply(labels.array)
        alice.journal_append(d)
        if step != 1:
            alice.save_final(labels)
            saved_states.append(labels.array.copy())
    undo = Delta.write(labels.array, (0, 0, 0), labels.array == 3, 0)  # erase class 3 again
    undo.apply(labels.array)
    alice.journal_append(undo)
    alice.save_final(labels)
    saved_states.append(labels.array.copy())
    alice.set_status("done")

    case.lock_for_editing()
    case.who = "chief"
    final = load_reader_map(case, "alice", vol)
    final.array[7, 0:2, 0:2] = 7
    save_adjudicated(case, final, "alice", "alice")

    steps = replay(ws.audit, case.id, reader_map("alice"), vol.shape)
    assert len(steps) == len(saved_states) == 3
    for step, state in zip(steps, saved_states):
        assert (step.labels == state).all()
    assert [s.edits for s in steps] == [1, 2, 1]
    assert (replay_edits(ws.audit, case.id, reader_map("alice"), vol.shape) == saved_states[-1]).all()
    final_steps = replay(ws.audit, case.id, "final", vol.shape)
    assert (final_steps[-1].labels == case.load_final(vol).array).all()
    assert (replay(ws.audit, case.id, "prediction", vol.shape)[-1].labels == pred).all()
    ops = [(e["op"], e["who"]) for e in ws.audit.entries(case.id)]
    assert ops[0][0] == "prediction" and ("status", "alice") in ops and ops[-1] == ("status", "chief")
    # the log is only ever appended to: a later entry never changes an earlier line
    before = ws.audit.path.read_bytes()
    alice.set_status("in_progress")
    assert ws.audit.path.read_bytes().startswith(before)
    # a map changed behind the log's back is detected
    (case.folder / "final.nii.gz").unlink()
    lines = ws.audit.path.read_text().splitlines()
    tampered = [json.loads(x) for x in lines]
    for e in tampered:
        if e["op"] == "save" and e["map"] == "final":
            e["hash"] = array_hash(np.ones(vol.shape, np.uint8))
    ws.audit.path.write_text("".join(json.dumps(e) + "\n" for e in tampered))
    with pytest.raises(StoreError, match="does not reproduce"):
        replay(ws.audit, case.id, "final", vol.shape)


def test_audit_export_csv_and_jsonl(ws, predicted_case, tmp_path):
    import csv

    case, vol, _ = predicted_case
    case.lock_for_editing()
    case.who = "dr x"
    labels, _ = case.load_for_editing(vol)
    m = np.zeros(vol.shape, bool)
    m[3, 1:4, 1:4] = True
    case.journal_append(Delta.write(labels.array, (0, 0, 0), m, 2))
    case.set_status("corrected")
    n = ws.audit.export(tmp_path / "audit.csv")
    rows = list(csv.DictReader(open(tmp_path / "audit.csv")))
    assert n == len(rows) == 3
    assert [r["op"] for r in rows] == ["prediction", "edit", "status"]
    assert rows[1]["who"] == "dr x" and rows[1]["slices"] == "4-4" and rows[1]["voxels"] == "9"
    assert json.loads(rows[2]["details"])["status"] == "corrected"
    assert ws.audit.export(tmp_path / "audit.jsonl", case=case.id) == 3
    assert "deltas" in json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[1])


def test_opening_a_case_keeps_another_readers_write_in_progress(ws, predicted_case):
    case, vol, _ = predicted_case
    bob = ws.reader_case(case.id, "bob")
    bob.lock_for_editing()
    in_progress = case.folder / ".case.json.x1.tmp"  # bob's atomic write of case.json, not yet renamed
    in_progress.write_text("{}")
    alice = ws.reader_case(case.id, "alice")
    alice.lock_for_editing()
    alice.load_for_editing(vol)
    assert in_progress.exists()
    bob.release_lock()  # nobody else edits: it is a crash's leftover now
    alice.load_for_editing(vol)
    assert not in_progress.exists()
