"""One fine-tuning run of a workspace's model, wired end to end.

Parent version -> cases (corrected/approved) -> split by case -> Dice of the parent on the validation
cases -> ``FineTuner`` -> Dice of the new model on the same cases -> a new version in the model store,
made active only when it is not worse. Progress goes to ``emit`` as plain dicts (the JSON-lines
protocol); the training state is saved for ``resume`` every ``recipe.checkpoint_every`` steps and on
cancel.
"""

from __future__ import annotations

import dataclasses
import platform
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ctseg_core.checkpoint import ModelCard, load_checkpoint
from ctseg_core.errors import StoreError
from ctseg_core.jobs import CancelToken
from ctseg_core.labels import LESION_CLASSES
from ctseg_core.losses import class_weights_from_labels, create_loss
from ctseg_core.metrics import overlap_counts, overlap_scores
from ctseg_core.model_store import ModelStore
from ctseg_core.resources import DEFAULT_MODEL
from ctseg_core.training import distributed as dist_util
from ctseg_core.training.augment import Augmenter
from ctseg_core.training.dataset import (LoadedCase, SliceDataset, StepBatchSampler, load_cases, sampling_weights,
                                         split_cases, workspace_cases)
from ctseg_core.training.recipe import Recipe, default_strategy
from ctseg_core.training.state import STATE_FILE, read_training_state, restore_training_state, save_training_state
from ctseg_core.training.trainer import FineTuner, apply_strategy, make_optimizer, predict_slices, step_batches

Emit = Callable[[dict], None]


@dataclass
class TrainRequest:
    workspace: Path
    from_version: str | None = None  # the parent; None = the active version
    from_scratch: bool = False  # fresh weights of the parent's architecture (the parent stays the baseline)
    strategy: str | None = None  # None = default_strategy(device)
    recipe: Recipe = field(default_factory=Recipe)
    device: str = "auto"
    val_cases: Sequence[str] = ()
    seed: int = 0
    resume: bool = False
    root_model: Path | None = DEFAULT_MODEL


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def state_path(store: ModelStore) -> Path:
    return store.dir / STATE_FILE


# ---------------------------------------------------------------- validation and promotion

def validation_dice(model, val_ds: SliceDataset, device: torch.device, recipe: Recipe,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Dice per lesion class present in the validation cases' labels, voxels pooled over the cases.
    ``progress(done, total)`` is called before the first case and after each one."""
    per_case = []
    n = len(val_ds.cases)
    if progress is not None:
        progress(0, n)
    for c in range(n):
        pred, truth = predict_slices(model, Subset(val_ds, val_ds.slices_of(c)), device, recipe.batch_size,
                                     recipe.mixed_precision)
        per_case.append(overlap_counts(pred, truth))
        if progress is not None:
            progress(c + 1, n)
    scores = overlap_scores(per_case)
    pooled_truth = sum(c.tp + c.fn for c in per_case)
    return {cls.key: round(float(scores.dice_voxel[cls.id]), 6) for cls in LESION_CLASSES if pooled_truth[cls.id] > 0}


def mean_dice(dice: dict[str, float]) -> float | None:
    return float(np.mean(list(dice.values()))) if dice else None


def promotion(before: dict[str, float], after: dict[str, float], version: str, parent: str) -> tuple[bool, str]:
    """Promote when the mean Dice over the classes present is not lower than the parent's on the same cases."""
    b, a = mean_dice(before), mean_dice(after)
    if a is None or b is None:
        return False, (f"{version} was kept but not made active: the validation cases contain no lesion, so it "
                       f"cannot be compared with {parent}")
    if a >= b:
        return True, f"{version} is active: validation Dice {a:.3f} is not lower than {parent}'s {b:.3f} on the same cases"
    return False, (f"{version} was kept but not made active: validation Dice {a:.3f} is lower than {parent}'s "
                   f"{b:.3f} on the same cases (use 'ctseg models use {version}' to make it active anyway)")


def hardware(device: torch.device, world_size: int) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": device.type, "name": name, "processes": world_size, "torch": torch.__version__,
            "host": platform.node()}


# ---------------------------------------------------------------- the run

def run_training(req: TrainRequest, emit: Emit, cancel: CancelToken | None = None,
                 cases: Iterable | None = None) -> dict:
    """Run one fine-tune; returns the final event (``done`` or ``cancelled``). ``cases`` replaces the
    workspace's cases (an iterable of ``LoadedCase`` / ``(case_id, volume, labels)``)."""
    device_kind = resolve_device(req.device)
    ctx = dist_util.init(device_kind)
    try:
        device = dist_util.device_for(ctx, device_kind)
        return _run(req, emit if ctx.is_main else (lambda e: None), cancel or CancelToken(), cases, ctx, device)
    finally:
        dist_util.shutdown(ctx)


