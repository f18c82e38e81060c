"""Pretraining on generated cases: the case cache, the crop sampler's rates, sliding-window inference,
exact resume, and an honest checkpoint."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from ctseg_core.checkpoint import load_checkpoint
from ctseg_core.models import create_model
from ctseg_core.preprocess import Plan
from ctseg_core.sliding_window import sliding_window, window_starts
from ctseg_core.synth import generate_case
from ctseg_core.synth import tissues as T
from ctseg_core.training.case_cache import CacheEntry, build_entries, list_entries
from ctseg_core.training.crops import CropAugment, CropRates, CropSampler
from ctseg_core.training.synthetic import (CURVE_SUFFIX, STATE_SUFFIX, VAL_SEED0, PretrainConfig, side_path,
                                           train_synthetic)

PLAN = Plan(spacing_mm=2.0)
TINY = {"encoder": "resnest14d", "encoder_args": {"channels": [8, 16, 16, 32], "stem_width": 8},
        "decoder_channels": [8, 8, 8, 16, 16, 16]}


def small_case(seed: int):
    return generate_case(seed, shape_yx=(128, 128), lesion_classes=[1, 2] if seed % 2 == 0 else [5, 7])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    assert build_entries(folder, range(3), PLAN, small_case) == 3
    return folder


@pytest.fixture(scope="module")
def entries(cache):
    return [CacheEntry.open(p) for p in list_entries(cache)]


def test_cache_entries_hold_the_plan_input_and_labels_on_the_model_grid(cache, entries):
    case = small_case(0)
    grid = PLAN.grid(case.volume.shape[1:], case.volume.spacing[1:])
    e = entries[0]
    assert e.x.shape == (case.volume.shape[0],) + grid.padded_shape and e.x.dtype == np.float16
    z = case.volume.shape[0] // 2
    expected = grid.to_model(torch.from_numpy(PLAN.input_stack(case.volume.array, z))[None])[0, 1].numpy()
    assert np.abs(e.x[z].astype(np.float32) - expected).max() < 2e-3  # what the predictor feeds the model
    assert set(e.meta["classes"]) == {1, 2} and e.meta["seed"] == 0
    assert build_entries(cache, range(3), PLAN, small_case) == 0  # cached cases are not made again
    with pytest.raises(ValueError, match="another plan"):
        build_entries(cache, range(3, 4), Plan(spacing_mm=1.0), small_case)


def test_lesion_and_negative_centres_are_what_they_say(entries):
    for e in entries:
        for key, centres in e.centres.items():
            if key.startswith("class_") and len(centres):
                assert np.all(e.y[tuple(centres.T)] == int(key.split("_")[1]))
            if key.startswith("neg_") and len(centres):
                assert np.all(e.y[tuple(centres.T)] == 0), key
    held = {k for e in entries for k, c in e.centres.items() if len(c)}
    assert {"neg_inner_table_rim", "neg_ventricles_csf", "neg_falx_tentorium_sinus", "neg_scalp_soft_tissue"} <= held
    assert entries[0].meta["negative_categories"][0] == "inner_table_rim"


def test_the_negative_map_holds_the_generators_categories_and_no_lesion():
    from ctseg_core.synth import hard_negative_categories
    from ctseg_core.training.case_cache import negative_map

    case = small_case(1)
    neg, names = negative_map(case)
    masks = hard_negative_categories(case)
    assert names == list(masks) and not case.labels.array[neg > 0].any()
    rim = neg == 1 + names.index("inner_table_rim")
    assert rim.any() and np.isin(case.tissue[rim], T.INTRACRANIAL + (T.MIXED,)).mean() > 0.9
    for i, name in enumerate(names):  # every voxel is in the category it is marked with
        assert masks[name][neg == i + 1].all(), name


def test_crop_sampler_draws_lesion_and_hard_negative_crops_at_the_rates_asked(entries):
    sampler = CropSampler(entries, 64, CropRates(lesion=0.5, hard_negative=0.3), None, 3, PLAN.pad_value)
    rng = np.random.default_rng(0)
    picks = [sampler.pick(rng) for _ in range(3000)]
    share = Counter(p.kind for p in picks)
    assert abs(share["lesion"] / 3000 - 0.5) < 0.03
    assert abs(share["hard_negative"] / 3000 - 0.3) < 0.03
    classes = Counter(p.detail for p in picks if p.kind == "lesion")
    assert set(classes) == {"class_1", "class_2", "class_5", "class_7"}
    assert max(classes.values()) / min(classes.values()) < 1.3  # classes drawn uniformly, not by volume
    categories = Counter(p.detail for p in picks if p.kind == "hard_negative")
    assert len(categories) >= 5 and max(categories.values()) / min(categories.values()) < 1.5
    lesion_crops = [sampler.crop(p, rng)[1] for p in picks[:400] if p.kind == "lesion"]
    assert np.mean([bool((y > 0).any()) for y in lesion_crops]) > 0.95


def test_crops_are_reproducible_by_step_and_augmentation_keeps_image_and_labels_together(entries):
    sampler = CropSampler(entries, 64, augment=CropAugment(prob=1.0, noise_max=0.0, contrast=0.0, brightness=0.0),
                          pad_value=PLAN.pad_value)
    a, b = sampler.batch(3, 17, 6), sampler.batch(3, 17, 6)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], sampler.batch(3, 18, 6)["image"])
    assert a["image"].shape == (6, 3, 64, 64) and a["label"].shape == (6, 64, 64)
    # labelled voxels keep blood-like input after rotation/zoom/flip (labels moved with the image)
    x, y = a["image"][:, 1], a["label"]
    blood = (y > 0) & (y != 5) & (y != 6)
    if blood.any():
        assert x[blood].mean() > x[(y == 0) & (x > 0.3) & (x < 0.6)].mean()


def test_sliding_window_matches_whole_input_for_a_pointwise_model_and_covers_everything():
    conv = torch.nn.Conv2d(3, 5, 1)
    x = torch.rand(2, 3, 200, 130)
    with torch.no_grad():
        assert torch.allclose(sliding_window(conv, x, 64), conv(x), atol=1e-5)
    for length, window in ((200, 64), (64, 64), (65, 64), (300, 160)):
        starts = window_starts(length, window)
        assert starts[0] == 0 and starts[-1] + window >= length
        assert all(b - a <= window for a, b in zip(starts, starts[1:]))


def test_a_patch_plan_makes_the_predictor_run_windows_of_the_patch_size():
    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.predictor import Predictor

    model = create_model("aa_unet", **TINY)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    case = generate_case(4, shape_yx=(128, 128), n_slices=3)
    plan = Plan(spacing_mm=1.0, patch_size=64)
    Predictor(model, ModelCard.for_model(model, plan=plan.to_dict()), device="cpu").predict(case.volume)
    assert seen and set(seen) == {(64, 64)}


def _config(tmp_path, cache, **kw) -> PretrainConfig:
    base = dict(out=tmp_path / "m", cache=cache, steps=4, model_config=TINY, spacing_mm=2.0, patch=64,
                batch_size=2, snapshot_every=2, min_cases=1, command="ctseg pretrain --test")
    base.update(kw)
    return PretrainConfig(**base)


def test_resume_from_the_training_state_equals_an_uninterrupted_run(tmp_path, cache):
    whole = load_checkpoint(train_synthetic(_config(tmp_path / "a", cache), emit=lambda e: None))[0]
    cfg = _config(tmp_path / "b", cache, steps=2)
    train_synthetic(cfg, emit=lambda e: None)
    events = []
    resumed_cfg = _config(tmp_path / "b", cache, resume_from=side_path(cfg.out, STATE_SUFFIX))
    resumed, card = load_checkpoint(train_synthetic(resumed_cfg, emit=events.append))
    assert any(e["event"] == "resume" and e["step"] == 2 and e["exact"] for e in events)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert card.extra["steps"] == 4 and card.extra["run"]["sessions"] == 2


def test_resume_with_another_learning_rate_runs_at_it_from_the_saved_step(tmp_path, cache):
    from ctseg_core.training.state import read_training_state

    cfg = _config(tmp_path, cache, steps=2, lr=3e-4, base_lr=3e-5, cycle_steps=10)
    train_synthetic(cfg, emit=lambda e: None)
    state = side_path(cfg.out, STATE_SUFFIX)
    events = []
    train_synthetic(_config(tmp_path, cache, steps=4, lr=1e-4, base_lr=1e-5, cycle_steps=10, resume_from=state),
                    emit=events.append)
    resume = next(e for e in events if e["event"] == "resume")
    assert resume["step"] == 2 and not resume["exact"]
    assert resume["schedule_changed"]["max_lrs"] == [[3e-4], [1e-4]]
    _, meta = read_training_state(state)
    assert meta["step"] == 4 and meta["scheduler"]["max_lrs"] == [1e-4] and meta["scheduler"]["base_lrs"] == [1e-5]
    assert meta["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5 + 4 / 10 * (1e-4 - 1e-5))


def test_a_resumed_run_with_another_batch_size_counts_the_samples_it_saw(tmp_path, cache):
    from ctseg_core.training.state import read_training_state

    cfg = _config(tmp_path, cache, steps=2, batch_size=2)
    train_synthetic(cfg, emit=lambda e: None)
    state = side_path(cfg.out, STATE_SUFFIX)
    _, card = load_checkpoint(train_synthetic(_config(tmp_path, cache, steps=4, batch_size=3, resume_from=state),
                                              emit=lambda e: None))
    assert card.extra["steps"] == 4 and card.extra["samples"] == 2 * 2 + 2 * 3
    assert read_training_state(state)[1]["run"]["samples"] == 10


def test_a_resumed_run_with_another_class_weight_power_estimates_its_weights_again(tmp_path, cache):
    from ctseg_core.training.state import read_training_state

    cfg = _config(tmp_path, cache, steps=2)
    train_synthetic(cfg, emit=lambda e: None)
    state = side_path(cfg.out, STATE_SUFFIX)
    first = read_training_state(state)[1]["run"]["class_weights"]
    same = []
    train_synthetic(_config(tmp_path, cache, steps=3, resume_from=state), emit=same.append)
    assert read_training_state(state)[1]["run"]["class_weights"] == first
    assert not any(e.get("event") == "class_weights" for e in same if isinstance(e, dict))
    events = []
    train_synthetic(_config(tmp_path, cache, steps=4, class_weight_power=0.0, resume_from=state), emit=events.append)
    changed = next(e for e in events if isinstance(e, dict) and e.get("event") == "class_weights")
    assert changed["power"] == [0.5, 0.0] and changed["weights"][0] == [round(w, 4) for w in first]
    run = read_training_state(state)[1]["run"]
    present = [w for w, f in zip(run["class_weights"], first) if f < max(first)]  # absent classes weigh the cap
    assert len(present) >= 2 and present == pytest.approx([present[0]] * len(present))  # power 0: all alike
    present_first = [f for f in first if f < max(first)]
    assert max(present_first) / min(present_first) > 2  # the default power does weight the classes
    assert run["config"]["class_weight_power"] == 0.0


def test_resume_from_a_checkpoint_continues_its_step_count_and_refuses_another_model(tmp_path, cache):
    first = train_synthetic(_config(tmp_path / "a", cache, steps=2), emit=lambda e: None)
    _, card = load_checkpoint(train_synthetic(_config(tmp_path / "b", cache, resume_from=first), emit=lambda e: None))
    assert card.extra["steps"] == 4 and card.extra["samples"] == 8
    other = dict(TINY, decoder_channels=[8] * 6)
    with pytest.raises(Exception, match="not the configured"):
        train_synthetic(_config(tmp_path / "c", cache, model_config=other, resume_from=first), emit=lambda e: None)


def test_pretraining_writes_an_honest_checkpoint_and_a_learning_curve(tmp_path, cache):
    from ctseg_core.synth import write_case

    eval_dir = tmp_path / "eval"
    write_case(generate_case(VAL_SEED0 + 1, shape_yx=(128, 128), lesion_classes=[2]), eval_dir)
    cfg = _config(tmp_path, cache, eval_data=eval_dir, eval_every=2)
    model, card = load_checkpoint(train_synthetic(cfg, emit=lambda e: None), expected_architecture="aa_unet")
    td = card.training_data
    assert td["source"] == "synthetic" and "no real patient data" in td["description"]
    assert td["seeds"] == [0, 2] and td["n_cases"] == 3 and td["seeds"][1] < VAL_SEED0
    assert card.plan_obj.patch_size == 64 and card.config["encoder_args"] == TINY["encoder_args"]
    assert card.extra["command"] == "ctseg pretrain --test" and card.extra["steps"] == 4
    rows = [json.loads(line) for line in side_path(cfg.out, CURVE_SUFFIX).read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and rows[0]["train_cpu_h"] <= rows[1]["train_cpu_h"]
    assert set(rows[-1]["dice_sample"]) == {"ich", "sdh", "sah", "edh", "csdh", "pneumocephalus", "ivh"}
    assert side_path(cfg.out, ".step2.safetensors").is_file()
    weights = [v for v in model.state_dict().values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)
