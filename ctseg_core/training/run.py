"""One fine-tuning run of a workspace's model, wired end to end.

Parent version -> cases (corrected/approved, with what a person reviewed) -> the workspace's frozen
validation set (``validation_set``; chosen on the first run) -> Dice of the parent on the validation cases
through the real ``Predictor`` (``promotion``) -> ``FineTuner`` on the reviewed slices of the training cases
(corrected voxels up-weighted) -> Dice of the new model on the same cases -> a new version in the model
store, made active only by the promotion rule. Progress goes to ``emit`` as the typed events of
``events``; the training state is saved for ``resume`` every ``recipe.checkpoint_every`` steps and on cancel.
``rescore`` measures every version on the current validation set (after a person changed it).
"""

from __future__ import annotations

import dataclasses
import platform
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ctseg_core import version_scores
from ctseg_core.checkpoint import ModelCard, load_checkpoint
from ctseg_core.errors import StoreError
from ctseg_core.jobs import CancelToken, PauseToken
from ctseg_core.losses import class_weights_from_labels, create_loss
from ctseg_core.model_store import ModelStore
from ctseg_core.resources import DEFAULT_MODEL
from ctseg_core.training import distributed as dist_util
from ctseg_core.training import events as ev
from ctseg_core.training import validation_set
from ctseg_core.training.augment import Augmenter
from ctseg_core.training.dataset import LoadedCase, SliceDataset, StepBatchSampler, load_cases, sampling_weights, \
    workspace_cases
from ctseg_core.training.promotion import RULE, Scores, decide, score_cases
from ctseg_core.training.recipe import Recipe, default_strategy
from ctseg_core.training.state import STATE_FILE, read_training_state, restore_training_state, save_training_state
from ctseg_core.training.trainer import FineTuner, apply_strategy, make_optimizer, step_batches

Emit = ev.Emit


@dataclass
class TrainRequest:
    workspace: Path
    from_version: str | None = None  # the parent; None = the active version
    from_scratch: bool = False  # fresh weights of the parent's architecture (the parent stays the baseline)
    strategy: str | None = None  # None = default_strategy(device)
    recipe: Recipe = field(default_factory=Recipe)
    device: str = "auto"
    val_cases: Sequence[str] = ()  # replace the workspace's validation set with these (recorded)
    seed: int = 0
    resume: bool = False
    root_model: Path | None = DEFAULT_MODEL
    annotator: str = ""  # who asked (recorded with a change of the validation set)


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


# ---------------------------------------------------------------- validation

def measure(model, card: ModelCard, cases: Sequence[LoadedCase], device: torch.device, emit: Emit, when: str,
            version: str, pause: PauseToken | None = None, cancel: CancelToken | None = None) -> Scores:
    """The model's validation scores through the viewer's ``Predictor`` (``validating`` events as it goes;
    between two cases it gives the device up while ``pause`` is set)."""
    from ctseg_core.predictor import Predictor

    predictor = Predictor(model, card, device=device)

    def progress(done: int, total: int) -> None:
        emit(ev.Validating(when, version, done, total))
        if pause is not None and pause.requested:
            t0 = time.perf_counter()
            emit(ev.Paused(0))
            if device.type == "cuda":
                torch.cuda.empty_cache()
            pause.wait(cancel)
            emit(ev.Resumed(0, round(time.perf_counter() - t0, 2)))

    return score_cases(predictor, cases, progress)


def hardware(device: torch.device, world_size: int) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": device.type, "name": name, "processes": world_size, "torch": torch.__version__,
            "host": platform.node()}


# ---------------------------------------------------------------- the run

