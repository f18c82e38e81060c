"""Pretraining slab and scan models from the case cache: the slab and scan samplers, their losses, the same
trainer (RADnet's SGD recipe), a fixed training CPU budget; the Predictor then runs what was trained."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_core.training.events import as_json  # typed trainer events and pretraining's dicts alike
import torch

from ctseg_core.checkpoint import load_checkpoint
from ctseg_core.predictor import Predictor
from ctseg_core.preprocess import Plan
from ctseg_core.synth import generate_case
from ctseg_core.training.case_cache import CacheEntry, build_entries, list_entries
from ctseg_core.training.crops import CropAugment
from ctseg_core.training.sequences import ScanAugment, ScanSampler, SlabSampler, run_indices
from ctseg_core.training.synthetic import PretrainConfig, train_synthetic
from tiny_models import tiny_config

PLAN = Plan(spacing_mm=2.0, adjacent_slices=1)


def small_case(seed: int):
    return generate_case(seed, shape_yx=(128, 128), n_slices=10, lesion_classes=[1, 2])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    build_entries(folder, range(2), PLAN, small_case)
    return folder


@pytest.fixture(scope="module")
def entries(cache):
    return [CacheEntry.open(p) for p in list_entries(cache)]


def test_runs_of_slices_stay_inside_the_scan():
    assert run_indices(0, 10, 4).tolist() == [0, 1, 2, 3]
    assert run_indices(9, 10, 4).tolist() == [6, 7, 8, 9]
    assert run_indices(5, 10, 4).tolist() == [3, 4, 5, 6]
    assert run_indices(1, 3, 5).tolist() == [0, 1, 2, 2, 2]  # fewer slices than asked: the last repeats


def test_slab_sampler_crops_consecutive_slices_with_their_labels(entries):
    sampler = SlabSampler(entries, 64, 4, augment=None, pad_value=PLAN.pad_value)
    rng = np.random.default_rng(0)
    pick = next(p for p in (sampler.pick(rng) for _ in range(50)) if p.kind == "lesion")
    x, y = sampler.crop(pick, rng)
    assert x.shape == (4, 64, 64) and y.shape == (4, 64, 64)
    e = entries[pick.entry]
    zs = run_indices(pick.centre[0], e.x.shape[0], 4)
    cz, cy, cx = pick.centre
    k = int(np.flatnonzero(zs == cz)[0])
    assert y[k, 32, 32] == e.y[cz, cy, cx] and abs(float(x[k, 32, 32]) - float(e.x[cz, cy, cx])) < 1e-3
    augmented = SlabSampler(entries, 64, 4, augment=CropAugment(prob=1.0), pad_value=PLAN.pad_value)
    a, b = augmented.batch(1, 5, 3), augmented.batch(1, 5, 3)
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 4, 64, 64) and a["label"].shape == (3, 4, 64, 64)


def test_scan_sampler_gives_runs_of_whole_slices_with_slice_targets_and_masks(entries):
    sampler = ScanSampler(entries, slices=6, size=64, adjacent_slices=3, pad_value=PLAN.pad_value, augment=None)
    batch = sampler.batch(0, 0, 2)
    assert batch["image"].shape == (2, 6, 3, 64, 64)
    assert batch["label"]["slice"].shape == (2, 6) and batch["label"]["mask"].shape == (2, 6, 64, 64)
    mask, target = batch["label"]["mask"], batch["label"]["slice"]
    assert torch.equal(target, (mask.flatten(2).amax(2) > 0).float())  # a slice is positive where its mask is
    e = entries[0]
    whole = ScanSampler(entries, 6, e.x.shape[1], 3, PLAN.pad_value, augment=None)
    x, slice_target, m = whole.sample(0, 5, np.random.default_rng(0))
    zs = run_indices(5, e.x.shape[0], 6)
    assert e.x.shape[1] == e.x.shape[2] and x.shape == (6, 3) + e.x.shape[1:]
    assert torch.equal(m, torch.from_numpy(e.y[zs] > 0).float())  # whole slices, no augmentation
    assert torch.allclose(x[:, 1], torch.from_numpy(e.x[zs].astype(np.float32)))  # channel 1: the slice itself
    rotated = ScanSampler(entries, 6, e.x.shape[1], 3, PLAN.pad_value, augment=ScanAugment(prob=1.0, flip_prob=0.0))
    xr, _, mr = rotated.sample(0, 5, np.random.default_rng(1))
    assert not torch.equal(mr, m) and mr.sum() > 0  # rotated together


def _cfg(tmp_path, cache, arch, **kw):
    base = dict(out=tmp_path / arch, cache=cache, steps=2, architecture=arch, model_config=tiny_config(arch),
                spacing_mm=2.0, patch=64, batch_size=1, snapshot_every=100, min_cases=1, slices=4, scan_size=64)
    base.update(kw)
    return PretrainConfig(**base)


def test_rsanet_and_radnet_train_with_the_same_trainer_and_then_predict(tmp_path, cache):
    from ctseg_core.synth import write_case

    case = small_case(7)
    volume = case.volume
    write_case(case, tmp_path / "eval")
    for arch, loss, optimizer in (("rsanet", "exp_ce", "adamw"), ("radnet", None, "sgd")):
        events = []
        cfg = _cfg(tmp_path, cache, arch, loss=loss, optimizer=optimizer,
                   eval_data=tmp_path / "eval" if arch == "radnet" else None)
        path = train_synthetic(cfg, emit=lambda e: events.append(as_json(e)))
        model, card = load_checkpoint(path, expected_architecture=arch)
        assert card.extra["steps"] == 2 and any(e["event"] == "trained" for e in events)
        assert card.recipe["optimizer"] == optimizer and card.recipe["loss"] == (loss or "radnet")
        pred = Predictor(model, card, device="cpu", guard=None).predict(volume)
        if arch == "rsanet":
            assert card.plan["adjacent_slices"] == 1 and card.plan["patch_size"] == 64
            assert pred.probabilities.shape[:2] == (volume.shape[0], 8) and pred.slice_probabilities is None
        else:
            assert card.plan["patch_size"] is None  # whole slices
            row = card.metrics["evaluation"]  # a triage model's evaluation: its calls, not Dice
            assert row["n_eval_cases"] == 1 and 0 <= row["slice_accuracy"] <= 1 and row["scan_accuracy"] in (0, 1)
            assert pred.slice_probabilities.shape == (volume.shape[0],) and pred.probabilities is None
            assert not pred.labels.array.any()


def test_a_scan_model_refuses_a_segmentation_loss(tmp_path, cache):
    with pytest.raises(ValueError, match="their own loss"):
        train_synthetic(_cfg(tmp_path, cache, "radnet", loss="focal_dice"), emit=lambda e: None)


def test_a_training_cpu_budget_ends_the_run_with_its_checkpoint(tmp_path, cache):
    events = []
    cfg = _cfg(tmp_path, cache, "rsanet", steps=50, max_train_cpu_s=1e-6)
    _, card = load_checkpoint(train_synthetic(cfg, emit=lambda e: events.append(as_json(e))))
    assert card.extra["steps"] == 1
    assert [e["step"] for e in events if e["event"] == "budget"] == [1]
