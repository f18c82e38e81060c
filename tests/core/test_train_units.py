"""Training pieces on small inputs: lesion over-sampling, the sharded step sampler, samples made by the plan,
seeded augmentation, the recipe, strategies, the promotion rule, the training-state file and the loop's
extension points and pause."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctseg_core.errors import CheckpointError
from ctseg_core.losses import create_loss
from ctseg_core.models import create_model
from ctseg_core.preprocess import Plan
from ctseg_core.training.augment import Augmenter
from ctseg_core.training.dataset import LoadedCase, SliceDataset, StepBatchSampler, sampling_weights
from ctseg_core.training.recipe import Augmentation, Recipe, default_strategy
from ctseg_core.training.promotion import decide
from ctseg_core.training.state import read_training_state, restore_training_state, save_training_state
from ctseg_core.training.trainer import FineTuner, apply_strategy, make_optimizer


def blob_case(case_id: str, z: int = 6, size: int = 64, lesion_slices=(2, 3)) -> LoadedCase:
    """A water cylinder with a hyperdense square (class 1) on ``lesion_slices``."""
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * 0.45) ** 2
    vol = np.where(head, 30.0, -1000.0).astype(np.float32)[None].repeat(z, 0)
    lab = np.zeros(vol.shape, np.uint8)
    for k in lesion_slices:
        vol[k, 20:34, 24:40] = 70.0
        lab[k, 20:34, 24:40] = 1
    return LoadedCase(case_id, vol, lab, (1.0, 1.0))


# ---------------------------------------------------------------- split, weights, sampler

def test_lesion_slices_get_the_requested_share():
    has = np.array([True] * 5 + [False] * 95)
    w = sampling_weights(has, 0.5)
    assert np.isclose(w.sum(), 1.0) and np.isclose(w[has].sum(), 0.5)
    assert np.allclose(sampling_weights(np.zeros(4, bool), 0.5), 0.25)  # no lesions: uniform
    sampler = StepBatchSampler(w, batch_size=50, accumulate=1, total_steps=40, seed=0)
    drawn = np.concatenate([[i for i, _ in mb] for mb in sampler])
    assert abs(has[drawn].mean() - 0.5) < 0.05  # 5 % of slices, half of the draws


def test_step_sampler_is_sharded_and_resumable():
    w = np.full(30, 1 / 30)
    full = StepBatchSampler(w, 4, 2, total_steps=6, seed=7, world_size=1)
    ranks = [StepBatchSampler(w, 2, 2, total_steps=6, seed=7, rank=r, world_size=2) for r in range(2)]
    for step in range(6):
        shards = [s.draw(step) for s in ranks]
        assert all(len(mbs) == 2 and all(len(mb) == 2 for mb in mbs) for mbs in shards)
        pairs = [p for mbs in shards for mb in mbs for p in mb]
        assert len({seed for _, seed in pairs}) == len(pairs)  # each sample has its own augmentation seed
    assert list(StepBatchSampler(w, 4, 2, 6, 7, start_step=4)) == list(full)[4 * 2:]  # resume = the tail
    assert list(full) == list(StepBatchSampler(w, 4, 2, 6, 7))  # deterministic
    assert list(full) != list(StepBatchSampler(w, 4, 2, 6, 8))
    assert len(full) == 12


# ---------------------------------------------------------------- samples and augmentation

def test_samples_are_the_plans_training_pairs():
    case = blob_case("a")
    plan = Plan(spacing_mm=None)
    ds = SliceDataset([case], plan)
    assert len(ds) == 6 and ds.has_lesion.tolist() == [False, False, True, True, False, False]
    item = ds[(2, 123)]
    x, y = plan.training_pair(case.volume, case.labels, 2, case.spacing_yx)
    assert torch.equal(item["image"], x) and torch.equal(item["label"], y)
    assert item["image"].shape == (3, 64, 64) and item["label"].dtype == torch.int64
    # the plan resamples to its spacing: 1 mm slices become 2x larger at 0.5 mm
    big = SliceDataset([case], Plan(spacing_mm=0.5))[(2, 0)]
    assert big["image"].shape == (3, 128, 128) and int((big["label"] == 1).sum()) == 4 * 14 * 16


def test_augmentation_is_seeded_and_keeps_image_and_label_together():
    case = blob_case("a", size=96)
    plan = Plan(spacing_mm=None)
    aug = Augmenter(Augmentation(prob=1.0, flip_prob=0.5, contrast=0.0, brightness=0.0))
    x, y = plan.training_pair(case.volume, case.labels, 2, case.spacing_yx)
    outs = [aug(x, y, s) for s in range(6)]
    again = aug(x, y, 3)
    assert torch.equal(outs[3][0], again[0]) and torch.equal(outs[3][1], again[1])
    assert not torch.equal(outs[0][0], outs[1][0])
    lesion_value = float(plan.map_intensity(np.float32(70.0)))
    for img, lab in outs:
        assert set(torch.unique(lab).tolist()) <= {0, 1} and int((lab == 1).sum()) > 100
        # the label still covers the hyperdense square: inside the label the centre channel is blood
        inside = img[1][lab == 1]
        assert float((inside - lesion_value).abs().median()) < 0.02


def test_intensity_augmentation_changes_only_the_image():
    case = blob_case("a")
    plan = Plan(spacing_mm=None)
    x, y = plan.training_pair(case.volume, case.labels, 2, case.spacing_yx)
    aug = Augmenter(Augmentation(prob=1.0, rotate_deg=0, zoom=0, translate_frac=0, flip_prob=0))
    img, lab = aug(x, y, 1)
    assert torch.equal(lab, y) and not torch.allclose(img, x)


# ---------------------------------------------------------------- recipe, strategies, promotion

def test_recipe_round_trip_and_steps():
    r = Recipe(strategy="decoder", epochs=2, batch_size=4, accumulate=2, augment=Augmentation(rotate_deg=5))
    assert Recipe.from_json(r.to_json()) == r
    assert r.total_steps(num_train_slices=100) == 25  # 2 epochs * 100 / (4 * 2)
    assert r.total_steps(100, world_size=2) == 13
    with pytest.raises(ValueError, match="strategy"):
        Recipe(strategy="head")


def test_default_strategy_follows_the_device():
    assert default_strategy(torch.device("cpu"))[0] == "decoder"
    strategy, reason = default_strategy("cuda:0")
    assert strategy == "full" and "bf16" in reason


def test_decoder_strategy_freezes_exactly_the_encoder():
    model = create_model("aa_unet", encoder="resnet18d", decoder_channels=(8,) * 6)
    trainable = apply_strategy(model, "decoder")
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert trainable and not encoder_ids & {id(p) for p in trainable}
    assert len(trainable) == sum(1 for p in model.parameters()) - len(encoder_ids)
    assert len(apply_strategy(model, "full")) == sum(1 for _ in model.parameters())


def test_promotion_rule():
    assert decide({"ich": 0.5, "sdh": 0.3}, {"ich": 0.56, "sdh": 0.26}, "v2", "v1").promoted  # mean up, SDH -0.04
    held = decide({"ich": 0.5, "sdh": 0.3}, {"ich": 0.6, "sdh": 0.2}, "v2", "v1")  # mean equal, SDH -0.1
    assert not held.promoted and "SDH fell from 0.300 to 0.200" in held.reason and "0.05" in held.reason
    assert held.per_class["sdh"] == {"before": 0.3, "after": 0.2, "change": -0.1, "ok": False}
    worse = decide({"ich": 0.5}, {"ich": 0.49}, "v2", "v1")
    assert not worse.promoted and "lower than v1's 0.500" in worse.reason and "ctseg models use v2" in worse.reason
    assert not decide({}, {}, "v2", "v1").promoted


# ---------------------------------------------------------------- training state and the loop

def _setup(seed=0):
    torch.manual_seed(seed)
    model = create_model("aa_unet", encoder="resnet18d", decoder_channels=(8,) * 6)
    recipe = Recipe(strategy="decoder", steps=4, batch_size=2, cycle_steps=3, checkpoint_every=0)
    optimizer, scheduler = make_optimizer(apply_strategy(model, "decoder"), recipe, recipe.steps)
    ds = SliceDataset([blob_case("a"), blob_case("b")], Plan(spacing_mm=None), Augmenter(recipe.augment))
    sampler = StepBatchSampler(sampling_weights(ds.has_lesion, 0.5), 2, 1, 4, seed=1)
    loss = create_loss("focal", np.ones(8, np.float32))
    return model, recipe, optimizer, scheduler, ds, sampler, loss


def _steps(sampler, ds, start):
    sampler.start_step = start
    for mbs in sampler:
        items = [ds[p] for p in mbs]
        yield [{"image": torch.stack([i["image"] for i in items]), "label": torch.stack([i["label"] for i in items])}]


def test_state_file_restores_a_run_exactly(tmp_path):
    model, recipe, opt, sched, ds, sampler, loss = _setup()
    events = []
    saved = {}

    def save_at_2(step):
        save_training_state(tmp_path / "state.safetensors", model=model, optimizer=opt, scheduler=sched, step=step,
                            run={"note": "x"})
        saved["step"] = step

    class SaveAtStep2:  # an extension point: a callback, not a hook replaced at run time
        def on_step_end(self, tuner):
            if tuner.step == 2:
                tuner.save_state()

    tuner = FineTuner(model, opt, sched, loss, _steps(sampler, ds, 0), recipe=recipe, device=torch.device("cpu"),
                      total_steps=4, emit=events.append, report_interval_s=0, save_state=save_at_2,
                      callbacks=[SaveAtStep2()])
    assert tuner.run() == "done"
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    assert [e.step for e in events if e.name == "step"] == [1, 2, 3, 4]
    assert saved["step"] == 2

    head = (tmp_path / "state.safetensors").read_bytes()[:8]
    assert not head.startswith(b"\x80")  # not a pickle: a safetensors header length
    model2, _, opt2, sched2, ds2, sampler2, loss2 = _setup(seed=99)  # other initial weights
    tensors, meta = read_training_state(tmp_path / "state.safetensors")
    assert meta["run"] == {"note": "x"}
    start = restore_training_state(tensors, meta, model=model2, optimizer=opt2, scheduler=sched2)
    assert start == 2 and sched2.last_epoch == 2
    FineTuner(model2, opt2, sched2, loss2, _steps(sampler2, ds2, start), recipe=recipe, device=torch.device("cpu"),
              total_steps=4, start_step=start).run()
    for k, v in model2.state_dict().items():
        assert torch.equal(v, reference[k]), k


def test_unreadable_state_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no training state"):
        read_training_state(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable ctseg training state"):
        read_training_state(tmp_path / "bad.safetensors")


class CancelAt:
    def __init__(self, step):
        self.step = step

    def on_step_end(self, tuner):
        if tuner.step == self.step:
            tuner.cancel.cancel()


def test_cancel_stops_after_the_current_step_and_saves():
    model, recipe, opt, sched, ds, sampler, loss = _setup()
    events, saves = [], []
    tuner = FineTuner(model, opt, sched, loss, _steps(sampler, ds, 0), recipe=recipe, device=torch.device("cpu"),
                      total_steps=4, emit=events.append, save_state=saves.append, report_interval_s=0,
                      callbacks=[CancelAt(2)])
    assert tuner.run() == "cancelled"
    assert saves == [2] and events[-1].to_json() == {"event": "cancelled", "protocol": 2, "step": 2, "total_steps": 4}
    assert sched.last_epoch == 2  # stopped before the third step


def test_a_cancel_after_the_last_step_lets_the_run_finish():
    model, recipe, opt, sched, ds, sampler, loss = _setup()
    tuner = FineTuner(model, opt, sched, loss, _steps(sampler, ds, 0), recipe=recipe, device=torch.device("cpu"),
                      total_steps=4, save_state=lambda step: pytest.fail("no state is saved"), report_interval_s=0,
                      callbacks=[CancelAt(4)])
    assert tuner.run() == "done" and tuner.step == 4


def test_a_paused_run_stops_between_steps_and_continues_where_it_was():
    import threading

    from ctseg_core.jobs import PauseToken

    model, recipe, opt, sched, ds, sampler, loss = _setup()
    events, pause = [], PauseToken()

    class PauseAt2:
        def on_step_end(self, tuner):
            if tuner.step == 2:
                pause.pause()
                threading.Timer(0.3, pause.resume).start()

    tuner = FineTuner(model, opt, sched, loss, _steps(sampler, ds, 0), recipe=recipe, device=torch.device("cpu"),
                      total_steps=4, emit=events.append, report_interval_s=0, callbacks=[PauseAt2()], pause=pause)
    assert tuner.run() == "done"
    names = [(e.name, getattr(e, "step", None)) for e in events]
    i = names.index(("paused", 2))
    assert names[i - 1] == ("step", 2) and names[i + 1][0] == "resumed" and names[i + 2] == ("step", 3)
    assert events[i + 1].paused_s >= 0.25
