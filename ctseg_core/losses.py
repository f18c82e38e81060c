"""Training losses: the paper's class-weighted focal loss, Dice, and their sum (MONAI implementations).

Every loss here takes logits ``(N, C, H, W)``, targets of class indices ``(N, H, W)`` or ``(N, 1, H, W)`` and
optionally a voxel weight ``(N, H, W)``: 0 leaves a voxel out (a slice nobody reviewed), more than 1 up-weights
it (a voxel a person corrected). The focal term is then the weighted sum over the voxels of weight > 0 divided
by their number (so weight 1 everywhere equals the unweighted loss); the Dice term counts only voxels of
weight > 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ctseg_core.labels import NUM_CLASSES

LOSSES = ("focal", "dice", "focal_dice")


def class_weights_from_labels(label_arrays_or_counts, num_classes: int = NUM_CLASSES, power: float = 0.5,
                              max_ratio: float = 100.0) -> np.ndarray:
    """Per-class weights from label frequencies: ``(1 / frequency) ** power``, scaled to mean 1
    over the classes present.

    ``label_arrays_or_counts`` is either an iterable of label arrays (any shape) or a 1-D sequence of
    voxel counts per class. ``power`` 1 is plain inverse frequency, 0.5 its square root (the default:
    lesions are 10^3-10^5 times rarer than background and plain inverse frequency makes training
    unstable). Weights are capped at ``max_ratio`` times the smallest; absent classes get the cap.
    """
    counts = _class_counts(label_arrays_or_counts, num_classes)
    freq = counts / max(counts.sum(), 1.0)
    weights = np.zeros(num_classes, dtype=np.float64)
    present = freq > 0
    if not present.any():
        return np.ones(num_classes, dtype=np.float32)
    weights[present] = freq[present] ** -power
    cap = weights[present].min() * max_ratio
    weights = np.where(present, np.minimum(weights, cap), cap)
    return (weights / weights[present].mean()).astype(np.float32)


def _class_counts(label_arrays_or_counts, num_classes: int) -> np.ndarray:
    """Voxel counts per class from a counts vector, one label array, or an iterable of label arrays.

    A 1-D sequence of numbers is taken as counts unless it is uint8 (the label map type)."""
    x = label_arrays_or_counts
    if isinstance(x, np.ndarray) or (isinstance(x, (list, tuple)) and x and np.isscalar(x[0])):
        arr = np.asarray(x)
        if arr.ndim == 1 and arr.dtype != np.uint8:
            if arr.size != num_classes:
                raise ValueError(f"expected {num_classes} class counts, got {arr.size}")
            return arr.astype(np.float64)
        x = [arr]
    counts = np.zeros(num_classes, dtype=np.float64)
    for arr in x:
        arr = np.asarray(getattr(arr, "array", arr))
        counts += np.bincount(arr.ravel().astype(np.int64), minlength=num_classes)[:num_classes]
    return counts


def _as_channel_target(target: torch.Tensor) -> torch.Tensor:
    return target.unsqueeze(1) if target.ndim == 3 else target


def _no_voxels(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0  # nothing to learn from (keeps the graph)


class FocalLoss(nn.Module):
    """Class-weighted softmax focal loss (MONAI ``FocalLoss``), optionally voxel-weighted."""

    def __init__(self, class_weights=None, gamma: float = 2.0):
        super().__init__()
        from monai.losses import FocalLoss as MonaiFocal

        weight = None if class_weights is None else torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)
        self.loss = MonaiFocal(include_background=True, to_onehot_y=True, gamma=gamma, weight=weight,
                               use_softmax=True, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        per_voxel = self.loss(logits.float(), _as_channel_target(target)).mean(dim=1)  # (N, H, W)
        if weight is None:
            return per_voxel.mean()
        weight = weight.to(per_voxel.dtype)
        n = (weight > 0).sum()
        if int(n) == 0:
            return _no_voxels(logits)
        return (per_voxel * weight).sum() / n


class DiceLoss(nn.Module):
    """Soft Dice over the lesion classes present in the batch's target, pooled over the batch (MONAI
    ``DiceLoss`` on softmax probabilities). Classes absent from the target are left out: their Dice can only
    be 0 or undefined, and with few lesion classes per batch they would swamp the loss (false positives of
    absent classes are the focal loss's job). Voxels of weight 0 are left out."""

    def __init__(self):
        super().__init__()
        from monai.losses import DiceLoss as MonaiDice

        self.loss = MonaiDice(include_background=False, to_onehot_y=False, softmax=False, batch=True,
                              reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        target = _as_channel_target(target).long()
        probs = torch.softmax(logits.float(), dim=1)
        onehot = torch.zeros_like(probs).scatter_(1, target, 1.0)
        if weight is not None:
            keep = (_as_channel_target(weight) > 0).to(probs.dtype)
            probs, onehot = probs * keep, onehot * keep
        per_class = self.loss(probs, onehot).reshape(-1)  # classes 1..C-1
        present = onehot.sum(dim=(0, 2, 3))[1:] > 0
        if not bool(present.any()):
            return _no_voxels(logits)  # no lesion in the batch: no Dice term
        return per_class[present].mean()


class FocalDiceLoss(nn.Module):
    """Class-weighted focal loss + Dice loss."""

    def __init__(self, class_weights=None, gamma: float = 2.0, dice_weight: float = 1.0):
        super().__init__()
        self.focal = FocalLoss(class_weights, gamma)
        self.dice = DiceLoss()
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return self.focal(logits, target, weight) + self.dice_weight * self.dice(logits, target, weight)


def create_loss(name: str = "focal_dice", class_weights=None, gamma: float = 2.0) -> nn.Module:
    """A loss by name: ``focal``, ``dice`` or ``focal_dice``."""
    if name == "focal":
        return FocalLoss(class_weights, gamma)
    if name == "dice":
        return DiceLoss()
    if name == "focal_dice":
        return FocalDiceLoss(class_weights, gamma)
    raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")
