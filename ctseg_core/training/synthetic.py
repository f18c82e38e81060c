"""Pretraining on generated head CTs: how the bundled starting model is made.

Cases come from a disk cache of generated head CTs on the model's grid (``case_cache``; filled by
``ctseg pretrain-cache``, usually in a background process beside the run), so the model never waits for
the generator. Each step trains on square patches (``crops``): centred on lesions, on hard negatives
(normal anatomy that looks like blood) and anywhere in the head, at rates the configuration sets. The
model stays fully convolutional; its plan records the patch size and the predictor then runs it on
sliding windows of that size. Slab models (RSANet) train on crops of K consecutive slices and scan
models (RADnet) on runs of whole slices (``sequences``); ``kind_loss`` and ``make_sampler`` pick what
the model's kind needs, and the same trainer runs them all.

A run keeps, beside its checkpoint ``X``: ``X.state.safetensors`` (model, optimizer, scheduler, step and
RNG: ``resume_from`` it continues exactly), ``X.curve.jsonl`` (the learning curve: Dice on held-out
generated cases and false-positive mL on a real scan, against training CPU time) and ``X.step<N>``
snapshots at each evaluation. ``resume_from`` a plain checkpoint takes its weights and step count and
restarts the optimizer; the cyclic learning rate then climbs from its floor, which is the warm-up.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ctseg_core.checkpoint import ModelCard, checkpoint_paths, load_checkpoint, save_checkpoint
from ctseg_core.errors import CheckpointError
from ctseg_core.jobs import CancelToken
from torch import nn

from ctseg_core.labels import NUM_CLASSES
from ctseg_core.losses import RadnetLoss, class_weights_from_labels, create_loss
from ctseg_core.models import create_model, default_config
from ctseg_core.preprocess import Plan
from ctseg_core.training.case_cache import CacheEntry, check_plan, list_entries
from ctseg_core.training.crops import CropAugment, CropRates, CropSampler
from ctseg_core.training import events as ev
from ctseg_core.training.sequences import ScanSampler, SlabSampler
from ctseg_core.training.recipe import Recipe
from ctseg_core.training.run import seed_everything
from ctseg_core.training.state import (keep_configured_schedule, read_training_state, restore_training_state,
                                      save_training_state)
from ctseg_core.training.trainer import FineTuner, make_optimizer

VAL_SEED0 = 900_000  # validation and evaluation seeds start here; training seeds stay below
STATE_SUFFIX = ".state.safetensors"
CURVE_SUFFIX = ".curve.jsonl"


@dataclass
class PretrainConfig:
    out: Path  # checkpoint path X (X.safetensors + X.json); state, curve and snapshots beside it
    cache: Path  # case cache folder (ctseg pretrain-cache)
    steps: int = 1000  # optimizer steps to reach (a resumed run continues up to this)
    seed: int = 0
    architecture: str = "aa_unet"
    model_config: dict = field(default_factory=dict)  # create_model options: encoder, encoder_args, decoder_channels
    spacing_mm: float = 1.0
    patch: int = 160
    batch_size: int = 8
    lr: float = 1e-3
    base_lr: float = 1e-4
    cycle_steps: int = 1000  # half-cycle of the cyclic learning rate
    rates: CropRates = field(default_factory=CropRates)
    augment: CropAugment = field(default_factory=CropAugment)
    loss: str | None = None  # ctseg_core.losses name; None: focal_dice (radnet for scan models)
    class_weight_power: float = 0.5  # the loss's class weights: (1 / frequency) ** this (0: all equal)
    optimizer: str = "adamw"  # "adamw" (cyclic learning rate) or "sgd" (momentum 0.9, /10 at 1/3 and 2/3)
    slices: int | None = None  # slab models: K slices per sample (None: the model's slab_slices); scan: run length
    scan_size: int = 224  # scan models: whole slices padded or cropped to this (1 mm grid: the whole head)
    max_train_cpu_s: float | None = None  # stop when the training CPU time reaches this (a budget)
    snapshot_every: int = 100  # steps between saves of the checkpoint and the training state
    eval_every: int = 0  # steps between evaluations (0: only at the end when eval data is given)
    eval_data: Path | None = None  # folder of *_ct.nii.gz + *_labels.nii.gz (ctseg synth), held-out seeds
    eval_real: Path | None = None  # a real scan without hemorrhage: false-positive mL is tracked
    resume_from: Path | None = None  # a training state (exact continuation) or a checkpoint (weights + step)
    min_cases: int = 8  # wait for the cache to hold this many cases
    refresh_every: int = 500  # steps between re-reading the cache folder (the builder adds cases)
    device: str = "cpu"
    command: str = ""

    @property
    def kind(self) -> str:
        from ctseg_core.models import model_kind

        return model_kind(self.architecture)

    def plan(self) -> Plan:
        if self.kind == "scan":  # whole slices: the pooled features see the whole head
            return Plan(spacing_mm=self.spacing_mm, extra={"trained_at_spacing_mm": self.spacing_mm,
                                                           "trained_on_slices": self.scan_size})
        return Plan(spacing_mm=self.spacing_mm, patch_size=self.patch, adjacent_slices=1 if self.kind == "slab" else 3,
                    extra={"trained_at_spacing_mm": self.spacing_mm, "trained_on_patches": self.patch})

    def loss_name(self) -> str:
        return self.loss or ("radnet" if self.kind == "scan" else "focal_dice")

    def recipe(self) -> Recipe:
        gpu = self.device.startswith("cuda")
        return Recipe(strategy="full", steps=self.steps, batch_size=self.batch_size, lr=self.lr, base_lr=self.base_lr,
                      cycle_steps=self.cycle_steps, loss=self.loss_name(), checkpoint_every=self.snapshot_every,
                      mixed_precision=gpu, channels_last=gpu and self.kind == "slice", optimizer=self.optimizer)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def side_path(out: Path, suffix: str) -> Path:
    """``X`` -> ``X<suffix>`` beside the checkpoint."""
    weights, _ = checkpoint_paths(out)
    return weights.with_name(weights.name[: -len(".safetensors")] + suffix)


# ---------------------------------------------------------------- data

def training_case(seed: int):
    """The generated case of ``seed`` as the training distribution draws it: the generator's randomised
    acquisition (``sample_acquisition``: pixel spacing, slice thickness, kernel, noise, pose, artefacts);
    slices under 2.5 mm are rendered as a slab of 10-19 slices at a random height (a sample needs three)."""
    from ctseg_core.synth import generate_case, sample_acquisition

    rng = np.random.default_rng([seed, 7])
    acquisition = sample_acquisition(rng)
    if acquisition.slice_thickness_mm < 2.5:
        acquisition = acquisition.with_(max_slices=int(rng.integers(10, 20)))
    return generate_case(seed, acquisition=acquisition)


class CachedCrops:
    """The crop sampler over the cache, re-reading the folder every ``refresh_every`` steps."""

    def __init__(self, cfg: PretrainConfig, plan: Plan, wait: Callable[[str], None] = print):
        self.cfg, self.plan = cfg, plan
        check_plan(cfg.cache, plan)
        self._wait_for_cases(wait)
        self.sampler = self._sampler()

    def _wait_for_cases(self, wait: Callable[[str], None]) -> None:
        while len(list_entries(self.cfg.cache)) < self.cfg.min_cases:
            wait(f"waiting for {self.cfg.min_cases} cached cases in {self.cfg.cache}")
            time.sleep(20)

    def _sampler(self):
        entries = [CacheEntry.open(p) for p in list_entries(self.cfg.cache)]
        return make_sampler(self.cfg, self.plan, entries)

    @property
    def n_cases(self) -> int:
        return len(self.sampler.entries)

    def seeds(self) -> list[int]:
        return sorted(int(e.meta.get("seed", -1)) for e in self.sampler.entries)

    def batches(self, start_step: int) -> Iterator[list[dict]]:
        step = start_step
        while True:
            if step and step % self.cfg.refresh_every == 0:
                self.sampler = self._sampler()
            b = self.sampler.batch(self.cfg.seed, step, self.cfg.batch_size)
            yield [{"image": b["image"], "label": b["label"]}]
            step += 1

    def class_weights(self, n: int = 32) -> np.ndarray:
        """Focal-loss class weights from the labels of ``n`` sampled batches (fixed for the run)."""
        if self.cfg.kind == "scan":  # RADnet's loss has no class weights
            return np.ones(NUM_CLASSES, np.float32)
        labels = [self.sampler.batch(self.cfg.seed, k, self.cfg.batch_size, stream=1)["label"].numpy() for k in range(n)]
        return class_weights_from_labels([lab.astype(np.uint8) for lab in labels], power=self.cfg.class_weight_power)


def make_sampler(cfg: PretrainConfig, plan: Plan, entries: list[CacheEntry]):
    """The sampler the model's kind trains on: crops (slice), slabs of K slices (slab), runs of whole
    slices (scan)."""
    if cfg.kind == "slab":
        k = cfg.slices or int(cfg.model_config.get("slab_slices", default_config(cfg.architecture)["slab_slices"]))
        return SlabSampler(entries, cfg.patch, k, cfg.rates, cfg.augment, plan.pad_value)
    if cfg.kind == "scan":
        return ScanSampler(entries, cfg.slices or 12, cfg.scan_size, plan.adjacent_slices, plan.pad_value)
    return CropSampler(entries, cfg.patch, cfg.rates, cfg.augment, plan.adjacent_slices, plan.pad_value)


class SlabLoss(nn.Module):
    """A segmentation loss on slabs: logits (N, C, K, H, W) and labels (N, K, H, W) as N*K slices."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, c, k = logits.shape[:3]
        return self.loss(logits.transpose(1, 2).reshape(n * k, c, *logits.shape[3:]),
                         target.reshape(n * k, *target.shape[2:]))


