"""Inference strategies (``ctseg_core.predictor``) of models that see several slices at once, chosen by the
registry's model kind on a slice plan:

- ``SlabStrategy`` (kind "slab", RSANet): the scan is covered by slabs of K consecutive slices, half a slab
  apart; the slab around the viewed slice runs first, then the others outwards. Each slice's probabilities
  are the average over the slabs that hold it, weighted towards each slab's centre (a slab's edge slices
  miss the context on one side). A slice is finished, labelled (argmax, then the anatomical guard) and
  handed to ``on_slice`` as soon as every slab holding it has run. In-plane, a patch-trained model runs on
  sliding windows as slice models do.
- ``ScanStrategy`` (kind "scan", RADnet): the slice network runs on every slice, from the viewed slice
  outwards (each slice reported to ``on_slice`` with an empty label map and no probabilities: the model
  draws no overlay), then the sequence model runs once over the whole scan and gives every slice's
  probability (``Prediction.slice_probabilities``, ``Prediction.triage``).
Preprocessing is the plan's, as for slice models.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ctseg_core.checkpoint import ModelCard
from ctseg_core.guard import Guard
from ctseg_core.jobs import CancelToken
from ctseg_core.prediction import (
    Prediction,
    SliceCallback,
    amp_dtype,
    label_lookup,
    labelled_prediction,
    labels_from_probabilities,
    softmax_classes,
    view_order_batches,
)
from ctseg_core.preprocess import Plan
from ctseg_core.sliding_window import sliding_window
from ctseg_core.volume import LabelMap, Volume


class _SequenceStrategy:
    """What both strategies share: the model in eval mode on the device, autocast."""

    def __init__(self, model: nn.Module, card: ModelCard, plan: Plan, device: torch.device, amp: str = "auto"):
        self.card, self.plan, self.device = card, plan, device
        self.amp_dtype = amp_dtype(amp, device)
        self.model = model.eval().to(device)

    def describe(self) -> str:
        return ""

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


# ---------------------------------------------------------------- slabs

def slab_starts(depth: int, slab: int) -> list[int]:
    """First slices of slabs of ``slab`` slices, half a slab apart, covering 0..depth-1 (the last ends there)."""
    if depth <= slab:
        return [0]
    step = max(1, slab // 2)
    starts = list(range(0, depth - slab + 1, step))
    if starts[-1] != depth - slab:
        starts.append(depth - slab)
    return starts


def slab_weights(slab: int) -> np.ndarray:
    """Blending weight of each slice of a slab: 1 at the ends, rising by 1 per slice towards the centre."""
    i = np.arange(slab)
    return (1.0 + np.minimum(i, slab - 1 - i)).astype(np.float32)


class SlabStrategy(_SequenceStrategy):
    """A slab model (see the module docstring)."""

    def __init__(self, model: nn.Module, card: ModelCard, plan: Plan, device: torch.device, amp: str = "auto",
                 guard: Guard | None = Guard()):
        super().__init__(model, card, plan, device, amp)
        self.guard = guard.for_card(card) if guard is not None else None
        self.lookup = label_lookup(card)
        self.slab_slices = int(card.config.get("slab_slices", 8))

    @property
    def model_classes(self) -> int:
        return int(self.card.config.get("num_classes", len(self.card.classes)))

    def predict(self, volume: Volume, start_slice: int | None = None, on_slice: SliceCallback | None = None,
                cancel: CancelToken | None = None, progress=None) -> Prediction:
        return _SlabRun(self, volume).run(start_slice, on_slice, cancel, progress)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model(x)


class _SlabRun:
    """One scan through a ``SlabStrategy``."""

    def __init__(self, strategy: SlabStrategy, volume: Volume):
        self.s, self.volume = strategy, volume
        depth = volume.shape[0]
        self.slab = min(strategy.slab_slices, depth)
        self.starts = slab_starts(depth, self.slab)
        self.cover = np.zeros(depth, int)
        for a in self.starts:
            self.cover[a:a + self.slab] += 1
        self.weights = slab_weights(self.slab)
        self.grid = strategy.plan.grid(volume.shape[1:], volume.spacing[1:])

    def order(self, start_slice: int | None) -> list[int]:
        """Slab starts, the one centred nearest the viewed slice first, then outwards."""
        z0 = self.volume.shape[0] // 2 if start_slice is None else int(start_slice)
        return sorted(self.starts, key=lambda a: (abs(a + (self.slab - 1) / 2 - z0), a))

    def run(self, start_slice, on_slice, cancel, progress) -> Prediction:
        s, vol = self.s, self.volume
        depth = vol.shape[0]
        probs = np.zeros((depth, s.model_classes) + vol.shape[1:], np.float16)
        labels = np.zeros(vol.shape, np.uint8)
        model_labels = np.zeros(vol.shape, np.uint8) if s.guard is not None else None
        pending: dict[int, list] = {}  # z -> [weighted sum of probabilities, weight, slabs seen]
        done = 0
        for start in self.order(start_slice):
            if cancel is not None:
                cancel.raise_if_cancelled()
            slab_probs = self.slab_probabilities(start)  # (K, C, H, W) on the scan's grid
            for i in range(self.slab):
                z = start + i
                acc = pending.setdefault(z, [0.0, 0.0, 0])
                acc[0] = acc[0] + self.weights[i] * slab_probs[i]
                acc[1] += self.weights[i]
                acc[2] += 1
                if acc[2] == self.cover[z]:
                    self._finish(z, pending.pop(z), probs, labels, model_labels, on_slice)
                    done += 1
            if progress is not None:
                progress(done, depth, f"segmented {done}/{depth} slices")
        return labelled_prediction(vol, labels, probs, s.card, s.guard, model_labels)

    def slab_probabilities(self, start: int) -> torch.Tensor:
        s, grid = self.s, self.grid
        hu = self.volume.array[start:start + self.slab]
        x = grid.to_model(torch.from_numpy(s.plan.map_intensity(hu))[None]).to(s.device)  # (1, K, H', W')
        k = self.slab

        def forward(t: torch.Tensor) -> torch.Tensor:  # slab logits as (1, C*K, h, w) for the sliding window
            return s.forward(t).float().flatten(1, 2)

        with torch.inference_mode():
            logits = sliding_window(forward, x, s.plan.patch_size) if s.plan.patch_size else forward(x)
            logits = logits.reshape(1, -1, k, *logits.shape[-2:])[0].transpose(0, 1)  # (K, C, H', W')
            return softmax_classes(grid.to_scan(logits)).cpu()

    def _finish(self, z: int, acc: list, probs, labels, model_labels, on_slice) -> None:
        p = acc[0] / acc[1]
        lab = labels_from_probabilities(p[None], self.s.lookup)[0].numpy()
        probs[z] = p.to(torch.float16).numpy()
        if self.s.guard is None:
            labels[z] = lab
        else:
            model_labels[z] = lab
            labels[z] = self.s.guard.apply_slice(self.volume.array[z], lab, self.volume.spacing[1:])
        if on_slice is not None:
            on_slice(z, labels[z], probs[z])


# ---------------------------------------------------------------- scans

class ScanStrategy(_SequenceStrategy):
    """A scan model (see the module docstring). ``batch_size``: slices per batch after the first (default 1
    on a CPU, 16 elsewhere). ``guard`` is taken as every slice strategy takes it, and unused: the model
    draws no labels to guard (``self.guard`` is None)."""

    def __init__(self, model: nn.Module, card: ModelCard, plan: Plan, device: torch.device,
                 batch_size: int | None = None, amp: str = "auto", guard: Guard | None = None):
        super().__init__(model, card, plan, device, amp)
        self.batch_size = batch_size or (1 if device.type == "cpu" else 16)
        self.guard = None

    def predict(self, volume: Volume, start_slice: int | None = None, on_slice: SliceCallback | None = None,
                cancel: CancelToken | None = None, progress=None) -> Prediction:
        """Slice features from the viewed slice outwards, then the sequence model over the whole scan."""
        depth, height, width = volume.shape
        grid = self.plan.grid((height, width), volume.spacing[1:])
        features = None
        empty = np.zeros((height, width), np.uint8)
        done = 0
        for zs in view_order_batches(depth, start_slice, 1, self.batch_size, cancel):
            x = grid.to_model(torch.from_numpy(np.stack([self.plan.input_stack(volume.array, z) for z in zs])))
            with torch.inference_mode(), self.autocast():
                f = self.model.slice_features(x.to(self.device)).float().cpu()
            if features is None:
                features = torch.zeros(depth, f.shape[1])
            features[zs] = f
            for z in zs:
                if on_slice is not None:
                    on_slice(z, empty, None)
            done += len(zs)
            if progress is not None:
                progress(done, depth, f"read {done}/{depth} slices")
        with torch.inference_mode():
            logits = self.model.sequence_logits(features[None].to(self.device)).float()[0]
        slice_probabilities = torch.sigmoid(logits).cpu().numpy().astype(np.float32)
        return Prediction(LabelMap(np.zeros(volume.shape, np.uint8), volume.geometry), None,
                          slice_probabilities=slice_probabilities)