def _run(req: TrainRequest, emit: Emit, cancel: CancelToken, cases, ctx, device) -> dict:
    store = ModelStore.for_workspace(req.workspace, req.root_model)
    saved = read_training_state(state_path(store)) if req.resume else None
    workspace = _workspace(req.workspace) if cases is None else None
    all_cases = load_cases(cases if cases is not None else workspace_cases(workspace))
    try:
        run = saved[1]["run"] if saved else _new_run(req, store, all_cases, device, ctx.world_size)
    except StoreError as exc:
        unsaved = workspace.reviewed_without_final() if workspace is not None else []
        if not unsaved:
            raise
        raise StoreError(f"{exc.problem}; {len(unsaved)} case(s) are marked corrected or approved but have no "
                         f"saved final label map ({', '.join(unsaved[:5])}): open them in the app and save",
                         req.workspace) from exc
    recipe = Recipe.from_json(run["recipe"])
    if recipe.channels_last is None:
        recipe = dataclasses.replace(recipe, channels_last=device.type != "cpu")
    seed_everything(run["seed"])

    parent = store.get(run["parent"])
    model, card = load_checkpoint(parent.path, expected_architecture=store.architecture())
    _check_slice_model(card, parent.path)
    plan = card.plan_obj
    by_id = {c.case_id: c for c in all_cases}
    missing = [i for i in run["train_cases"] + run["val_cases"] if i not in by_id]
    if missing:
        raise StoreError(f"case(s) of the run are no longer training cases: {', '.join(missing)}", req.workspace)
    train_ds = SliceDataset([by_id[i] for i in run["train_cases"]], plan, Augmenter(recipe.augment))
    val_ds = SliceDataset([by_id[i] for i in run["val_cases"]], plan)
    emit({"event": "plan", **{k: run[k] for k in ("parent", "strategy", "strategy_reason", "train_cases",
                                                  "val_cases", "total_steps", "seed")},
          "from_scratch": run["from_scratch"], "device": str(device), "world_size": ctx.world_size,
          "resumed_from_step": int(saved[1]["step"]) if saved else None})

    model.to(device)
    if saved is None and ctx.is_main:
        run["before"] = validation_dice(model, val_ds, device, recipe, _validating(emit, "before", run["parent"]))
    run["before"] = dist_util.broadcast_object(run.get("before"), ctx)
    emit({"event": "validate", "when": "before", "version": run["parent"], "dice": run["before"],
          "mean_dice": mean_dice(run["before"])})
    if run["from_scratch"]:
        seed_everything(run["seed"])
        model = _fresh_model(card).to(device)

    optimizer, scheduler, start_step = _optimization(model, recipe, run, saved)
    wrapped = dist_util.wrap(model, ctx, device)
    net = torch.compile(wrapped) if recipe.compile else wrapped
    loss_fn = create_loss(recipe.loss, class_weights_from_labels([c.labels for c in train_ds.cases]),
                          recipe.focal_gamma).to(device)
    loader = _loader(train_ds, recipe, run, start_step, ctx, device)

    def save(step: int) -> None:
        save_training_state(state_path(store), model=model, optimizer=optimizer, scheduler=scheduler, step=step,
                            run=run)

    tuner = FineTuner(net, optimizer, scheduler, loss_fn, step_batches(loader, recipe.accumulate), recipe=recipe,
                      device=device, total_steps=run["total_steps"], start_step=start_step, ctx=ctx, emit=emit,
                      cancel=cancel, save_state=save)
    t0 = time.perf_counter()
    outcome = tuner.run()
    if outcome == "cancelled":
        return {"event": "cancelled", "step": tuner.step, "total_steps": run["total_steps"]}
    run["train_seconds"] = run.get("train_seconds", 0.0) + round(time.perf_counter() - t0, 2)

    result = _finish(store, model, card, run, val_ds, device, recipe, ctx, emit) if ctx.is_main else None
    result = dist_util.broadcast_object(result, ctx)
    if ctx.is_main:
        emit({"event": "validate", "when": "after", "version": result["version"], "dice": run["after"],
              "mean_dice": mean_dice(run["after"])})
        emit(result)
    return result


def _check_slice_model(card, path) -> None:
    """Fine-tuning on corrected cases trains slice models (their samples are single slices)."""
    from ctseg_core.errors import CheckpointError
    from ctseg_core.models import model_kind

    kind = model_kind(card.architecture)
    if kind != "slice":
        raise CheckpointError(f"fine-tuning on corrected cases trains slice models; {card.architecture} is a {kind} "
                              f"model (train it with 'ctseg pretrain --arch {card.architecture}')", path)


