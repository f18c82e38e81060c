"""Inference of models that see several slices at once, behind ``Predictor.predict`` (``ctseg_core.predictor``):

- **slab models** (RSANet): the scan is covered by slabs of K consecutive slices, half a slab apart; the
  slab around the viewed slice runs first, then the others outwards. Each slice's probabilities are the
  average over the slabs that hold it, weighted towards each slab's centre (a slab's edge slices miss
  the context on one side). A slice is finished, labelled (argmax, then the anatomical guard) and handed
  to ``on_slice`` as soon as every slab holding it has run. In-plane, a patch-trained model runs on
  sliding windows as slice models do.
- **scan models** (RADnet): the slice network runs on every slice, from the viewed slice outwards (each
  slice reported to ``on_slice`` with an empty label map: the model draws no overlay), then the sequence
  model runs once over the whole scan and gives every slice's probability (``Prediction.slice_probabilities``).
Preprocessing is the plan's, as for slice models.
"""

from __future__ import annotations

import numpy as np
import torch

from ctseg_core.predictor import Prediction, _softmax, slice_order
from ctseg_core.sliding_window import sliding_window
from ctseg_core.volume import LabelMap


def predict_sequence(predictor, volume, start_slice=None, on_slice=None, cancel=None, progress=None) -> Prediction:
    if predictor.kind == "slab":
        return SlabRun(predictor, volume).run(start_slice, on_slice, cancel, progress)
    if predictor.kind == "scan":
        return predict_scan(predictor, volume, start_slice, on_slice, cancel, progress)
    raise ValueError(f"no sequence inference for {predictor.kind} models")


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


class SlabRun:
    def __init__(self, predictor, volume):
        self.p, self.volume = predictor, volume
        depth = volume.shape[0]
        self.slab = min(int(predictor.card.config.get("slab_slices", 8)), depth)
        self.starts = slab_starts(depth, self.slab)
        self.cover = np.zeros(depth, int)
        for s in self.starts:
            self.cover[s:s + self.slab] += 1
        self.weights = slab_weights(self.slab)
        self.grid = predictor.plan.grid(volume.shape[1:], volume.spacing[1:])

    def order(self, start_slice: int | None) -> list[int]:
        """Slab starts, the one centred nearest the viewed slice first, then outwards."""
        z0 = self.volume.shape[0] // 2 if start_slice is None else int(start_slice)
        return sorted(self.starts, key=lambda s: (abs(s + (self.slab - 1) / 2 - z0), s))

    def run(self, start_slice, on_slice, cancel, progress) -> Prediction:
        p, vol = self.p, self.volume
        depth = vol.shape[0]
        probs = np.zeros((depth, p.model_classes) + vol.shape[1:], np.float16)
        labels = np.zeros(vol.shape, np.uint8)
        model_labels = np.zeros(vol.shape, np.uint8) if p.guard is not None else None
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
        return Prediction(LabelMap(labels, vol.geometry), probs, model_labels)

    def slab_probabilities(self, start: int) -> torch.Tensor:
        p, grid = self.p, self.grid
        hu = self.volume.array[start:start + self.slab]
        x = grid.to_model(torch.from_numpy(p.plan.map_intensity(hu))[None]).to(p.device)  # (1, K, H', W')
        k = self.slab

        def forward(t: torch.Tensor) -> torch.Tensor:  # slab logits as (1, C*K, h, w) for the sliding window
            return p._forward(t).float().flatten(1, 2)

        with torch.inference_mode():
            logits = sliding_window(forward, x, p.plan.patch_size) if p.plan.patch_size else forward(x)
            logits = logits.reshape(1, -1, k, *logits.shape[-2:])[0].transpose(0, 1)  # (K, C, H', W')
            return _softmax(grid.to_scan(logits)).cpu()

    def _finish(self, z: int, acc: list, probs, labels, model_labels, on_slice) -> None:
        p = acc[0] / acc[1]
        lab = p.argmax(dim=0).to(torch.uint8).numpy()
        probs[z] = p.to(torch.float16).numpy()
        if self.p.guard is None:
            labels[z] = lab
        else:
            model_labels[z] = lab
            labels[z] = self.p.guard.apply_slice(self.volume.array[z], lab, self.volume.spacing[1:])
        if on_slice is not None:
            on_slice(z, labels[z], probs[z])


# ---------------------------------------------------------------- scans

def predict_scan(predictor, volume, start_slice=None, on_slice=None, cancel=None, progress=None) -> Prediction:
    """Slice features from the viewed slice outwards, then the sequence model over the whole scan."""
    p = predictor
    depth, height, width = volume.shape
    grid = p.plan.grid((height, width), volume.spacing[1:])
    order = slice_order(depth, start_slice)
    batch = p.auto_batch_size(grid.padded_shape)
    batches = [order[:1]] + [order[i:i + batch] for i in range(1, depth, batch)]
    features = None
    empty = np.zeros((height, width), np.uint8)
    done = 0
    for zs in batches:
        if not zs:
            continue
        if cancel is not None:
            cancel.raise_if_cancelled()
        x = grid.to_model(torch.from_numpy(np.stack([p.plan.input_stack(volume.array, z) for z in zs]))).to(p.device)
        with torch.inference_mode(), _autocast(p):
            f = p.model.slice_features(x).float().cpu()
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
        logits = p.model.sequence_logits(features[None].to(p.device)).float()[0]
    slice_probabilities = torch.sigmoid(logits).cpu().numpy().astype(np.float32)
    return Prediction(LabelMap(np.zeros(volume.shape, np.uint8), volume.geometry), None, None, slice_probabilities)


def _autocast(predictor):
    import contextlib

    if predictor.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(predictor.device.type, dtype=predictor.amp_dtype)