def kind_loss(kind: str, name: str, class_weights, gamma: float = 2.0) -> nn.Module:
    """The training loss for a model of ``kind``: RADnet's for scan models, else ``create_loss(name)``
    (on each slice of a slab for slab models)."""
    if kind == "scan":
        if name != "radnet":
            raise ValueError(f"scan models (RADnet) train with their own loss 'radnet', not {name!r}")
        return RadnetLoss()
    loss = create_loss(name, class_weights, gamma)
    return SlabLoss(loss) if kind == "slab" else loss


# ---------------------------------------------------------------- the run

class PretrainTuner(FineTuner):
    """The fine-tuner with the pretraining run's extension points: snapshots and evaluations."""

    def __init__(self, *args, on_snapshot: Callable[[int], None], on_evaluate: Callable[[int], None],
                 snapshot_every: int, eval_every: int, budget_spent: Callable[[], bool] = lambda: False, **kw):
        super().__init__(*args, **kw)
        self.on_snapshot, self.on_evaluate = on_snapshot, on_evaluate
        self.snapshot_every, self.eval_every = snapshot_every, eval_every
        self.budget_spent = budget_spent
        self.stopped_at_budget = False

    def after_step(self) -> None:
        if self.step < self.total_steps and self.budget_spent():
            self.total_steps = self.step  # the run ends here, with its final evaluation and snapshot
            self.stopped_at_budget = True
            self.emit({"event": "budget", "step": self.step, "message": "training CPU budget reached"})
        self.report_step()
        if self.eval_every and self.step % self.eval_every == 0 and self.step < self.total_steps:
            self.on_evaluate(self.step)
        if self.snapshot_every and self.step % self.snapshot_every == 0:
            self.on_snapshot(self.step)


