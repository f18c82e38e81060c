"""Predictor: outward order with a batch-1 first slice, cancel, edge replication, results mapped back to the
scan's own grid through a model whose output is a known function of its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctseg_core.checkpoint import ModelCard
from ctseg_core.errors import Cancelled
from ctseg_core.jobs import CancelToken
from ctseg_core.predictor import Predictor, resolve_device, slice_order
from ctseg_core.preprocess import Plan, make_stack
from ctseg_core.volume import Volume

BLOOD, BRAIN = 70.0, 30.0  # input 0.6 and 0.4 under the default intensity map; threshold 50 HU = 0.5


class ThresholdNet(nn.Module):
    """Class 1 where input channel ``channel`` > 0.5, else background; records its batch sizes."""

    def __init__(self, channel: int = 1):
        super().__init__()
        self.channel = channel
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        logits = torch.full((x.shape[0], 8, *x.shape[-2:]), -100.0)
        logits[:, 0] = 0.0
        logits[:, 1] = 50.0 * (x[:, self.channel] - 0.5)
        return logits


def threshold_predictor(channel=1, spacing_mm=None, card_guard=None, **kw) -> Predictor:
    card = ModelCard(architecture="threshold_test", config={"in_chans": 3, "num_classes": 8},
                     plan=Plan(spacing_mm=spacing_mm).to_dict(), guard=card_guard or {})
    kw.setdefault("guard", None)  # these volumes have no skull: the guard is tested on its own below
    return Predictor(ThresholdNet(channel), card, device="cpu", **kw)


def patterned_volume(depth=5, shape=(50, 70), spacing=(3.0, 0.9, 0.9)) -> Volume:
    """Brain with one blood rectangle per slice, placed differently on every slice (asymmetric)."""
    arr = np.full((depth, *shape), BRAIN, np.float32)
    arr[:, :3] = -1000.0  # air at the top edge
    for z in range(depth):
        arr[z, 5 + 3 * z:20 + 3 * z, 4 + 7 * z:15 + 9 * z] = BLOOD
    return Volume.from_array(arr, spacing=spacing, origin=(10.0, -20.0, 30.0))


def test_slice_order_spreads_outward():
    assert slice_order(5, 2) == [2, 3, 1, 4, 0]
    assert slice_order(4, 0) == [0, 1, 2, 3]
    assert slice_order(4, 3) == [3, 2, 1, 0]
    assert slice_order(7) == [3, 4, 2, 5, 1, 6, 0]
    assert slice_order(1) == [0]
    with pytest.raises(IndexError):
        slice_order(4, 4)


def test_callbacks_arrive_in_order_with_a_single_slice_first_batch():
    pred = threshold_predictor(batch_size=3)
    seen = []
    pred.predict(patterned_volume(depth=7), start_slice=5, on_slice=lambda z, lab, p: seen.append(z))
    assert seen == [5, 6, 4, 3, 2, 1, 0]
    assert pred.model.batches == [1, 3, 3]


def test_labels_are_a_known_function_of_the_input_on_the_scans_grid():
    """0.9 mm scan, 0.45 mm plan (resampled x2), 50x70 slices (padded to multiples of 32) -> exact labels."""
    vol = patterned_volume()
    pred = threshold_predictor(spacing_mm=0.45)
    grid = pred.plan.grid(vol.shape[1:], vol.spacing[1:])
    assert grid.resized_shape == (100, 140) and grid.padded_shape == (128, 160)
    out = pred.predict(vol)
    expected = (vol.array > 50).astype(np.uint8)
    assert np.array_equal(out.labels.array, expected)
    assert out.labels.geometry == vol.geometry
    assert out.probabilities.shape == (5, 8, 50, 70) and out.probabilities.dtype == np.float16
    assert np.allclose(out.probabilities.astype(np.float32).sum(axis=1), 1.0, atol=1e-2)
    unc = out.uncertainty()
    assert unc.dtype == np.float32 and unc.shape == vol.shape
    assert np.allclose(unc, 1 - out.probabilities.max(axis=1), atol=1e-3)
    assert unc.min() >= 0 and np.median(unc) < 0.01 < unc.max()  # certain inside regions, less at edges


def test_the_guard_runs_on_each_slice_and_the_models_own_labels_are_kept():
    from ctseg_core.guard import Guard

    vol = patterned_volume()
    vol.array[:, :3], vol.array[:, -3:], vol.array[:, :, :3], vol.array[:, :, -3:] = 1500, 1500, 1500, 1500  # a skull
    vol.array[:, 8:16, 20:40] = 400  # a dense (calcified) spot inside: blood-like for a threshold, not for the guard
    vol.array[2, 40:42, 60:62] = BLOOD  # a speck: 4 voxels of 2.43 mm^3, under the guard's 0.01 mL
    seen = {}
    out = threshold_predictor(guard=Guard()).predict(vol, on_slice=lambda z, lab, p: seen.update({z: lab.copy()}))
    raw = (vol.array > 50).astype(np.uint8)
    assert np.array_equal(out.model_labels, raw)
    assert not out.labels.array[:, :3].any() and not out.labels.array[:, 9:15, 21:39].any()  # skull and spot are gone
    assert seen[2][40:42, 60:62].all() and not out.labels.array[2, 40:42, 60:62].any()  # the speck, once all is done
    assert out.guard_report.specks_ml == pytest.approx(4 * float(np.prod(vol.spacing)) / 1000)
    assert out.guard_report.unsure_ml == 0 and "no unsure-piece rule for this model" in out.guard_report.describe()
    inside = (vol.array > 50) & (vol.array < 100)
    inside[2, 40:42, 60:62] = False
    assert inside.any() and out.labels.array[inside].all()  # blood inside the skull stays
    seen[2][40:42, 60:62] = 0
    assert all(np.array_equal(seen[z], out.labels.array[z]) for z in seen)  # the viewer gets guarded slices
    assert threshold_predictor().predict(vol).model_labels is None
    assert threshold_predictor().predict(vol).guard_report is None


def test_the_guard_drops_pieces_the_model_is_unsure_of_at_the_threshold_its_card_names():
    from ctseg_core.guard import Guard

    vol = patterned_volume()
    vol.array[:, :3], vol.array[:, -3:], vol.array[:, :, :3], vol.array[:, :, -3:] = 1500, 1500, 1500, 1500  # a skull
    vol.array[1:4, 38:46, 50:60] = 54.0  # input 0.52: the model says class 1 with p = 0.73 (blood at 70 HU: 0.99)
    faint = np.zeros(vol.shape, bool)
    faint[1:4, 38:46, 50:60] = True
    seen = {}
    card_guard = {"min_piece_confidence": 0.9, "chosen": "a test"}
    out = threshold_predictor(guard=Guard(), card_guard=card_guard).predict(
        vol, on_slice=lambda z, lab, p: seen.update({z: lab.copy()}))
    assert out.probabilities[:, 1][faint].astype(np.float32).mean() == pytest.approx(0.73, abs=0.02)
    assert all(seen[z][faint[z]].all() for z in (1, 2, 3))  # streamed while the scan was being done ...
    assert not out.labels.array[faint].any() and out.model_labels[faint].all()  # ... gone once it is done
    report = out.guard_report  # what the guard took, rule by rule
    voxel_ml = float(np.prod(vol.spacing)) / 1000
    assert report.unsure_ml == pytest.approx(faint.sum() * voxel_ml) and report.unsure_pieces == 1
    assert report.specks_ml == 0 and report.threshold == 0.9
    assert report.slice_rules_ml == pytest.approx(((out.model_labels > 0) & ~faint & (out.labels.array == 0)).sum() * voxel_ml)
    assert "1 piece(s) the model was unsure of (mean probability under 0.9)" in report.describe()
    sure = (vol.array == BLOOD) & ~faint
    assert sure.sum() > 500 and out.labels.array[sure].all()  # confident blood stays
    kept = threshold_predictor(guard=Guard()).predict(vol).labels.array  # a card without a threshold: no rule 4
    assert kept[faint].all()
    kept = threshold_predictor(guard=Guard(min_piece_confidence=0), card_guard=card_guard).predict(vol).labels.array
    assert kept[faint].all()  # the caller's own setting wins over the card's
    assert threshold_predictor(guard=Guard(min_piece_confidence=0.7), card_guard=card_guard).guard.min_piece_confidence == 0.7
    with_share = threshold_predictor(guard=Guard(), card_guard={**card_guard, "min_type_share": 0.8}).guard
    assert with_share.min_type_share == 0.8 and with_share.min_piece_confidence == 0.9  # rule 5's share too


def test_without_resampling_when_the_plan_spacing_is_close():
    vol = patterned_volume(spacing=(3.0, 0.47, 0.47))
    pred = threshold_predictor(spacing_mm=0.45)  # 4 % apart: within the 5 % tolerance
    assert not pred.plan.grid(vol.shape[1:], vol.spacing[1:]).resampled
    assert np.array_equal(pred.predict(vol).labels.array, (vol.array > 50).astype(np.uint8))


def test_edge_slices_are_replicated():
    depth = 6
    hu = np.arange(depth, dtype=np.float32)[:, None, None] * np.ones((depth, 2, 2), np.float32)
    assert make_stack(hu, 0)[:, 0, 0].tolist() == [0, 0, 1]
    assert make_stack(hu, depth - 1)[:, 0, 0].tolist() == [4, 5, 5]
    assert make_stack(hu, 3)[:, 0, 0].tolist() == [2, 3, 4]
    # through the predictor: a model that looks only at the previous slice (channel 0)
    vol = patterned_volume(depth=depth)
    out = threshold_predictor(channel=0).predict(vol, start_slice=0)
    previous = vol.array[[0, 0, 1, 2, 3, 4]]
    assert np.array_equal(out.labels.array, (previous > 50).astype(np.uint8))


def test_cancel_between_batches():
    token = CancelToken()
    pred = threshold_predictor(batch_size=2)
    seen = []

    def on_slice(z, labels, probs):
        seen.append(z)
        token.cancel()

    with pytest.raises(Cancelled):
        pred.predict(patterned_volume(depth=7), on_slice=on_slice, cancel=token)
    assert seen == [3] and pred.model.batches == [1]


def test_flip_tta_maps_the_flipped_pass_back():
    vol = patterned_volume()
    plain = threshold_predictor().predict(vol)
    tta = threshold_predictor(tta=True, batch_size=2)
    out = tta.predict(vol)
    assert np.array_equal(out.labels.array, plain.labels.array)
    assert tta.model.batches == [1, 1, 2, 2, 2, 2]  # each batch twice: plain and flipped
    assert np.allclose(out.probabilities.astype(np.float32), plain.probabilities.astype(np.float32), atol=1e-3)


def test_progress_and_callback_arrays(tiny_checkpoint):
    path = tiny_checkpoint()
    pred = Predictor.from_checkpoint(path, device="cpu", batch_size=2)
    assert pred.device == torch.device("cpu") and pred.strategy.amp_dtype is None and not pred.strategy.channels_last
    vol = patterned_volume(depth=3, shape=(64, 64))
    got, progress = [], []
    out = pred.predict(vol, on_slice=lambda z, lab, p: got.append((z, lab.dtype, lab.shape, p.dtype, p.shape)),
                       progress=lambda done, total, msg="": progress.append((done, total)))
    assert got == [(z, np.uint8, (64, 64), np.float16, (8, 64, 64)) for z in (1, 2, 0)]
    assert progress == [(1, 3), (3, 3)]
    # the model's labels are the most probable class (compared through the stored float16 values: ties allowed)
    at_label = np.take_along_axis(out.probabilities, out.model_labels[:, None].astype(np.int64), axis=1)[:, 0]
    assert np.array_equal(at_label, out.probabilities.max(axis=1))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="amp"):
        threshold_predictor(amp="fp8")


def test_onnxruntime_engine_matches_torch(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")  # an optional engine: tested where it is installed (the test extra)
    from tiny_models import save_tiny_checkpoint, tiny_card, tiny_model

    monkeypatch.setenv("CTSEG_CACHE", str(tmp_path / "cache"))
    path = save_tiny_checkpoint(tmp_path)
    model = tiny_model()
    card = tiny_card(model)
    vol = patterned_volume(depth=3, shape=(64, 96))
    reference = Predictor.from_checkpoint(path, device="cpu", engine="torch").predict(vol)
    ort = Predictor.from_checkpoint(path, device="cpu", engine="onnxruntime")
    assert ort.strategy.engine.path.parent == tmp_path / "cache" / "onnx" and ort.strategy.engine.path.is_file()
    out = ort.predict(vol)
    diff = np.abs(out.probabilities.astype(np.float32) - reference.probabilities.astype(np.float32))
    assert diff.max() < 2e-3
    agree = (out.labels.array == reference.labels.array).mean()
    assert agree > 0.999
    with pytest.raises(ValueError, match="engine"):
        Predictor(model, card, device="cpu", engine="tensorrt")
