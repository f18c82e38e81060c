"""The learning loop's guarantees on real (small) inputs: a validation set that stays put, reviewed slices and
corrected voxels read from the case store, zero loss on unreviewed slices, promotion Dice that is the
Predictor's Dice, typed events with a protocol version."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctseg_core.errors import StoreError
from ctseg_core.io import load_volume
from ctseg_core.io.images import write_volume
from ctseg_core.losses import create_loss
from ctseg_core.metrics import overlap_counts, overlap_scores
from ctseg_core.preprocess import Plan
from ctseg_core.store import Workspace
from ctseg_core.store.reviewed import confirmed_slices, mark_slices
from ctseg_core.synth import generate_case
from ctseg_core.training import events as ev
from ctseg_core.training import validation_set
from ctseg_core.training.dataset import LoadedCase, SliceDataset, load_cases, workspace_cases
from ctseg_core.training.promotion import score_cases
from ctseg_core.volume import LabelMap

SMALL = dict(shape_yx=(64, 64), n_slices=6)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Generated scans written as NIfTI: seed -> (path, truth)."""
    folder = tmp_path_factory.mktemp("loop_scans")
    out = {}
    for seed, classes in ((401, [1]), (402, [2]), (403, [1, 2]), (404, [3]), (405, [1]), (406, None)):
        case = generate_case(seed, lesion_classes=classes, normal=classes is None, **SMALL)
        path = folder / f"synth_{seed}.nii.gz"
        write_volume(case.volume, path)
        out[seed] = (path, case.labels.array.astype(np.uint8))
    return out


def add(ws: Workspace, scans, seed: int, status: str = "corrected", prediction=None) -> str:
    path, truth = scans[seed]
    volume = load_volume(path)
    case = ws.open_case(volume, path)
    if prediction is not None:
        case.save_prediction(LabelMap(prediction, volume.geometry), "v1")
    case.save_final(LabelMap(truth, volume.geometry))
    case.set_status(status, annotator="test")
    return case.id


def classes_of(ws: Workspace) -> dict[str, set[str]]:
    return {c.case_id: c.lesion_keys() for c in load_cases(workspace_cases(ws))}


# ---------------------------------------------------------------- the validation set

def test_the_validation_set_is_stratified_and_never_only_bleed_free():
    cases = {"a": {"ich"}, "b": {"ich"}, "c": {"sdh"}, "d": {"sdh", "ich"}, "e": set(), "f": set(), "g": {"sah"},
             "h": set()}
    val, why = validation_set.choose(cases, seed=0)
    assert len(val) == 2 and all(cases[c] for c in val)  # a quarter, lesion-bearing
    assert set().union(*(cases[c] for c in val)) >= {"ich", "sdh"}  # both classes held by >= 2 cases
    assert "sah" not in set().union(*(cases[c] for c in val))  # one case only: it stays in training
    assert "covering ich, sdh" in why
    with pytest.raises(StoreError, match="bleed-free cases cannot tell"):
        validation_set.choose({"e": set(), "f": set(), "h": set()})
    with pytest.raises(StoreError, match="at least two"):
        validation_set.choose({"a": {"ich"}})


def test_the_validation_set_survives_adding_removing_and_approving_cases(tmp_path, scans):
    ws = Workspace(tmp_path / "ws")
    for seed in (401, 402, 403, 404):
        add(ws, scans, seed)
    first, why = validation_set.ensure(ws.root, classes_of(ws))
    assert why and len(first.cases) == 1
    val = first.cases[0]
    train, val_ids = first.split(list(classes_of(ws)))
    assert val_ids == [val] and val not in train

    add(ws, scans, 405)  # a new corrected case goes to training
    add(ws, scans, 406)
    again, why = validation_set.ensure(ws.root, classes_of(ws))
    assert why is None and again.cases == [val] and again.revision == first.revision
    train, val_ids = again.split(list(classes_of(ws)))
    assert val_ids == [val] and len(train) == 5

    ws.case(val).set_status("approved")  # approving keeps it in the set
    assert validation_set.ValidationSet.load(ws.root).split(list(classes_of(ws)))[1] == [val]
    other = next(i for i in train)
    ws.case(other).set_status("in_review")  # a training case taken back out of review: gone from both sides
    train2, val_ids = validation_set.ValidationSet.load(ws.root).split(list(classes_of(ws)))
    assert val_ids == [val] and other not in train2

    ws.case(val).set_status("in_review")  # the only validation case no longer corrected: refuse, not redraw
    with pytest.raises(StoreError, match="none of the validation set's cases is corrected"):
        validation_set.ValidationSet.load(ws.root).split(list(classes_of(ws)))
    assert validation_set.ValidationSet.load(ws.root).cases == [val]

    moved = validation_set.change(ws.root, add=[train2[0]], remove=[val], by="dr_x", known=list(classes_of(ws)))
    assert moved.cases == [train2[0]] and moved.revision == first.revision + 2
    history = json.loads((ws.root / "validation.json").read_text())["history"]
    assert [(h["action"], h["by"]) for h in history[-2:]] == [("added", "dr_x"), ("removed", "dr_x")]
    with pytest.raises(StoreError, match="no such case"):
        validation_set.change(ws.root, add=["nope"], known=list(classes_of(ws)))


