"""The annotation workspace: cases from generated NIfTI scans, label maps, status, journal and recovery."""

import hashlib
import json

import numpy as np
import pytest

from ctseg_core.edit import History, PaintPolicy, ops
from ctseg_core.errors import LabelMismatchError, StoreError
from ctseg_core.io.images import read_volume, write_labels, write_volume
from ctseg_core.store import Workspace
from ctseg_core.volume import Geometry, LabelMap


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_open_case_creates_once_and_finds_by_content(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    before = _sha(path)
    case = ws.open_case(vol, path)
    assert case.record.status == "new" and case.record.source.kind == "image"
    assert case.record.source.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert case.id.startswith("head-")
    again = ws.open_case(vol, path)
    assert again.id == case.id and len(ws.cases()) == 1
    # the same bytes under another name are the same scan; other bytes are another case
    copy = tmp_path / "copy" / "head.nii.gz"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert ws.open_case(read_volume(copy), copy).id == case.id
    vol2, path2 = make_scan(tmp_path, "other.nii.gz", seed=1)
    assert ws.open_case(vol2, path2).id != case.id and len(ws.cases()) == 2
    assert _sha(path) == before
    assert Workspace(ws.root).case(case.id).record.created == case.record.created
    with pytest.raises(StoreError, match="no case"):
        ws.case("nope")


def test_prediction_and_final_round_trip_and_geometry_checks(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    pred = LabelMap(np.zeros(vol.shape, np.uint8), vol.geometry)
    pred.array[2:5, 20:40, 20:40] = 1
    case.save_prediction(pred, "aa_unet-0.3")
    assert json.loads((case.folder / "prediction.json").read_text())["model_version"] == "aa_unet-0.3"
    np.testing.assert_array_equal(case.load_prediction(vol).array, pred.array)
    assert case.load_final() is None

    final = LabelMap(pred.array.copy(), vol.geometry)
    final.array[6, 0:5, 0:5] = 6
    case.save_final(final)
    np.testing.assert_array_equal(case.load_final(vol).array, final.array)
    rec = Workspace(ws.root).case(case.id).record
    assert rec.status == "in_review" and rec.final_saved and rec.model_version == "aa_unet-0.3"
    assert set(rec.findings) == {"ich", "pneumocephalus"} and rec.findings["ich"]["positive"]
    assert set(rec.model_findings) == {"ich"} and rec.model_findings["ich"]["volume_ml"] > 0  # the model's, kept

    shifted = Geometry(vol.shape, vol.spacing, (0.0, 0.0, 0.0), vol.geometry.direction)
    with pytest.raises(LabelMismatchError):
        case.save_final(LabelMap(final.array, shifted))
    # a label file on disk that does not fit the scan is refused on load, naming the file
    write_labels(LabelMap(final.array, shifted), case.final_path)
    with pytest.raises(LabelMismatchError, match="final.nii.gz"):
        case.load_final(vol)


def test_a_record_from_before_model_findings_reads_as_not_summarised(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    record_file = case.folder / "case.json"
    old = json.loads(record_file.read_text())
    old.pop("model_findings")
    record_file.write_text(json.dumps(old))
    assert Workspace(ws.root).case(case.id).record.model_findings is None


def test_import_labels_refuses_other_geometry(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    good = LabelMap(np.zeros(vol.shape, np.uint8), vol.geometry)
    good.array[1:3, 5:9, 5:9] = 4
    write_labels(good, tmp_path / "good.nrrd")
    np.testing.assert_array_equal(case.import_labels(tmp_path / "good.nrrd", vol).array, good.array)
    np.testing.assert_array_equal(case.load_final(vol).array, good.array)
    bad = LabelMap(np.zeros((8, 64, 60), np.uint8), Geometry((8, 64, 60), vol.spacing, vol.geometry.origin))
    write_labels(bad, tmp_path / "bad.nii.gz")
    with pytest.raises(LabelMismatchError, match="bad.nii.gz.*shape"):
        case.import_labels(tmp_path / "bad.nii.gz", vol)
    np.testing.assert_array_equal(case.load_final(vol).array, good.array)


def test_status_next_unreviewed_and_training_cases(ws, tmp_path, make_scan):
    cases = []
    for k in range(3):
        vol, path = make_scan(tmp_path, f"scan{k}.nii.gz", seed=k)
        cases.append((ws.open_case(vol, path), vol))
    assert ws.next_unreviewed().id == cases[0][0].id
    c0, v0 = cases[0]
    lab = LabelMap(np.zeros(v0.shape, np.uint8), v0.geometry)
    lab.array[3, 10:20, 10:20] = 2
    c0.save_final(lab)
    c0.set_status("corrected", annotator="dr_a")
    assert ws.next_unreviewed().id == cases[1][0].id
    cases[1][0].set_status("approved", "dr_b")  # approved without a final map: nothing to train on
    cases[2][0].set_status("in_review", "dr_c")
    assert ws.next_unreviewed() is None
    with pytest.raises(StoreError, match="unknown review status"):
        c0.set_status("done")
    rec = ws.case(c0.id).record
    assert rec.annotator == "dr_a" and [h["status"] for h in rec.status_history] == ["new", "in_review", "corrected"]

    train = ws.training_cases()
    assert [t.case_id for t in train] == [c0.id]
    vol = train[0].load_volume()
    np.testing.assert_array_equal(vol.array, v0.array)
    np.testing.assert_array_equal(train[0].load_labels(vol).array, lab.array)
    assert train[0].final_path.is_file()
    assert [t.case_id for t in ws.training_cases(statuses=("in_review",))] == []


def test_load_volume_detects_changed_source(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    np.testing.assert_array_equal(case.load_volume().array, vol.array)
    changed = vol.array.copy()
    changed[0, 0, 0] += 100
    write_volume(vol.with_array(changed), path)
    with pytest.raises(StoreError, match="changed"):
        case.load_volume()


def _edit_session(case, vol, labels):
    """Edits through the history, journaled as the GUI does; returns the history."""
    history = History(labels.array, journal=case.journal_append)
    history.begin_stroke("brush")
    history.apply(ops.brush(labels.array, [(2, 10, 10), (2, 50, 40)], vol.spacing, 3.0, 1))
    history.commit()
    history.apply(ops.flood_fill(labels.array, vol.array, (4, 30, 30), (60, 70), 2, three_d=True))
    history.apply(ops.relabel_component(labels.array, (3, 30, 30), 7, policy=PaintPolicy("protect_locked", {1})))
    return history


def test_recover_after_crash_replays_journal(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    source_before = _sha(path)
    case = ws.open_case(vol, path)
    pred = LabelMap(np.zeros(vol.shape, np.uint8), vol.geometry)
    pred.array[0, 0:10, 0:10] = 5
    case.save_prediction(pred, "m1")
    labels, origin = case.load_for_editing(vol)
    assert origin == "prediction"
    history = _edit_session(case, vol, labels)
    history.undo()  # undo is journaled too
    expected = labels.array.copy()
    # crash: the process is gone without saving; a new session finds the journal
    reopened = Workspace(ws.root).case(case.id)
    recovered, origin = reopened.load_for_editing(vol)
    assert origin == "recovered"
    np.testing.assert_array_equal(recovered.array, expected)

    reopened.save_final(recovered)
    assert reopened.recover() is None and not (reopened.folder / "journal.jsonl").exists()
    # more edits after the save, then a crash while appending (torn last line)
    history = History(recovered.array, journal=reopened.journal_append)
    history.apply(ops.polygon_fill(recovered.array, 5, [(5, 5), (5, 60), (60, 30)], 3))
    expected2 = recovered.array.copy()
    with open(reopened.folder / "journal.jsonl", "a") as f:
        f.write('{"seq": 99, "deltas": [{"bbox": [0, 1')
    again = Workspace(ws.root).case(case.id)
    np.testing.assert_array_equal(again.recover(vol).array, expected2)
    # a later append after the torn line is still read
    last = again.journal.last_seq
    assert again.journal_append(ops.brush(expected2, [(7, 5, 5)], vol.spacing, 2.0, 4)) == last + 1
    assert len(again.journal) == 2
    assert _sha(path) == source_before


def test_crash_between_save_and_journal_trim_is_harmless(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    labels, _ = case.load_for_editing(vol)
    _edit_session(case, vol, labels)
    write_labels(labels, case.final_path)  # the save happened, the trim did not
    np.testing.assert_array_equal(Workspace(ws.root).case(case.id).recover(vol).array, labels.array)


def test_save_from_copy_keeps_newer_journal_entries(ws, tmp_path, make_scan):
    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    labels, _ = case.load_for_editing(vol)
    history = History(labels.array, journal=case.journal_append)
    history.apply(ops.brush(labels.array, [(1, 30, 30)], vol.spacing, 4.0, 1))
    snapshot, upto = labels.array.copy(), case.journal.last_seq  # a background autosave copies here
    history.apply(ops.brush(labels.array, [(6, 30, 30)], vol.spacing, 4.0, 2))  # edit during the save
    case.save_final(LabelMap(snapshot, vol.geometry), journal_upto=upto)
    assert len(case.journal) == 1
    np.testing.assert_array_equal(Workspace(ws.root).case(case.id).recover(vol).array, labels.array)


def test_prediction_keeps_its_model_identity_and_uncertainty(ws, tmp_path, make_scan):
    from ctseg_core.model_identity import ModelIdentity

    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    pred = LabelMap(np.zeros(vol.shape, np.uint8), vol.geometry)
    pred.array[2:5, 20:40, 20:40] = 1
    unc = np.random.default_rng(0).random(vol.shape).astype(np.float32)
    model = ModelIdentity("aa_unet", "v2", parent="v1", sha256="ab" * 32, training="cases (3 cases)",
                          summary="aa_unet v2 (retrained from v1) — trained on cases (3 cases)")
    case.save_prediction(pred, model.label, model=model, uncertainty=unc)
    again = Workspace(ws.root).case(case.id)
    assert again.prediction_model() == model and again.record.model_version == "aa_unet v2 (retrained from v1)"
    back = again.load_uncertainty()
    assert back.dtype == np.float32 and back.shape == vol.shape
    assert np.abs(back - unc).max() <= 0.5 / 255 + 1e-6  # stored in 1/255 steps
    case.save_prediction(pred, "old-style")  # no identity, no uncertainty: none is claimed
    assert again.prediction_model() is None and again.load_uncertainty() is None
    assert again.prediction_guard() is None  # nor what a guard did


def test_prediction_keeps_what_the_guard_did_and_a_damaged_record_claims_nothing(ws, tmp_path, make_scan):
    import json
    from dataclasses import asdict

    from ctseg_core.guard import GuardReport

    vol, path = make_scan(tmp_path)
    case = ws.open_case(vol, path)
    pred = LabelMap(np.zeros(vol.shape, np.uint8), vol.geometry)
    report = GuardReport(0.5, 0.25, 1.0, 2, 0.92, retyped_ml=3.5, retyped_collections=1, type_share=0.8)
    case.save_prediction(pred, "aa_unet v4", guard=asdict(report))
    assert Workspace(ws.root).case(case.id).prediction_guard() == report
    record = case.folder / "prediction.json"
    data = json.loads(record.read_text())
    data["guard"] = {"specks_ml": "a lot"}  # not a report: fields missing
    record.write_text(json.dumps(data))
    assert Workspace(ws.root).case(case.id).prediction_guard() is None
    assert Workspace(ws.root).case(case.id).load_prediction(vol) is not None  # the prediction itself is kept
