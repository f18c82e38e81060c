"""The Predictor on slab models (RSANet) and scan models (RADnet), and scan triage from slice probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctseg_core.checkpoint import ModelCard, save_checkpoint
from ctseg_core.errors import CheckpointError
from ctseg_core.models import create_model
from ctseg_core.prediction import softmax_classes
from ctseg_core.predictor import Predictor
from ctseg_core.preprocess import Plan
from ctseg_core.sequence_inference import slab_starts, slab_weights
from ctseg_core.triage import Triage, positive_slices, scan_probability
from ctseg_core.volume import Volume
from tiny_models import tiny_config


def small_volume(depth=7, size=64, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.normal(30, 20, (depth, size, size)).astype(np.float32)
    arr[:, 20:30, 20:40] = 70
    return Volume.from_array(arr, spacing=(5.0, 0.9, 0.9))


def model_and_card(arch: str, plan: Plan, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(arch, **tiny_config(arch)).eval()
    return model, ModelCard.for_model(model, plan=plan.to_dict())


def test_slabs_cover_the_scan_half_a_slab_apart():
    assert slab_starts(7, 4) == [0, 2, 3]
    assert slab_starts(8, 4) == [0, 2, 4]
    assert slab_starts(3, 4) == [0]
    assert slab_weights(4).tolist() == [1.0, 2.0, 2.0, 1.0]


def test_slab_predictor_blends_the_slabs_of_each_slice(tmp_path):
    vol = small_volume()
    plan = Plan(spacing_mm=None, adjacent_slices=1)
    model, card = model_and_card("rsanet", plan)  # slab_slices 4
    seen = []
    pred = Predictor(model, card, device="cpu", guard=None).predict(vol, start_slice=6,
                                                                      on_slice=lambda z, lab, p: seen.append(z))
    assert sorted(seen) == list(range(7)) and seen[0] in (3, 4, 5, 6)  # the viewed slice's slab first
    # slice 3 lies in slabs 0-3 (4th of 4), 2-5 (2nd) and 3-6 (1st): weights 1, 2, 1
    x = torch.from_numpy(plan.map_intensity(vol.array))
    with torch.no_grad():
        per_slab = {s: softmax_classes(model(x[None, s:s + 4])[0].transpose(0, 1)) for s in (0, 2, 3)}
    expected = (1 * per_slab[0][3] + 2 * per_slab[2][1] + 1 * per_slab[3][0]) / 4
    assert np.allclose(pred.probabilities[3].astype(np.float32), expected.numpy(), atol=2e-3)
    assert np.array_equal(pred.labels.array[3], expected.argmax(0).numpy())
    assert pred.slice_probabilities is None and pred.triage is None
    path = save_checkpoint(model, card, tmp_path / "rsanet")
    again = Predictor.from_checkpoint(path, device="cpu", guard=None).predict(vol)
    assert np.array_equal(again.labels.array, pred.labels.array)


def test_scan_predictor_gives_slice_probabilities_and_no_labels():
    vol = small_volume(depth=6)
    plan = Plan(spacing_mm=None)
    model, card = model_and_card("radnet", plan)
    seen = []
    pred = Predictor(model, card, device="cpu").predict(vol, start_slice=2, on_slice=lambda z, lab, p: seen.append(
        (z, int(lab.max()), p)))
    assert [s[0] for s in seen][:3] == [2, 3, 1] and sorted(s[0] for s in seen) == list(range(6))
    assert all(m == 0 and p is None for _, m, p in seen)  # no overlay, no voxel probabilities
    assert not pred.labels.array.any() and pred.probabilities is None and pred.uncertainty() is None
    stacks = torch.from_numpy(np.stack([plan.input_stack(vol.array, z) for z in range(6)]))
    with torch.no_grad():
        expected = torch.sigmoid(model(stacks)).numpy()
    assert np.allclose(pred.slice_probabilities, expected, atol=1e-5)
    assert isinstance(pred.triage, Triage) and pred.triage.probability == pytest.approx(scan_probability(expected))
    with pytest.raises(CheckpointError, match="radnet is a scan model: option.s. tta do not apply"):
        Predictor(model, card, device="cpu", tta=True)
    with pytest.raises(CheckpointError, match="option.s. engine do not apply"):
        Predictor(model, card, device="cpu", engine="onnxruntime")


def test_triage_calls_a_scan_positive_on_three_consecutive_slices():
    p = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.6, 0.95, 0.3])
    assert positive_slices(p) == [1, 2, 4, 5, 6]
    triage = Triage(p)
    assert triage.positive and triage.probability == pytest.approx(0.6)  # slices 5-7: min 0.6
    assert triage.in_positive_run().tolist() == [False, False, False, False, True, True, True, False]
    assert triage.describe() == "POSITIVE (p 0.60): 5 positive slices, 2-3, 5-7"
    two = Triage(np.array([0.9, 0.9, 0.1, 0.9, 0.9]))
    assert not two.positive and two.probability == pytest.approx(0.1)  # never 3 in a row
    assert scan_probability([0.9, 0.9]) == 0.0  # too few slices for the rule
    # the call and the probability agree: positive exactly when the probability reaches the threshold
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.random(rng.integers(3, 12))
        t = Triage(q)
        assert t.positive == (t.probability >= t.threshold)
    data = triage.to_json()
    assert data["positive_slices"] == [2, 3, 5, 6, 7] and len(data["slice_probabilities"]) == 8
    json.dumps(data)


def test_segment_json_reports_the_slice_probabilities_of_a_triage_model(tmp_path, capsys):
    from ctseg_core.cli import main
    from ctseg_core.io.images import read_labels, write_volume

    vol = small_volume(depth=6)
    write_volume(vol, tmp_path / "scan.nii.gz")
    model, card = model_and_card("radnet", Plan(spacing_mm=None))
    ckpt = save_checkpoint(model, card, tmp_path / "radnet")
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(tmp_path / "scan.nii.gz"), "-o", str(out), "--model", str(ckpt), "--device", "cpu",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    probs = report["triage"]["slice_probabilities"]
    assert len(probs) == 6 and all(0 <= p <= 1 for p in probs)
    assert report["triage"]["positive"] == Triage(np.array(probs)).positive
    assert not read_labels(out).array.any()
    assert main(["segment", str(tmp_path / "scan.nii.gz"), "-o", str(out), "--model", str(ckpt),
                 "--device", "cpu"]) == 0
    assert "slice probabilities: 1:" in capsys.readouterr().out


def test_evaluate_scores_a_triage_model_on_detection_beside_segmentation_models(tmp_path, capsys):
    from ctseg_core.cli import main
    from ctseg_core.io.images import write_labels, write_volume
    from ctseg_core.volume import LabelMap
    from tiny_models import save_tiny_checkpoint

    for folder, seed, lesion in (("bleeds", 1, True), ("normal", 2, False)):
        vol = small_volume(depth=5, seed=seed)
        write_volume(vol, tmp_path / folder / f"case_{seed}_ct.nii.gz")
        truth = np.zeros(vol.shape, np.uint8)
        if lesion:
            truth[1:4, 20:30, 20:40] = 1
        write_labels(LabelMap(truth, vol.geometry), tmp_path / folder / f"case_{seed}_labels.nii.gz")
    model, card = model_and_card("radnet", Plan(spacing_mm=None))
    triage_ckpt = save_checkpoint(model, card, tmp_path / "radnet")
    seg_ckpt = save_tiny_checkpoint(tmp_path, "unet")
    args = ["evaluate", "--data", str(tmp_path / "bleeds"), "--data", str(tmp_path / "normal"), "--model",
            str(seg_ckpt), "--model", str(triage_ckpt), "--device", "cpu"]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_cases"] == 2
    seg, tri = report["results"]
    assert seg["overlap"]["n_scans"] == 2 and tri["overlap"] is None
    assert set(tri["detection"]) == {"any"} and sum(tri["detection"]["any"][k] for k in ("tp", "fp", "fn", "tn")) == 2
    assert tri["timing"]["slices"] == 10 and tri["timing"]["wall_s_per_slice"] > 0
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "(no labels: slice triage)" in text and "spec" in text and "Inference time on this machine" in text
