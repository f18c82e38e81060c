"""The fine-tuner: a training loop made of small hooks (before training, train step, forward loss,
after step, report, save state, after training), each one short and replaceable.

It knows nothing of workspaces or model versions (``ctseg_core.training.run`` wires those); it takes
a model, an optimizer and scheduler, a loss, micro-batches and an ``emit`` callable that receives the
typed events of ``ctseg_core.training.events`` (printed as JSON lines by the command line).

Extension points, instead of replacing hooks at run time: ``callbacks`` (objects with any of
``on_start(tuner)``, ``on_step_end(tuner)``, ``on_end(tuner)``), or a subclass (pretraining's). Between two
steps the run gives the device up while its ``pause`` token is set (the device queue asks for it when the
open case needs inference): it reports ``paused``, frees the GPU's cached memory and waits.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ctseg_core.jobs import CancelToken, PauseToken
from ctseg_core.training import distributed as dist_util
from ctseg_core.training import events as ev
from ctseg_core.training.recipe import Recipe

Emit = ev.Emit


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (the paper's mixed precision); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def apply_strategy(model: nn.Module, strategy: str) -> list[nn.Parameter]:
    """Freeze what the strategy keeps fixed; return the parameters to train.

    ``full`` trains everything; ``decoder`` freezes ``model.encoder`` (weights and batch-norm
    statistics, see ``set_train_mode``) and trains the stem, skips, attention, decoder and head.
    """
    for p in model.parameters():
        p.requires_grad_(True)
    if strategy == "decoder":
        encoder = getattr(model, "encoder", None)
        if encoder is None:
            raise ValueError(f"{type(model).__name__} has no .encoder to freeze for a decoder-only fine-tune")
        for p in encoder.parameters():
            p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: nn.Module, strategy: str) -> None:
    model.train()
    if strategy == "decoder":
        model.encoder.eval()  # a frozen encoder keeps its batch-norm running statistics


def make_optimizer(params, recipe: Recipe, total_steps: int):
    """AdamW with the recipe's cyclic learning rate (CyclicLR, triangular, between base_lr and lr).

    A half-cycle is ``recipe.cycle_steps`` long, shortened to half the run for short runs so that
    every run climbs to the peak and ends back at the floor. ``recipe.optimizer == "sgd"``: RADnet's
    recipe instead, SGD with momentum 0.9 at ``lr``, divided by 10 at 1/3 and at 2/3 of the run."""
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
        milestones = sorted({max(1, total_steps // 3), max(2, 2 * total_steps // 3)})
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    optimizer = torch.optim.AdamW(params, lr=recipe.base_lr, weight_decay=recipe.weight_decay)
    half = max(1, min(recipe.cycle_steps, total_steps // 2))
    scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=recipe.base_lr, max_lr=recipe.lr,
                                                  step_size_up=half, cycle_momentum=False)
    return optimizer, scheduler


def to_device(value, device: torch.device):
    """A tensor, or a dict of tensors, on ``device``."""
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value.to(device, non_blocking=True)


def step_batches(loader: DataLoader, accumulate: int) -> Iterator[list[dict]]:
    """Group the loader's micro-batches into one list per optimizer step."""
    group: list[dict] = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulate:
            yield group
            group = []