@dataclass
class RunClock:
    """Training CPU time of this process (all threads), without the evaluations, plus earlier sessions'."""

    before_s: float = 0.0  # carried over from a resumed run
    _start: float = field(default_factory=time.process_time)
    _excluded: float = 0.0

    def exclude(self, seconds: float) -> None:
        self._excluded += seconds

    @property
    def train_cpu_s(self) -> float:
        return self.before_s + time.process_time() - self._start - self._excluded


def train_synthetic(cfg: PretrainConfig, emit: Callable = print,
                    cancel: CancelToken | None = None) -> Path:
    """Pretrain on the cache up to ``cfg.steps``; save checkpoint, state, curve and snapshots at ``cfg.out``."""
    seed_everything(cfg.seed)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    plan, recipe = cfg.plan(), cfg.recipe()
    model = create_model(cfg.architecture, **cfg.model_config).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = CachedCrops(cfg, plan, wait=lambda m: emit({"event": "wait", "message": m}))
    # the cyclic schedule never depends on how far a run goes, so a run continued to more steps follows it
    optimizer, scheduler = make_optimizer(list(model.parameters()), recipe, max(cfg.steps, 2 * cfg.cycle_steps))
    start, history = _resume(cfg, model, optimizer, scheduler, emit)
    weights = _class_weights(cfg, history, data, emit)
    loss_fn = kind_loss(cfg.kind, recipe.loss, weights, recipe.focal_gamma).to(device)
    clock = RunClock(before_s=float(history.get("train_cpu_s", 0.0)))
    evaluator = Evaluator(cfg, device) if (cfg.eval_data or cfg.eval_real) else None

    def samples(step: int) -> int:
        """Samples seen up to ``step``: those of the run resumed from, then this run's batch (which may differ)."""
        return int(history.get("samples", start * cfg.batch_size)) + (step - start) * cfg.batch_size

    def run_info(step: int) -> dict:
        return {"config": cfg.to_json(), "class_weights": [float(w) for w in weights],
                "train_cpu_s": clock.train_cpu_s, "step": step, "samples": samples(step), "n_cases": data.n_cases,
                "seeds": _seed_range(data.seeds()), "sessions": history.get("sessions", 0) + 1}

    def card(step: int, metrics: dict | None = None) -> ModelCard:
        return _card(model, cfg, plan, recipe, run_info(step), metrics or {})

    def snapshot(step: int) -> None:
        save_checkpoint(model, card(step), cfg.out, fp16=True)
        save_training_state(side_path(cfg.out, STATE_SUFFIX), model=model, optimizer=optimizer, scheduler=scheduler,
                            step=step, run=run_info(step))
        emit({"event": "snapshot", "step": step, "path": str(cfg.out)})

    def evaluate(step: int) -> dict:
        t0 = time.process_time()
        row = evaluator.evaluate(model, plan, step, samples(step), clock.train_cpu_s)
        clock.exclude(time.process_time() - t0)
        with open(side_path(cfg.out, CURVE_SUFFIX), "a") as f:
            f.write(json.dumps(row) + "\n")
        save_checkpoint(model, card(step, {"evaluation": row}), side_path(cfg.out, f".step{step}"), fp16=True)
        emit({"event": "evaluate", **row})
        return row

    tuner = PretrainTuner(model, optimizer, scheduler, loss_fn, data.batches(start), recipe=recipe, device=device,
                          total_steps=cfg.steps, start_step=start, emit=emit, cancel=cancel,
                          report_interval_s=30.0, save_state=snapshot, on_snapshot=snapshot,
                          on_evaluate=evaluate if evaluator else (lambda s: None),
                          snapshot_every=cfg.snapshot_every, eval_every=cfg.eval_every,
                          budget_spent=lambda: cfg.max_train_cpu_s is not None
                          and clock.train_cpu_s >= cfg.max_train_cpu_s)
    if start >= cfg.steps:
        emit(ev.Trained(start, 0.0))
    elif tuner.run() == "cancelled":
        return checkpoint_paths(cfg.out)[0]
    metrics = {"evaluation": evaluate(tuner.step)} if evaluator else {}
    snapshot(tuner.step)
    return save_checkpoint(model, card(tuner.step, metrics), cfg.out, fp16=True)