def _optimization(model, recipe: Recipe, run: dict, saved):
    """Freeze per strategy, AdamW + cyclic LR; restored from the saved state when resuming."""
    trainable = apply_strategy(model, recipe.strategy)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(trainable, recipe, run["total_steps"])
    start_step = restore_training_state(*saved, model=model, optimizer=optimizer, scheduler=scheduler) if saved else 0
    return optimizer, scheduler, start_step


def _loader(train_ds: SliceDataset, recipe: Recipe, run: dict, start_step: int, ctx, device) -> DataLoader:
    """Micro-batches from step ``start_step`` on: lesion slices over-sampled, this rank's share."""
    sampler = StepBatchSampler(sampling_weights(train_ds.has_lesion, recipe.lesion_fraction), recipe.batch_size,
                               recipe.accumulate, run["total_steps"], run["seed"], start_step, ctx.rank,
                               ctx.world_size)
    return DataLoader(train_ds, batch_sampler=sampler, num_workers=recipe.num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def _workspace(root: Path):
    from ctseg_core.store import Workspace

    return Workspace(root, create=False)


def _fresh_model(card: ModelCard):
    from ctseg_core.models import create_model

    config = dict(card.config)
    config["encoder_weights"] = None
    return create_model(card.architecture, **config)


def _new_run(req: TrainRequest, store: ModelStore, cases: list[LoadedCase], device: torch.device,
             world_size: int) -> dict:
    """The run's fixed configuration (saved in the training state so a resume continues the same run)."""
    parent = req.from_version or store.active_version()
    store.get(parent)  # a clear error for an unknown version
    strategy, reason = (req.strategy, "chosen by the user") if req.strategy else default_strategy(device)
    recipe = dataclasses.replace(req.recipe, strategy=strategy)
    train_ids, val_ids = split_cases([c.case_id for c in cases], req.val_cases, recipe.val_fraction, req.seed)
    n_slices = sum(c.volume.shape[0] for c in cases if c.case_id in set(train_ids))
    return {"parent": parent, "from_scratch": req.from_scratch, "strategy": strategy, "strategy_reason": reason,
            "recipe": recipe.to_json(), "seed": req.seed, "train_cases": train_ids, "val_cases": val_ids,
            "total_steps": recipe.total_steps(n_slices, world_size),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _validating(emit: Emit, when: str, version: str) -> Callable[[int, int], None]:
    """Progress of a validation as ``validating`` events (the GUI shows them while it measures)."""
    return lambda done, total: emit({"event": "validating", "when": when, "version": version, "case": done,
                                     "cases": total})


def _finish(store: ModelStore, model, parent_card: ModelCard, run: dict, val_ds, device, recipe, ctx,
            emit: Emit = lambda e: None) -> dict:
    """Validate the new model, save it as a version, promote it when it is not worse (rank 0 only)."""
    model.eval()
    run["after"] = validation_dice(model, val_ds, device, recipe, _validating(emit, "after", "the new model"))
    version = store.next_version()
    promoted, reason = promotion(run["before"], run["after"], version, run["parent"])
    card = ModelCard(architecture=parent_card.architecture, config=dict(parent_card.config),
                     classes=parent_card.classes, plan=parent_card.plan, parent_version=run["parent"],
                     training_data={"description": "corrected workspace cases", "source": "workspace",
                                    "n_cases": len(run["train_cases"]), "train_cases": run["train_cases"],
                                    "val_cases": run["val_cases"]},
                     metrics={"validation": {"cases": run["val_cases"], "dice_before": run["before"],
                                             "dice_after": run["after"], "mean_before": mean_dice(run["before"]),
                                             "mean_after": mean_dice(run["after"]),
                                             "average": "voxels pooled over the validation cases"}},
                     recipe=run["recipe"],
                     extra={"strategy": run["strategy"], "from_scratch": run["from_scratch"], "seed": run["seed"],
                            "steps": run["total_steps"], "train_seconds": run["train_seconds"],
                            "hardware": hardware(device, ctx.world_size), "started": run["started"],
                            "promoted": promoted, "promotion_reason": reason})
    entry = store.add(model, card)
    if promoted:
        store.use(entry.version)
    state = state_path(store)
    if state.exists():
        state.unlink()
    return {"event": "done", "version": entry.version, "promoted": promoted, "reason": reason,
            "active": store.active_version(), "path": str(entry.path)}
