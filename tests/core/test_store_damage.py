"""Damaged workspace records: journal entries that do not fit the map are set aside (the rest replays and the
case reopens), one bad case.json leaves the other cases usable, case ids never lead out of the workspace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctseg_core.edit import Delta
from ctseg_core.errors import StoreError
from ctseg_core.store import Workspace
from ctseg_core.store.journal import encode_delta


def _edit(shape, value, z):
    m = np.zeros(shape, bool)
    m[z, 10:20, 10:20] = True
    return Delta.write(np.zeros(shape, np.uint8), (0, 0, 0), m, value)


def _raw_entry(seq, delta_json):
    return json.dumps({"seq": seq, "time": "2026-01-01T00:00:00.000+00:00", "deltas": [delta_json]}) + "\n"


def test_bad_journal_entries_are_quarantined_and_the_rest_replayed(ws, make_scan, tmp_path):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    good1, good2 = _edit(vol.shape, 1, 1), _edit(vol.shape, 2, 3)
    case.journal_append(good1)
    out_of_range = encode_delta(_edit(vol.shape, 1, 2))
    out_of_range["new"] = encode_delta(Delta.from_mask((2, 3, 10, 20, 10, 20), np.ones((1, 10, 10), bool),
                                                       np.zeros(100), np.full(100, 200)))["new"]
    outside = encode_delta(_edit(vol.shape, 1, 2))
    outside["bbox"] = [2, 3, 10, 20, 60, 70]  # beyond the 64 columns
    short_mask = encode_delta(_edit(vol.shape, 1, 2))
    short_mask["bbox"] = [0, 8, 0, 64, 0, 64]  # the mask no longer matches the box
    with open(case.journal.path, "a") as f:
        f.write(_raw_entry(2, out_of_range) + _raw_entry(3, outside) + _raw_entry(4, short_mask))
        f.write('{"seq": 5, "deltas": [{"bbox": "garbage"}]}\n')
    case.journal.last_seq = 5
    case.journal_append(good2)
    reopened = Workspace(ws.root).case(case.id)
    labels, origin = reopened.load_for_editing(vol)
    assert origin == "recovered"
    assert set(np.unique(labels.array)) == {0, 1, 2}
    assert (labels.array[1] == 1).sum() == 100 and (labels.array[3] == 2).sum() == 100
    assert (labels.array[2] == 0).all()
    note = " ".join(reopened.notes)
    assert "4 damaged edit journal record(s)" in note and "200" in note and "outside" in note
    rejected = reopened.folder / "journal.rejected.jsonl"
    assert len(rejected.read_text().splitlines()) == 4
    assert len(reopened.journal) == 2
    reopened.save_final(labels)
    again, origin = Workspace(ws.root).case(case.id).load_for_editing(vol)  # and it opens again
    assert origin == "final" and np.array_equal(again.array, labels.array)


@pytest.mark.parametrize("damage", ["{not json", '{"id": 3}', "[]", "\xff\xfe"])
def test_one_damaged_case_record_leaves_the_others_usable(ws, make_scan, tmp_path, damage):
    vol_a, path_a = make_scan(tmp_path, "a.nii.gz", seed=1)
    vol_b, path_b = make_scan(tmp_path, "b.nii.gz", seed=2)
    a, b = ws.open_case(vol_a, path_a), ws.open_case(vol_b, path_b)
    labels, _ = a.load_for_editing(vol_a)
    labels.array[2, 5:10, 5:10] = 3
    a.save_final(labels)
    (a.folder / "case.json").write_bytes(damage.encode("latin-1"))
    fresh = Workspace(ws.root)
    assert [r.id for r in fresh.cases()] == [b.id]
    assert len(fresh.problems) == 1 and str(a.folder / "case.json") in fresh.problems[0]
    assert fresh.training_cases() == [] and fresh.next_unreviewed().id == b.id
    reopened = fresh.open_case(vol_a, path_a)  # the same scan again: record rebuilt, labels kept
    assert reopened.id == a.id and any("damaged" in n for n in reopened.notes)
    back, origin = reopened.load_for_editing(vol_a)
    assert origin == "final" and np.array_equal(back.array, labels.array)
    assert list(a.folder.glob("case.json.damaged-*"))


@pytest.mark.parametrize("case_id", ["../../other_ws/cases/X", "..", "a/b", "/etc", ""])
def test_case_ids_never_lead_outside_the_workspace(ws, case_id, tmp_path):
    other = tmp_path / "other_ws" / "cases" / "X"
    other.mkdir(parents=True)
    (other / "case.json").write_text("{}")
    with pytest.raises(StoreError, match="not a case id"):
        ws.case(case_id)


def test_command_line_workspace_must_exist(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Workspace(tmp_path / "typo", create=False)
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a ctseg workspace"):
        Workspace(tmp_path / "plain", create=False)
    assert not (tmp_path / "typo").exists()
    Workspace(tmp_path / "real")
    assert Workspace(tmp_path / "real", create=False).cases() == []