def _class_weights(cfg: PretrainConfig, history: dict, data, emit) -> np.ndarray:
    """The loss's class weights: a resumed run keeps its own unless its power was another (then they are
    estimated again, and an event says so)."""
    # a run from before the option was weighted at the default power
    earlier = float(history.get("config", {}).get("class_weight_power", PretrainConfig.class_weight_power))
    if history.get("class_weights") and earlier == cfg.class_weight_power:
        return np.asarray(history["class_weights"], np.float32)
    weights = np.asarray(data.class_weights(), np.float32)
    if history.get("class_weights"):
        emit({"event": "class_weights", "power": [earlier, cfg.class_weight_power],
              "weights": [[round(float(w), 4) for w in history["class_weights"]], [round(float(w), 4) for w in weights]],
              "note": "estimated again for the changed power"})
    return weights


def _resume(cfg: PretrainConfig, model, optimizer, scheduler, emit) -> tuple[int, dict]:
    """(step to start from, the earlier run's record) after loading ``cfg.resume_from`` (if any)."""
    if cfg.resume_from is None:
        return 0, {}
    path = Path(cfg.resume_from)
    if path.name.endswith(STATE_SUFFIX):
        tensors, meta = read_training_state(path)
        configured = scheduler.state_dict()
        step = restore_training_state(tensors, meta, model=model, optimizer=optimizer, scheduler=scheduler)
        changed = keep_configured_schedule(scheduler, optimizer, configured)
        emit({"event": "resume", "from": str(path), "step": step, "exact": not changed,
              **({"schedule_changed": changed, "note": "the learning-rate schedule as now configured, from the "
                  "saved step; weights, optimizer moments and data order as saved"} if changed else {})})
        return step, meta.get("run", {})
    old, card = load_checkpoint(path, device="cpu")
    if card.architecture != cfg.architecture or (_config_key(card.config, cfg.architecture)
                                                 != _config_key(model.ctseg_model["config"], cfg.architecture)):
        raise CheckpointError(f"checkpoint is a {card.architecture} {card.config}, not the configured "
                              f"{cfg.architecture} {model.ctseg_model['config']}", path)
    model.load_state_dict(old.state_dict())
    run = dict(card.extra.get("run", {}))
    step = int(card.extra.get("steps", 0))
    emit({"event": "resume", "from": str(path), "step": step, "exact": False,
          "note": "weights and step count; optimizer restarted, the cyclic learning rate climbs from its floor"})
    return step, run