def run_training(req: TrainRequest, emit: Emit, cancel: CancelToken | None = None,
                 cases: Iterable | None = None, pause: PauseToken | None = None) -> ev.TrainingEvent:
    """Run one fine-tune; returns the final event (``Done`` or ``Cancelled``). ``cases`` replaces the
    workspace's cases (an iterable of ``LoadedCase`` / ``(case_id, volume, labels)``)."""
    device_kind = resolve_device(req.device)
    ctx = dist_util.init(device_kind)
    try:
        device = dist_util.device_for(ctx, device_kind)
        return _run(req, emit if ctx.is_main else (lambda e: None), cancel or CancelToken(), cases, ctx, device,
                    pause or PauseToken())
    finally:
        dist_util.shutdown(ctx)


def _cases(req: TrainRequest, cases) -> list[LoadedCase]:
    if cases is not None:
        return load_cases(cases)
    from ctseg_core.store import Workspace

    workspace = Workspace(req.workspace, create=False)
    loaded = load_cases(workspace_cases(workspace))
    unsaved = workspace.reviewed_without_final()
    if len(loaded) < 2 and unsaved:
        raise StoreError(f"{len(unsaved)} case(s) are marked corrected, adjudicated or approved but have no saved final label "
                         f"map ({', '.join(unsaved[:5])}): open them in the app and save", req.workspace)
    return loaded


def _run(req: TrainRequest, emit: Emit, cancel: CancelToken, cases, ctx, device, pause: PauseToken):
    store = ModelStore.for_workspace(req.workspace, req.root_model)
    saved = read_training_state(state_path(store)) if req.resume else None
    all_cases = _cases(req, cases)
    run = saved[1]["run"] if saved else _new_run(req, store, all_cases, device, ctx.world_size, emit)
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
    train_ds = SliceDataset([by_id[i] for i in run["train_cases"]], plan, Augmenter(recipe.augment),
                            recipe.unreviewed, recipe.corrected_weight)
    val_cases = [by_id[i] for i in run["val_cases"]]
    emit(ev.Plan(run["parent"], run["strategy"], run["strategy_reason"], run["train_cases"], run["val_cases"],
                 run["total_steps"], run["seed"], run["from_scratch"], str(device), ctx.world_size,
                 int(saved[1]["step"]) if saved else None, recipe.corrected_weight, recipe.unreviewed,
                 len(train_ds), run["validation"]["fingerprint"]))

    if saved is None and ctx.is_main:
        before = measure(model, card, val_cases, device, emit, "before", run["parent"], pause, cancel)
        run["before"], run["before_voxel"] = before.dice, before.dice_voxel
        _record(store, run, run["parent"], before.dice, before.dice_voxel)
    run["before"], run["before_voxel"] = dist_util.broadcast_object((run.get("before"), run.get("before_voxel")), ctx)
    emit(ev.Validate("before", run["parent"], run["before"], _mean(run["before"]), run["before_voxel"]))
    model.to(device)
    if run["from_scratch"]:
        seed_everything(run["seed"])
        model = _fresh_model(card).to(device)

    optimizer, scheduler, start_step = _optimization(model, recipe, run, saved)
    wrapped = dist_util.wrap(model, ctx, device)
    net = torch.compile(wrapped) if recipe.compile else wrapped
    loss_fn = create_loss(recipe.loss, class_weights_from_labels(_trained_labels(train_ds)),
                          recipe.focal_gamma).to(device)
    loader = _loader(train_ds, recipe, run, start_step, ctx, device)

    def save(step: int) -> None:
        save_training_state(state_path(store), model=model, optimizer=optimizer, scheduler=scheduler, step=step,
                            run=run)

    tuner = FineTuner(net, optimizer, scheduler, loss_fn, step_batches(loader, recipe.accumulate), recipe=recipe,
                      device=device, total_steps=run["total_steps"], start_step=start_step, ctx=ctx, emit=emit,
                      cancel=cancel, save_state=save, pause=pause)
    t0 = time.perf_counter()
    outcome = tuner.run()
    if outcome == "cancelled":
        return ev.Cancelled(tuner.step, run["total_steps"])
    run["train_seconds"] = run.get("train_seconds", 0.0) + round(time.perf_counter() - t0, 2)

    result = _finish(store, model, card, run, val_cases, device, ctx, emit, pause) if ctx.is_main else None
    result = dist_util.broadcast_object(result, ctx)
    if ctx.is_main:
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