class FineTuner:
    """Runs optimizer steps ``start_step .. total_steps`` over the given micro-batch groups."""

    def __init__(self, model: nn.Module, optimizer, scheduler, loss_fn: Callable, batches: Iterable[list[dict]], *,
                 recipe: Recipe, device: torch.device, total_steps: int, start_step: int = 0,
                 ctx: dist_util.DistContext = dist_util.DistContext(), emit: Emit = lambda e: None,
                 cancel: CancelToken | None = None, save_state: Callable[[int], None] | None = None,
                 report_interval_s: float = 0.5, callbacks: Sequence = (), pause: PauseToken | None = None):
        self.model, self.optimizer, self.scheduler, self.loss_fn = model, optimizer, scheduler, loss_fn
        self.batches, self.recipe, self.device = batches, recipe, device
        self.total_steps, self.step = total_steps, start_step
        self.ctx, self.emit, self.cancel = ctx, emit, cancel or CancelToken()
        self.pause = pause or PauseToken()
        self.callbacks = list(callbacks)
        self._save_state = save_state
        self.report_interval_s = report_interval_s
        self._t_start = self._t_report = 0.0
        self._start_step = start_step
        self.last_loss = float("nan")

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> str:
        """Train to ``total_steps``; returns ``"done"`` or ``"cancelled"`` (state saved for --resume)."""
        self.before_training()
        for group in self.batches:
            if self.pause.requested and not self.ctx.enabled:
                self.wait_while_paused()
            if self.should_stop():
                return self.on_cancel()
            self.last_loss = self.train_step(group)
            self.step += 1
            self.after_step()
            if self.step >= self.total_steps:
                break
        self.after_training()
        return "done"

    # ---- hooks ---------------------------------------------------------------------------------------
    def before_training(self) -> None:
        set_train_mode(dist_util.unwrap(self.model), self.recipe.strategy)
        self._t_start = self._t_report = time.perf_counter()
        self.emit(ev.Start(self.step, self.total_steps, self.recipe.strategy, str(self.device), self.ctx.world_size))
        self._call("on_start")

    def _call(self, hook: str) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self)

    def wait_while_paused(self) -> None:
        """Give the device up until the pause is lifted (or the run is cancelled)."""
        t0 = time.perf_counter()
        self.emit(ev.Paused(self.step))
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.pause.wait(self.cancel)
        self.emit(ev.Resumed(self.step, round(time.perf_counter() - t0, 2)))

    def train_step(self, group: list[dict]) -> float:
        """Forward/backward over the step's micro-batches (gradient accumulation), then one update."""
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for k, batch in enumerate(group):
            last = k == len(group) - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.model.no_sync()
            with sync:
                loss = self.forward_loss(batch) / len(group)
                loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        self.scheduler.step()
        return dist_util.all_mean(total, self.ctx, self.device)

    def forward_loss(self, batch: dict) -> torch.Tensor:
        """The loss of one micro-batch: ``image`` through the model, the output and ``label`` (a tensor, or
        a dict of tensors for models with several targets) through the loss (losses compute in float32)."""
        x = batch["image"].to(self.device, non_blocking=True)
        y = to_device(batch["label"], self.device)
        if self.recipe.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.recipe.mixed_precision):
            out = self.model(x)
        weight = batch.get("weight")
        if weight is None:
            return self.loss_fn(out, y)
        return self.loss_fn(out.float(), y, weight.to(self.device, non_blocking=True))

    def after_step(self) -> None:
        self.report_step()
        every = self.recipe.checkpoint_every
        if every and self.step % every == 0 and self.step < self.total_steps:
            self.save_state()
        self._call("on_step_end")

    def report_step(self) -> None:
        now = time.perf_counter()
        if now - self._t_report < self.report_interval_s and self.step < self.total_steps:
            return
        self._t_report = now
        done = self.step - self._start_step
        eta = (now - self._t_start) / done * (self.total_steps - self.step) if done else None
        self.emit(ev.Step(self.step, self.total_steps, round(self.last_loss, 6), self.scheduler.get_last_lr()[0],
                          None if eta is None else round(eta, 1)))

    def should_stop(self) -> bool:
        return dist_util.broadcast_flag(self.cancel.cancelled, self.ctx, self.device)

    def on_cancel(self) -> str:
        self.save_state()
        self.emit(ev.Cancelled(self.step, self.total_steps))
        return "cancelled"

    def save_state(self) -> None:
        if self._save_state is not None and self.ctx.is_main:
            self._save_state(self.step)
        dist_util.barrier(self.ctx)

    def after_training(self) -> None:
        self._call("on_end")
        self.emit(ev.Trained(self.step, round(time.perf_counter() - self._t_start, 2)))