def _config_key(config: dict, architecture: str) -> str:
    """The configuration with the factory's defaults filled in (a card written before a configuration key
    existed matches a model with that key at its default)."""
    from ctseg_core.models.registry import _jsonable

    full = {**_jsonable(default_config(architecture)), **config}
    return json.dumps({k: v for k, v in full.items() if k != "encoder_weights"}, sort_keys=True)


def _seed_range(seeds: list[int]) -> list[int]:
    return [min(seeds), max(seeds)] if seeds else []


def _card(model, cfg: PretrainConfig, plan: Plan, recipe: Recipe, run: dict, metrics: dict) -> ModelCard:
    description = "synthetic head CT from ctseg_core.synth only (no real patient data)"
    step = run["step"]
    return ModelCard.for_model(
        model, plan=plan.to_dict(), version="1", parent_version=None, metrics=metrics, recipe=recipe.to_json(),
        training_data={"description": description, "source": "synthetic", "generator": "ctseg_core.synth",
                       "n_cases": run["n_cases"], "seeds": run["seeds"], "validation_seeds_from": VAL_SEED0,
                       "note": "A starting point to be fine-tuned on the site's own labelled scans. "
                               "Not for clinical use."},
        extra={"command": cfg.command, "steps": step, "samples": run["samples"],
               "train_cpu_hours": round(run["train_cpu_s"] / 3600, 3), "patch": cfg.patch,
               "crop_rates": asdict(cfg.rates), "hardware": _hardware(cfg.device), "run": run})


