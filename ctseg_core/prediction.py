"""What every inference strategy shares: the ``Prediction`` it returns, how probabilities become labels
and uncertainty, and the run-time checks (autocast dtype, native bf16, ONNX Runtime and its cache).
``ctseg_core.predictor`` (the slice strategy and the ``Predictor``) and ``ctseg_core.volume_strategy``
both build on it."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ctseg_core.checkpoint import ModelCard
from ctseg_core.guard import GuardReport
from ctseg_core.labels import output_label_values
from ctseg_core.volume import LabelMap

SliceCallback = Callable[[int, np.ndarray, np.ndarray], None]  # (z, labels_yx uint8, probs_cyx float16)


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX512-BF16 or AMX); autocast to bf16 is slow elsewhere."""
    if sys.platform != "linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def onnx_cache_dir() -> Path:
    """Where exported ONNX models are kept (``CTSEG_CACHE`` or ~/.cache/ctseg), one file per weights hash."""
    return Path(os.environ.get("CTSEG_CACHE", Path.home() / ".cache" / "ctseg")) / "onnx"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp``: "auto" (bf16 or fp16 on CUDA, fp16 on MPS, none on CPU), "bf16",
    "fp16" or "off"."""
    if amp == "off":
        return None
    if amp == "bf16":
        if device.type == "cpu" and not cpu_has_native_bf16():
            raise ValueError("bf16 autocast asked for on a CPU without native bf16 (it would be slower)")
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp != "auto":
        raise ValueError(f"amp must be auto, bf16, fp16 or off, got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def label_lookup(card: ModelCard) -> torch.Tensor | None:
    """uint8 table from output channel to ctseg label value, or None when they are the same."""
    values = output_label_values(card.classes)
    if values == list(range(len(values))):
        return None
    return torch.tensor(values, dtype=torch.uint8)


def labels_from_probabilities(p: torch.Tensor, lookup: torch.Tensor | None) -> torch.Tensor:
    """uint8 label values from (N, C, ...) probabilities: the arg-max channel, mapped through ``lookup``."""
    labels = p.argmax(dim=1)  # in torch: numpy's float16 argmax is slow
    return labels.to(torch.uint8) if lookup is None else lookup.to(labels.device)[labels]


def slice_order(depth: int, start: int | None = None) -> list[int]:
    """Every slice once: start (default the middle), then start+1, start-1, start+2, start-2, ..."""
    if depth <= 0:
        return []
    start = depth // 2 if start is None else int(start)
    if not 0 <= start < depth:
        raise IndexError(f"start slice {start} outside 0..{depth - 1}")
    order = [start]
    for step in range(1, depth):
        for z in (start + step, start - step):
            if 0 <= z < depth:
                order.append(z)
    return order


def view_order_batches(depth: int, start: int | None, first: int, batch: int, cancel=None):
    """The slices in ``slice_order`` as batches: the first ``first`` (the viewed slice) alone, then ``batch``
    at a time; ``cancel`` (a CancelToken) is checked before each batch."""
    order = slice_order(depth, start)
    for zs in [order[:first]] + [order[i:i + batch] for i in range(first, depth, batch)]:
        if not zs:
            continue
        if cancel is not None:
            cancel.raise_if_cancelled()
        yield zs


def softmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes (dim 1) with logits floored at 80 below the largest: probabilities stay above
    1e-35 and never become float32 denormals, which slow every later operation on x86 by 10-100x."""
    logits = logits - logits.amax(dim=1, keepdim=True)
    return torch.softmax(logits.clamp_(min=-80.0), dim=1)


def slice_uncertainty(probs_cyx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 (y, x) of one slice's probabilities (C, y, x): 1 - the largest class probability (0 = certain)."""
    return np.subtract(1.0, probs_cyx.max(axis=0), out=out, dtype=np.float32)


@dataclass
class Prediction:
    labels: LabelMap  # what the overlay shows: the model's labels, after the anatomical guard when it is on
    probabilities: np.ndarray | None  # float16 (z, C, y, x) on the volume's grid, C = the model's outputs (never
    # guarded); None for a scan model (RADnet), which gives per-slice probabilities only
    channel_labels: tuple[int, ...] | None = None  # label value of each probability channel (None: 0..C-1)
    model_labels: np.ndarray | None = None  # uint8 (z, y, x) labels before the guard; None when no guard ran
    slice_probabilities: np.ndarray | None = None  # float32 (z,): P(hemorrhage on slice z), scan models only
    guard_report: GuardReport | None = None  # what the anatomical guard removed (None: no guard ran)

    @property
    def triage(self):
        """The scan's triage (``ctseg_core.triage.Triage``) when the model gives slice probabilities, else None."""
        if self.slice_probabilities is None:
            return None
        from ctseg_core.triage import Triage

        return Triage(np.asarray(self.slice_probabilities, np.float32))

    def uncertainty(self) -> np.ndarray | None:
        """float32 (z, y, x): ``slice_uncertainty`` of every slice (None without voxel probabilities)."""
        if self.probabilities is None:
            return None
        out = np.empty(self.labels.array.shape, dtype=np.float32)
        for z in range(out.shape[0]):  # per slice: keeps the float32 temporaries small
            slice_uncertainty(self.probabilities[z], out=out[z])
        return out


def labelled_prediction(volume, labels: np.ndarray, probs: np.ndarray, card: ModelCard, guard=None,
                        model_labels: np.ndarray | None = None) -> Prediction:
    """The result of a strategy that labelled ``volume`` slice by slice: with a guard, its whole-volume rules
    applied to what its slice rules left (slices already sent may change) and what it removed reported."""
    channels, report = tuple(output_label_values(card.classes)), None
    if guard is not None:
        labels, report = guard.finish(model_labels, labels, probs, channels, volume.spacing)
    return Prediction(LabelMap(labels, volume.geometry), probs, channels, model_labels, guard_report=report)