def test_fingerprint_changes_with_the_cases_and_their_labels():
    a = {"x": {"scan": "1", "labels": "2"}}
    assert validation_set.fingerprint(a) == validation_set.fingerprint(dict(a))
    assert validation_set.fingerprint(a) != validation_set.fingerprint({"x": {"scan": "1", "labels": "3"}})
    assert validation_set.fingerprint(a) != validation_set.fingerprint({**a, "y": {"scan": "1", "labels": "2"}})


# ---------------------------------------------------------------- what a person reviewed

def test_reviewed_slices_are_the_edited_and_the_confirmed_ones(tmp_path, scans):
    ws = Workspace(tmp_path / "ws")
    path, truth = scans[403]
    prediction = truth.copy()
    z_edit = int(np.flatnonzero(truth.any(axis=(1, 2)))[0])
    prediction[z_edit][prediction[z_edit] > 0] = 0  # the model missed the lesion on one slice
    case_id = add(ws, scans, 403, prediction=prediction)
    mark_slices(ws.case(case_id), [0, z_edit], by="test")
    assert confirmed_slices(ws.case(case_id).folder) == sorted({0, z_edit})
    with pytest.raises(StoreError, match="outside 1..6"):
        mark_slices(ws.case(case_id), [6])

    (case,) = load_cases(workspace_cases(ws))
    assert np.flatnonzero(case.reviewed).tolist() == sorted({0, z_edit})
    assert case.corrected.sum() == (truth[z_edit] > 0).sum() and case.corrected[z_edit].any()

    ds = SliceDataset([case], Plan(spacing_mm=None), unreviewed="ignore", corrected_weight=4.0)
    assert [z for _, z in ds.index] == sorted({0, z_edit})  # a half-reviewed case gives its reviewed half
    item = ds[ds.index.index((0, z_edit))]
    w = item["weight"].numpy()
    assert set(np.unique(w)) == {1.0, 4.0} and (w == 4.0).sum() == (truth[z_edit] > 0).sum()
    plain = SliceDataset([case], Plan(spacing_mm=None), unreviewed="train", corrected_weight=4.0)
    assert len(plain) == 6 and float(plain[z_edit]["weight"].max()) == 1.0


def test_a_case_without_a_prediction_counts_as_reviewed_throughout(tmp_path, scans):
    ws = Workspace(tmp_path / "ws")
    add(ws, scans, 401)
    (case,) = load_cases(workspace_cases(ws))
    assert case.reviewed is None and case.reviewed_slices().all()


def test_an_unreviewed_voxel_contributes_zero_loss_and_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 16, 16, requires_grad=True)
    target = torch.randint(0, 8, (2, 16, 16))
    weight = torch.ones(2, 16, 16)
    weight[1] = 0.0  # the second slice: nobody reviewed it
    for name in ("focal", "focal_dice"):
        loss = create_loss(name, np.ones(8, np.float32))
        value = loss(logits, target, weight)
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.count_nonzero(grad[1]) == 0 and torch.count_nonzero(grad[0]) > 0
        alone = loss(logits[:1], target[:1])  # the same as training on the reviewed slice alone
        assert torch.allclose(value, alone, atol=1e-6), name
    zero = create_loss("focal")(logits, target, torch.zeros(2, 16, 16))
    assert float(zero.detach()) == 0.0
    up = torch.ones(2, 16, 16)
    up[0, :4] = 3.0
    focal = create_loss("focal")
    assert float(focal(logits, target, up).detach()) > float(focal(logits, target, torch.ones(2, 16, 16)).detach())


def test_a_patch_plan_trains_on_crops_of_its_patch_size(scans):
    path, truth = scans[401]
    case = LoadedCase("a", load_volume(path), truth)
    ds = SliceDataset([case], Plan(spacing_mm=None, patch_size=32))
    item = ds[(int(np.flatnonzero(truth.any(axis=(1, 2)))[0]), 5)]
    assert item["image"].shape == (3, 32, 32) and item["label"].shape == (32, 32) and item["weight"].shape == (32, 32)


# ---------------------------------------------------------------- promotion Dice = the Predictor's Dice