def _hardware(device: str) -> dict:
    return {"device": device, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


# ---------------------------------------------------------------- evaluation during the run

class Evaluator:
    """Scores the model during a run the way a user would see it: the ``Predictor`` on held-out generated
    scans (Dice per class, sample and voxel average) and on a real scan without hemorrhage (mL painted)."""

    def __init__(self, cfg: PretrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self._real = None

    def evaluate(self, model, plan: Plan, step: int, samples: int, train_cpu_s: float) -> dict:
        from ctseg_core.training.trainer import set_train_mode

        card = ModelCard.for_model(model, plan=plan.to_dict())
        row = {"step": step, "samples": samples, "train_cpu_h": round(train_cpu_s / 3600, 4),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            if self.cfg.eval_data:
                row.update(evaluate_generated(model, card, self.cfg.eval_data, self.device))
            if self.cfg.eval_real:
                row.update(evaluate_real(model, card, self._real_volume(), self.device))
        finally:
            set_train_mode(model, "full")
        return row

    def _real_volume(self):
        if self._real is None:
            from ctseg_core.io import load_volume

            self._real = load_volume(self.cfg.eval_real)
        return self._real


def evaluate_generated(model, card: ModelCard, folder: Path, device) -> dict:
    """Per-class Dice (sample and voxel average) of the predictor's labels on the cases of ``folder``,
    the model alone and with the anatomical guard (``*_guard``)."""
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.io.labelled_cases import find_cases
    from ctseg_core.metrics import overlap_counts, overlap_scores
    from ctseg_core.predictor import Predictor, applicable_options

    predictor = Predictor(model, card, device=device, **applicable_options(card, {"engine": "torch"}))
    if predictor.kind == "scan":
        return evaluate_triage(predictor, folder)
    alone, guarded = [], []
    for _, ct, lab in find_cases(Path(folder)):
        volume = read_volume(ct)
        truth = read_labels(lab, like=volume)
        pred = predictor.predict(volume)
        alone.append(overlap_counts(pred.model_labels, truth))
        guarded.append(overlap_counts(pred.labels, truth))
    row = {"n_eval_cases": len(alone)}
    for suffix, counts in (("", alone), ("_guard", guarded)):
        scores = overlap_scores(counts).as_dict()
        sample, voxel = _by_key(scores["dice_sample"]), _by_key(scores["dice_voxel"])
        present = _by_key(scores["dice_present"])
        row.update({f"dice_sample{suffix}": sample, f"dice_voxel{suffix}": voxel,
                    f"mean_dice_sample{suffix}": _mean(sample), f"dice_present{suffix}": present,
                    f"mean_dice_present{suffix}": _mean(present)})
    return row


def evaluate_triage(predictor, folder: Path) -> dict:
    """A triage model (RADnet) on the cases of ``folder``: slice accuracy (a slice is positive where the
    truth has any hemorrhage on it) and how many scans it calls right (3+ consecutive positive slices)."""
    from ctseg_core.io.images import read_labels, read_volume
    from ctseg_core.io.labelled_cases import find_cases
    from ctseg_core.metrics import scan_detection

    right_slices = slices = right_scans = scans = 0
    for _, ct, lab in find_cases(Path(folder)):
        volume = read_volume(ct)
        truth = read_labels(lab, like=volume).array
        triage = predictor.predict(volume).triage
        on_slice = truth.reshape(truth.shape[0], -1).any(axis=1)
        right_slices += int(((triage.slice_probabilities >= triage.threshold) == on_slice).sum())
        slices += len(on_slice)
        right_scans += int(triage.positive == any(scan_detection(truth).values()))
        scans += 1
    return {"n_eval_cases": scans, "slice_accuracy": round(right_slices / max(slices, 1), 4),
            "scan_accuracy": round(right_scans / max(scans, 1), 4)}


def evaluate_real(model, card: ModelCard, volume, device) -> dict:
    """mL painted per class on a real scan without hemorrhage (every voxel a false positive), the model
    alone and with the anatomical guard."""
    from ctseg_core.metrics import class_volumes_ml
    from ctseg_core.predictor import Predictor
    from ctseg_core.volume import LabelMap

    pred = Predictor(model, card, device=device, engine="torch").predict(volume)
    if pred.triage is not None:  # a triage model paints nothing: its false call is the scan's
        return {"real_triage_positive": pred.triage.positive, "real_triage_probability": round(pred.triage.probability, 4)}
    row = {}
    for suffix, labels in (("", LabelMap(pred.model_labels, volume.geometry)), ("_guard", pred.labels)):
        ml = _by_key({c: v for c, v in class_volumes_ml(labels).items() if c})
        row.update({f"real_fp_ml{suffix}": ml, f"real_fp_total_ml{suffix}": round(float(sum(ml.values())), 2)})
    return row


def _by_key(per_class: dict) -> dict:
    """{class id: value} -> {class key: value rounded, None for NaN/absent}."""
    from ctseg_core.labels import CLASSES

    return {CLASSES[int(c)].key: (None if v is None or v != v else round(float(v), 4)) for c, v in per_class.items()}


def _mean(d: dict) -> float | None:
    vals = [v for v in d.values() if v is not None and v == v]
    return round(float(np.mean(vals)), 4) if vals else None
