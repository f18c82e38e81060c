"""The fine-tuning recipe (the paper's defaults) and the choice of strategy for the hardware found.

Paper recipe: class-weighted focal loss (weights from class frequencies), AdamW, a cyclic learning
rate, bf16 mixed precision on CUDA, augmentation (rotation, crop, flip, contrast/brightness),
gradient accumulation for small memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

STRATEGIES = ("full", "decoder")
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class Augmentation:
    rotate_deg: float = 15.0  # random in-plane rotation, +-degrees
    zoom: float = 0.15  # random zoom in/out (a zoom-in is a random crop resized to the input size)
    translate_frac: float = 0.05  # random shift, fraction of the image side
    flip_prob: float = 0.5  # left-right flip
    contrast: float = 0.1  # random intensity scale factor range +-
    brightness: float = 0.1  # random intensity shift range +- (in normalised units)
    prob: float = 0.8  # probability of the spatial and each intensity transform


@dataclass(frozen=True)
class Recipe:
    strategy: str = "full"  # "full" or "decoder" (frozen encoder)
    steps: int | None = None  # optimizer steps; when None, derived from epochs
    epochs: float = 5.0  # passes over the training slices (used when steps is None)
    batch_size: int = 8  # samples per micro-batch per process
    accumulate: int = 1  # micro-batches per optimizer step
    lr: float = 3e-4  # peak learning rate of the cycle
    base_lr: float = 3e-5  # floor of the cycle
    cycle_steps: int = 100  # steps of one half-cycle (CyclicLR step_size_up)
    weight_decay: float = 1e-4
    loss: str = "focal"  # ctseg_core.losses.create_loss name; the paper's class-weighted focal loss
    optimizer: str = "adamw"  # "adamw" with the cyclic rate; "sgd": momentum 0.9, rate /10 at 1/3 and 2/3 (RADnet)
    focal_gamma: float = 2.0
    lesion_fraction: float = 0.5  # share of sampled slices that contain a lesion (over-sampling)
    unreviewed: str = "ignore"  # slices nobody reviewed: "ignore" (no loss) or "train" (the final map as truth)
    corrected_weight: float = 3.0  # loss weight of a voxel a person corrected (docs/learning.md: the experiment)
    val_fraction: float = 0.25  # share of cases held out for validation when none are named
    checkpoint_every: int = 50  # steps between training-state saves (for --resume)
    mixed_precision: bool = True  # bf16 autocast where the device supports it (CUDA)
    channels_last: bool | None = None  # None: on GPUs, off on CPU (slower there with GroupNorm)
    compile: bool = False  # torch.compile the model (GPU runs)
    num_workers: int = 0  # DataLoader worker processes
    augment: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.batch_size < 1 or self.accumulate < 1:
            raise ValueError("batch_size and accumulate must be at least 1")
        if self.unreviewed not in ("ignore", "train"):
            raise ValueError(f"unreviewed must be 'ignore' or 'train', got {self.unreviewed!r}")
        if not self.corrected_weight > 0:
            raise ValueError(f"corrected_weight must be positive, got {self.corrected_weight}")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    def total_steps(self, num_train_slices: int, world_size: int = 1) -> int:
        """Optimizer steps of the run: ``steps``, or ``epochs`` passes over the training slices."""
        if self.steps is not None:
            return self.steps
        per_step = self.batch_size * self.accumulate * world_size
        return max(1, math.ceil(self.epochs * num_train_slices / per_step))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Recipe":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("augment"), dict):
            values["augment"] = Augmentation(**values["augment"])
        return cls(**values)


def default_strategy(device) -> tuple[str, str]:
    """The strategy that suits ``device`` and the reason, in words the app can show."""
    kind = getattr(device, "type", str(device)).split(":")[0]
    if kind == "cuda":
        return "full", "a CUDA GPU was found: full fine-tune of encoder and decoder with bf16 mixed precision"
    if kind == "mps":
        return "full", "an Apple GPU was found: full fine-tune of encoder and decoder"
    return "decoder", ("no GPU was found: decoder-only fine-tune (the encoder stays frozen), "
                       "which keeps a CPU run to minutes")