def small_predictor():
    """A small random All-Attention U-Net behind the real Predictor (the guard on, as in the viewer)."""
    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.models import create_model
    from ctseg_core.predictor import Predictor

    torch.manual_seed(3)
    model = create_model("aa_unet", encoder="resnet18d", decoder_channels=(8, 8, 16, 16, 32, 32))
    return Predictor(model, ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict()), device="cpu")


def test_promotion_dice_is_the_dice_of_the_predictors_output(scans):
    predictor = small_predictor()
    cases = []
    for seed in (401, 403):
        path, truth = scans[seed]
        reviewed = np.zeros(truth.shape[0], bool)
        reviewed[1:5] = True
        cases.append(LoadedCase(str(seed), load_volume(path), truth, reviewed=reviewed))
    scores = score_cases(predictor, cases)
    counts = [overlap_counts(predictor.predict(c.scan).labels.array[1:5], c.labels[1:5]) for c in cases]
    expected = overlap_scores(counts)
    assert scores.dice and set(scores.dice) == {"ich", "sdh"}
    for key, cls_id in (("ich", 1), ("sdh", 2)):
        assert scores.dice[key] == pytest.approx(expected.dice_sample[cls_id], abs=1e-6)
        assert scores.dice_voxel[key] == pytest.approx(expected.dice_voxel[cls_id], abs=1e-6)


# ---------------------------------------------------------------- events

def test_events_round_trip_with_their_protocol_version():
    step = ev.Step(3, 10, 0.25, 1e-4, 2.0)
    line = json.loads(json.dumps(step.to_json()))
    assert line["event"] == "step" and line["protocol"] == ev.PROTOCOL
    assert ev.from_json(line) == step
    with pytest.raises(ev.ProtocolError, match="protocol 1 is not"):
        ev.from_json({**line, "protocol": 1})
    with pytest.raises(ev.ProtocolError, match="unknown training event"):
        ev.from_json({"event": "nonsense", "protocol": ev.PROTOCOL})


# ---------------------------------------------------------------- prefetch

def test_prefetch_stores_the_prediction_once_and_leaves_an_open_case_alone(tmp_path, scans):
    from ctseg_core.prefetch import prefetch_case
    from ctseg_core.store.lock import CaseLock

    ws = Workspace(tmp_path / "ws")
    path, _ = scans[402]
    case = ws.open_case(load_volume(path), path)
    predictor = small_predictor()
    assert prefetch_case(predictor, ws.case(case.id))
    stored = ws.case(case.id)
    expected = predictor.predict(load_volume(path)).labels.array
    assert np.array_equal(stored.load_prediction().array, expected) and stored.load_uncertainty() is not None
    assert not prefetch_case(predictor, ws.case(case.id))  # already holds this model's prediction
    other = ws.open_case(load_volume(scans[404][0]), scans[404][0])
    holder = CaseLock(other.folder, "").acquire()  # another editor has it open: nothing is written
    try:
        assert not prefetch_case(predictor, ws.case(other.id))
    finally:
        holder.release()
    assert not (other.folder / "prediction.nii.gz").exists()


# ---------------------------------------------------------------- re-scoring after the set changed

def test_versions_are_rescored_on_a_changed_validation_set(tmp_path, scans):
    from ctseg_core import version_scores
    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.model_store import ModelStore
    from ctseg_core.models import create_model
    from ctseg_core.training.run import TrainRequest, rescore

    root = tmp_path / "ws"
    root.mkdir()
    store = ModelStore.for_workspace(root, root_model=None)
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = create_model("aa_unet", encoder="resnet18d", decoder_channels=(8, 8, 16, 16, 32, 32))
        store.add(model, ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict()))
    cases = [LoadedCase(str(seed), load_volume(scans[seed][0]), scans[seed][1]) for seed in (401, 402, 403)]
    validation_set.change(root, replace=["401"])
    req = TrainRequest(root, device="cpu", root_model=None)
    first = rescore(req, lambda e: None, cases=cases)
    fp1, rev1, scores1 = version_scores.current(root / "models")
    assert [e.version for e in first] == ["v1", "v2"] and rev1 == 1 and set(scores1) == {"v1", "v2"}

    validation_set.change(root, add=["402"], by="dr_x")  # a person moved a case in: revision 2
    assert version_scores.current(root / "models")[1] == 1  # the stored scores are of the old set
    events = []
    rescore(req, events.append, cases=cases)
    fp2, rev2, scores2 = version_scores.current(root / "models")
    assert rev2 == 2 and fp2 != fp1 and set(scores2) == {"v1", "v2"}
    assert [e.name for e in events].count("rescored") == 2 and {e.when for e in events if e.name == "validating"} == {
        "rescore"}
    assert scores2["v1"]["dice"].keys() == {"ich", "sdh"}  # now measured on both cases