def _mean(dice: dict) -> float | None:
    return float(np.mean(list(dice.values()))) if dice else None


def _trained_labels(ds: SliceDataset) -> list[np.ndarray]:
    """The label slices the run trains on (for the class weights of the loss)."""
    return [ds.cases[c].labels[z] for c, z in ds.index]


def _record(store: ModelStore, run: dict, version: str, dice: dict, dice_voxel: dict) -> None:
    val = run["validation"]
    version_scores.record(store.dir, val["fingerprint"], run["val_cases"], val["revision"], version,
                          {"dice": dice, "dice_voxel": dice_voxel, "mean": _mean(dice)})


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


def _fresh_model(card: ModelCard):
    from ctseg_core.models import create_model

    config = dict(card.config)
    config["encoder_weights"] = None
    return create_model(card.architecture, **config)


def _new_run(req: TrainRequest, store: ModelStore, cases: list[LoadedCase], device: torch.device,
             world_size: int, emit: Emit) -> dict:
    """The run's fixed configuration (saved in the training state so a resume continues the same run).
    Everything that can refuse the run (the validation set, reviewed slices) is checked here, before any
    model is measured or trained."""
    parent = req.from_version or store.active_version()
    store.get(parent)  # a clear error for an unknown version
    strategy, reason = (req.strategy, "chosen by the user") if req.strategy else default_strategy(device)
    recipe = dataclasses.replace(req.recipe, strategy=strategy)
    vs, val_ids, train_ids = _validation_split(req, cases, recipe, emit)
    by_id = {c.case_id: c for c in cases}
    if not any(by_id[i].lesion_keys() for i in val_ids):
        raise StoreError(f"the validation cases ({', '.join(val_ids)}) hold no lesion now, so a new model could not "
                         "be compared with the current one: move a case with a lesion into the validation set "
                         "(Cases list) before training", req.workspace)
    train_cases = [by_id[i] for i in train_ids]
    n_slices = len(SliceDataset(train_cases, None, unreviewed=recipe.unreviewed).index)
    if n_slices == 0:
        raise StoreError("no reviewed slice to train on: edit or confirm slices (Review > Slice reviewed) of the "
                         f"training cases ({', '.join(train_ids)})", req.workspace)
    hashes = {i: by_id[i].hashes() for i in val_ids}
    return {"parent": parent, "from_scratch": req.from_scratch, "strategy": strategy, "strategy_reason": reason,
            "recipe": recipe.to_json(), "seed": req.seed, "train_cases": train_ids, "val_cases": val_ids,
            "validation": {"hashes": hashes, "fingerprint": validation_set.fingerprint(hashes),
                           "revision": vs.revision},
            "reviewed": {i: _review_summary(by_id[i]) for i in train_ids},
            "total_steps": recipe.total_steps(n_slices, world_size),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _validation_split(req: TrainRequest, cases: list[LoadedCase], recipe: Recipe, emit: Emit):
    """(set, validation ids, train ids): the workspace's frozen set, chosen now on the first run."""
    ids = [c.case_id for c in cases]
    if req.val_cases:
        validation_set.change(req.workspace, replace=list(req.val_cases), by=req.annotator or "command line",
                              known=ids)
    vs, why = validation_set.ensure(req.workspace, {c.case_id: c.lesion_keys() for c in cases}, req.seed,
                                    recipe.val_fraction)
    if why:
        classes = {c.case_id: sorted(c.lesion_keys()) for c in cases if c.case_id in vs.cases}
        emit(ev.ValidationSetChosen(vs.cases, classes, vs.revision, why))
    train_ids, val_ids = vs.split(ids)
    return vs, val_ids, train_ids


def _review_summary(case: LoadedCase) -> dict:
    reviewed = case.reviewed_slices()
    return {"slices": int(len(reviewed)), "reviewed": int(reviewed.sum()),
            "corrected_voxels": int(case.corrected.sum()) if case.corrected is not None else None}


def _finish(store: ModelStore, model, parent_card: ModelCard, run: dict, val_cases, device, ctx,
            emit: Emit = lambda e: None, pause: PauseToken | None = None) -> ev.Done:
    """Validate the new model, save it as a version, promote it by the rule (rank 0 only)."""
    model.eval()
    version = store.next_version()
    after = measure(model, parent_card, val_cases, device, emit, "after", "the new model", pause)
    run["after"], run["after_voxel"] = after.dice, after.dice_voxel
    emit(ev.Validate("after", version, after.dice, after.mean, after.dice_voxel))
    decision = decide(run["before"], run["after"], version, run["parent"])
    val = run["validation"]
    card = ModelCard(architecture=parent_card.architecture, config=dict(parent_card.config),
                     classes=parent_card.classes, plan=parent_card.plan, parent_version=run["parent"],
                     guard=dict(parent_card.guard),  # measured above with the parent's guard: kept with it
                     training_data={"description": "corrected workspace cases", "source": "workspace",
                                    "n_cases": len(run["train_cases"]), "train_cases": run["train_cases"],
                                    "val_cases": run["val_cases"], "reviewed": run["reviewed"]},
                     metrics={"validation": {"cases": run["val_cases"], "hashes": val["hashes"],
                                             "fingerprint": val["fingerprint"], "revision": val["revision"],
                                             "dice_before": run["before"], "dice_after": run["after"],
                                             "dice_voxel_before": run["before_voxel"],
                                             "dice_voxel_after": run["after_voxel"],
                                             "mean_before": _mean(run["before"]), "mean_after": _mean(run["after"]),
                                             "average": "dice_*: sample average (mean over the validation cases); "
                                                        "dice_voxel_*: voxels pooled over the cases; through the "
                                                        "Predictor on the scans' grids, reviewed slices only",
                                             "decision": decision.to_json()}},
                     recipe=run["recipe"],
                     extra={"strategy": run["strategy"], "from_scratch": run["from_scratch"], "seed": run["seed"],
                            "steps": run["total_steps"], "train_seconds": run["train_seconds"],
                            "hardware": hardware(device, ctx.world_size), "started": run["started"],
                            "promoted": decision.promoted, "promotion_reason": decision.reason,
                            "promotion_rule": RULE})
    entry = store.add(model, card)
    _record(store, run, entry.version, run["after"], run["after_voxel"])
    if decision.promoted:
        store.use(entry.version)
    state = state_path(store)
    if state.exists():
        state.unlink()
    return ev.Done(entry.version, decision.promoted, decision.reason, store.active_version(), str(entry.path),
                   decision.to_json())


# ---------------------------------------------------------------- re-scoring after the set changed

def rescore(req: TrainRequest, emit: Emit, cases: Iterable | None = None) -> list[ev.Rescored]:
    """Measure every version of the workspace's store on the current validation set (``rescored`` events)."""
    device = torch.device(resolve_device(req.device))
    store = ModelStore.for_workspace(req.workspace, req.root_model)
    all_cases = _cases(req, cases)
    vs, val_ids, _ = _validation_split(req, all_cases, req.recipe, emit)
    by_id = {c.case_id: c for c in all_cases}
    hashes = {i: by_id[i].hashes() for i in val_ids}
    run = {"val_cases": val_ids, "validation": {"fingerprint": validation_set.fingerprint(hashes),
                                                "revision": vs.revision}}
    out = []
    for v in store.versions():
        model, card = load_checkpoint(v.path, expected_architecture=store.architecture())
        scores = measure(model, card, [by_id[i] for i in val_ids], device, emit, "rescore", v.version)
        _record(store, run, v.version, scores.dice, scores.dice_voxel)
        out.append(ev.Rescored(v.version, scores.dice, scores.mean, run["validation"]["fingerprint"]))
        emit(out[-1])
    return out
