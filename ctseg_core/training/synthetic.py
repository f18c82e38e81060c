"""Training on generated head CTs: how the bundled starting model is made.

Cases come from ``ctseg_core.synth`` on the fly: a pool of generated cases, one replaced by a new seed
every ``refresh_every`` steps, slices drawn with lesion over-sampling and augmented, input made by the
model plan exactly as at inference (``Plan.training_pair``). Validation uses generated cases from a
seed range never used for training. The result is a checkpoint whose card records the command,
seeds, time and hardware, and says plainly that it was trained on synthetic data only.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ctseg_core.checkpoint import ModelCard, save_checkpoint
from ctseg_core.jobs import CancelToken
from ctseg_core.losses import class_weights_from_labels, create_loss
from ctseg_core.models import create_model
from ctseg_core.preprocess import Plan
from ctseg_core.synth import generate_case
from ctseg_core.training.augment import Augmenter
from ctseg_core.training.dataset import LoadedCase, SliceDataset, sampling_weights
from ctseg_core.training.recipe import Recipe
from ctseg_core.training.run import mean_dice, seed_everything, validation_dice
from ctseg_core.training.trainer import FineTuner, make_optimizer

VAL_SEED0 = 900_000  # validation and evaluation seeds start here; training seeds stay below


@dataclass
class SyntheticConfig:
    out: Path
    steps: int = 1000
    seed: int = 0  # training seeds are seed*100_000 + 0, 1, 2, ...
    pool_size: int = 8
    refresh_every: int = 4  # steps between replacing one pooled case by a new one
    n_val: int = 6
    encoder: str = "resnest50d"
    model_config: dict = field(default_factory=dict)  # further create_model("aa_unet", ...) options
    spacing_mm: float = 1.0
    batch_size: int = 4
    lr: float = 1e-3
    loss: str = "focal_dice"
    snapshot_every: int = 100
    device: str = "cpu"
    command: str = ""
    shape_yx: tuple[int, int] = (512, 512)  # generated slice size (pixel spacing then 0.40-0.50 mm x 512 / size)


def _loaded(seed: int, shape_yx=(512, 512)) -> LoadedCase:
    case = generate_case(seed, shape_yx=shape_yx)
    return LoadedCase(f"synth-{seed}", case.volume, case.labels)


class SyntheticBatches:
    """Endless micro-batches from a rolling pool of generated cases (one group per optimizer step)."""

    def __init__(self, cfg: SyntheticConfig, plan: Plan, recipe: Recipe):
        self.cfg, self.plan, self.recipe = cfg, plan, recipe
        self.augmenter = Augmenter(recipe.augment)
        self.seeds_used: list[int] = []
        self.pool = [self._new_case() for _ in range(cfg.pool_size)]
        self._index_pool()
        self.rng = np.random.default_rng(cfg.seed)

    def _new_case(self) -> LoadedCase:
        seed = self.cfg.seed * 100_000 + len(self.seeds_used)
        self.seeds_used.append(seed)
        return _loaded(seed, self.cfg.shape_yx)

    def _index_pool(self) -> None:
        """The pool's slices and their sampling weights (redone only when the pool changes)."""
        self.dataset = SliceDataset(self.pool, self.plan)
        self.weights = sampling_weights(self.dataset.has_lesion, self.recipe.lesion_fraction)

    def __iter__(self) -> Iterator[list[dict]]:
        step = 0
        while True:
            if step and step % self.cfg.refresh_every == 0:
                self.pool[step // self.cfg.refresh_every % len(self.pool)] = self._new_case()
                self._index_pool()
            yield [self._batch()]
            step += 1

    def _batch(self) -> dict:
        picks = self.rng.choice(len(self.dataset), size=self.recipe.batch_size, p=self.weights)
        items = [self.dataset[int(i)] for i in picks]
        pairs = [self.augmenter(it["image"], it["label"], int(self.rng.integers(2**31))) for it in items]
        size = tuple(max(p[0].shape[-k] for p in pairs) for k in (2, 1))
        return {"image": torch.stack([_pad_to(p[0], size, self.plan.pad_value) for p in pairs]),
                "label": torch.stack([_pad_to(p[1], size, 0) for p in pairs])}


def _pad_to(t: torch.Tensor, size: tuple[int, int], value: float) -> torch.Tensor:
    """Pad the last two dimensions of ``t`` symmetrically to ``size`` (scans of other spacings batch together)."""
    dy, dx = size[0] - t.shape[-2], size[1] - t.shape[-1]
    return torch.nn.functional.pad(t, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2), value=value)


