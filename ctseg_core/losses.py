"""Training losses: the paper's class-weighted focal loss, Dice, and their sum (MONAI implementations);
FocusNet++'s hybrid loss; the exponentially weighted cross-entropy used with RSANet; RADnet's loss.

Every loss here takes logits ``(N, C, H, W)``, targets of class indices ``(N, H, W)`` or ``(N, 1, H, W)`` and
optionally a voxel weight ``(N, H, W)``: 0 leaves a voxel out (a slice nobody reviewed), more than 1 up-weights
it (a voxel a person corrected). The focal term is then the weighted sum over the voxels of weight > 0 divided
by their number (so weight 1 everywhere equals the unweighted loss); the Dice term counts only voxels of
weight > 0. ``RadnetLoss`` takes the slice-triage model's
outputs (``ctseg_core.models.radnet``); any segmentation loss here trains any segmentation model (``--loss``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ctseg_core.labels import NUM_CLASSES

LOSSES = ("focal", "dice", "focal_dice", "hybrid", "exp_ce")


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


def _one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    target = target[:, 0] if target.ndim == 4 else target
    return torch.nn.functional.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()


def _present_lesion_classes(onehot: torch.Tensor) -> torch.Tensor:
    return onehot[:, 1:].sum(dim=(0, 2, 3)) > 0


class BalancedCrossEntropy(nn.Module):
    """Cross-entropy with each class weighted by 1 - its share of the batch's voxels (HED's balanced
    cross-entropy, beta = |negatives| / |all| for the positives, for several classes)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target[:, 0] if target.ndim == 4 else target
        counts = torch.bincount(target.reshape(-1).long(), minlength=logits.shape[1]).float()
        weight = 1.0 - counts / counts.sum()
        per_voxel = torch.nn.functional.cross_entropy(logits, target.long(), reduction="none")
        w = weight[target.long()]
        return (w * per_voxel).sum() / w.sum().clamp_min(1e-6)


class TverskyLoss(nn.Module):
    """1 - Tversky index per lesion class present in the batch (softmax, voxels pooled over the batch),
    averaged; ``alpha`` weighs false negatives, 1 - alpha false positives (FocusNet++'s code: 0.7)."""

    def __init__(self, alpha: float = 0.7, smooth: float = 1.0):
        super().__init__()
        self.alpha, self.smooth = alpha, smooth

    def per_class(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 - Tversky index of each lesion class, which lesion classes the target holds)."""
        p = torch.softmax(logits.float(), dim=1)[:, 1:]
        onehot = _one_hot(target, logits.shape[1])
        present = _present_lesion_classes(onehot)
        t = onehot[:, 1:]
        tp, fn, fp = (p * t).sum(dim=(0, 2, 3)), ((1 - p) * t).sum(dim=(0, 2, 3)), (p * (1 - t)).sum(dim=(0, 2, 3))
        index = (tp + self.smooth) / (tp + self.alpha * fn + (1 - self.alpha) * fp + self.smooth)
        return 1 - index, present

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss, present = self.per_class(logits, target)
        return loss[present].mean() if bool(present.any()) else logits.sum() * 0.0


def adaptive_log(x: torch.Tensor, omega: float = 0.5, epsilon: float = 0.1) -> torch.Tensor:
    """The adaptive logarithmic loss of a loss value ``x`` >= 0: omega * ln(1 + x / epsilon) below omega
    (steep near 0: small remaining errors keep a large gradient), linear above it (x - C, continuous)."""
    c = omega - omega * torch.log1p(torch.tensor(omega / epsilon))
    return torch.where(x < omega, omega * torch.log1p(x / epsilon), x - c)


class HybridLoss(nn.Module):
    """FocusNet++'s hybrid loss: balanced cross-entropy + Tversky loss + the adaptive logarithmic loss of
    the Tversky loss of each class."""

    def __init__(self, alpha: float = 0.7, omega: float = 0.5, epsilon: float = 0.1):
        super().__init__()
        self.bce, self.tversky = BalancedCrossEntropy(), TverskyLoss(alpha)
        self.omega, self.epsilon = omega, epsilon

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tl, present = self.tversky.per_class(logits, target)
        bce = self.bce(logits, target)
        if not bool(present.any()):
            return bce
        tl = tl[present]
        return bce + tl.mean() + adaptive_log(tl, self.omega, self.epsilon).mean()


class ExpCrossEntropy(nn.Module):
    """Exponentially weighted cross-entropy: mean of w_c * (-ln p_c) ** gamma over voxels of class c, with
    class weights w_c (``class_weights_from_labels``: (1 / frequency) ** 0.5, the weighting of Wong et
    al.'s exponential logarithmic loss) and gamma < 1, which lifts the loss of well classified voxels
    less than plain cross-entropy does and so keeps hard voxels in focus."""

    def __init__(self, class_weights=None, gamma: float = 0.3):
        super().__init__()
        weight = None if class_weights is None else torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)
        self.register_buffer("weight", weight if weight is not None else torch.ones(0))
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = (target[:, 0] if target.ndim == 4 else target).long()
        ce = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none").clamp_min(1e-4)
        loss = ce ** self.gamma
        if self.weight.numel():
            loss = loss * self.weight.to(loss.device)[target]
        return loss.mean()


class RadnetLoss(nn.Module):
    """RADnet's loss: cross-entropy of each slice's "hemorrhage" call plus ``aux_weight`` times the
    pixel cross-entropy of each of the three auxiliary maps against the hemorrhage mask.

    Outputs: the model's training dict ({"slice_logits": (B, S), "aux": [(B, S, H, W)] * 3});
    targets: {"slice": (B, S) 0/1, "mask": (B, S, H, W) 0/1}."""

    def __init__(self, aux_weight: float = 0.5):
        super().__init__()
        self.aux_weight = aux_weight

    def forward(self, outputs: dict, target: dict) -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        loss = bce(outputs["slice_logits"].float(), target["slice"].float())
        for aux in outputs.get("aux", []):
            loss = loss + self.aux_weight * bce(aux.float(), target["mask"].float())
        return loss


def create_loss(name: str = "focal_dice", class_weights=None, gamma: float = 2.0) -> nn.Module:
    """A segmentation loss by name (``LOSSES``): ``focal``, ``dice``, ``focal_dice``, ``hybrid``
    (FocusNet++) or ``exp_ce`` (exponentially weighted cross-entropy)."""
    if name == "focal":
        return FocalLoss(class_weights, gamma)
    if name == "dice":
        return DiceLoss()
    if name == "focal_dice":
        return FocalDiceLoss(class_weights, gamma)
    if name == "hybrid":
        return HybridLoss()
    if name == "exp_ce":
        return ExpCrossEntropy(class_weights)
    raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")