def train_synthetic(cfg: SyntheticConfig, emit: Callable[[dict], None] = print,
                    cancel: CancelToken | None = None) -> Path:
    """Train ``aa_unet`` on generated cases; save snapshots and the final checkpoint at ``cfg.out``."""
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    plan = Plan(spacing_mm=cfg.spacing_mm, extra={"trained_at_spacing_mm": cfg.spacing_mm})
    recipe = Recipe(strategy="full", steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, base_lr=cfg.lr / 10,
                    cycle_steps=max(1, cfg.steps // 4), loss=cfg.loss, lesion_fraction=0.6,
                    mixed_precision=device.type == "cuda", channels_last=device.type == "cuda")
    model = create_model("aa_unet", encoder=cfg.encoder, **cfg.model_config).to(device)
    batches = SyntheticBatches(cfg, plan, recipe)
    weights = class_weights_from_labels([c.labels for c in batches.pool])
    loss_fn = create_loss(recipe.loss, weights, recipe.focal_gamma).to(device)
    optimizer, scheduler = make_optimizer(list(model.parameters()), recipe, cfg.steps)
    t0 = time.perf_counter()

    def card(step: int, metrics: dict | None = None) -> ModelCard:
        return _card(model, cfg, plan, recipe, batches.seeds_used, step, time.perf_counter() - t0, metrics or {})

    def snapshot(step: int) -> None:
        save_checkpoint(model, card(step), cfg.out, fp16=True)
        emit({"event": "snapshot", "step": step, "path": str(cfg.out)})

    tuner = FineTuner(model, optimizer, scheduler, loss_fn, iter(batches), recipe=recipe, device=device,
                      total_steps=cfg.steps, emit=emit, cancel=cancel, report_interval_s=30.0)
    _with_snapshots(tuner, cfg.snapshot_every, snapshot)
    tuner.run()
    val = [_loaded(VAL_SEED0 + i, cfg.shape_yx) for i in range(cfg.n_val)]
    dice = validation_dice(model, SliceDataset(val, plan), device, recipe)
    metrics = {"validation_synthetic": {"seeds": [VAL_SEED0, VAL_SEED0 + cfg.n_val - 1], "dice": dice,
                                        "mean_dice": mean_dice(dice),
                                        "average": "voxels pooled over the validation cases, model grid"}}
    emit({"event": "validate", "dice": dice, "mean_dice": mean_dice(dice)})
    return save_checkpoint(model, card(tuner.step, metrics), cfg.out, fp16=True)


def _with_snapshots(tuner: FineTuner, every: int, snapshot: Callable[[int], None]) -> None:
    """Add a periodic checkpoint to the tuner's after-step hook (so a stopped run still leaves a model)."""
    after_step = tuner.after_step

    def hook() -> None:
        after_step()
        if every and tuner.step % every == 0:
            snapshot(tuner.step)

    tuner.after_step = hook


def _card(model, cfg: SyntheticConfig, plan: Plan, recipe: Recipe, seeds: list[int], step: int, seconds: float,
          metrics: dict) -> ModelCard:
    description = "synthetic head CT from ctseg_core.synth only (no real patient data)"
    return ModelCard.for_model(
        model, plan=plan.to_dict(), version="1", parent_version=None, metrics=metrics, recipe=recipe.to_json(),
        training_data={"description": description, "source": "synthetic", "generator": "ctseg_core.synth",
                       "n_cases": len(seeds), "seeds": [min(seeds), max(seeds)], "validation_seeds_from": VAL_SEED0,
                       "note": "A starting point to be fine-tuned on the site's own labelled scans. "
                               "Not for clinical use."},
        extra={"command": cfg.command, "steps": step, "train_seconds": round(seconds, 1),
               "hardware": {"device": cfg.device, "cpu": platform.processor() or platform.machine(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__},
               "batch_size": cfg.batch_size, "pool_size": cfg.pool_size, "refresh_every": cfg.refresh_every})
