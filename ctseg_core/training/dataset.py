"""Training data from corrected cases: 2.5D slice samples, lesion over-sampling, a split by case.

A *case source* is any iterable of ``(case_id, volume, labels)`` (arrays (z, y, x) or ``Volume`` /
``LabelMap``); ``workspace_cases`` adapts the annotation workspace to it. Samples are built with the
model plan's own ``make_stack`` so training and inference see the same input.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ctseg_core.errors import StoreError

TRAINING_STATUSES = ("corrected", "approved")


@dataclass
class LoadedCase:
    """A training case in memory."""

    case_id: str
    volume: np.ndarray  # HU, float32 (z, y, x); a ``Volume`` is accepted (its spacing is then used)
    labels: np.ndarray  # class ids, uint8 (z, y, x); a ``LabelMap`` is accepted
    spacing_yx: tuple[float, float] | None = None  # in-plane spacing in mm (needed when the plan resamples)

    def __post_init__(self):
        geometry = getattr(self.volume, "geometry", None)
        if self.spacing_yx is None and geometry is not None:
            self.spacing_yx = tuple(geometry.spacing[1:])
        self.spacing_yx = tuple(float(s) for s in (self.spacing_yx or (1.0, 1.0)))
        self.volume = np.asarray(getattr(self.volume, "array", self.volume), dtype=np.float32)
        self.labels = np.asarray(getattr(self.labels, "array", self.labels), dtype=np.uint8)
        if self.volume.shape != self.labels.shape:
            raise StoreError(f"case {self.case_id}: labels {self.labels.shape} do not match the volume "
                             f"{self.volume.shape}")
        self.labels = training_targets(self.labels, self.case_id)


def training_targets(labels: np.ndarray, case_id: str) -> np.ndarray:
    """The label map as training targets (ctseg's classes only): non-hemorrhage review labels (oedema)
    become background; a review label still awaiting assignment (extra-axial blood) refuses the case."""
    from ctseg_core.labels import NUM_CLASSES, REVIEW_CLASSES

    if labels.size == 0 or int(labels.max()) < NUM_CLASSES:
        return labels
    pending = [c for c in REVIEW_CLASSES if c.assign_to and np.any(labels == c.id)]
    if pending:
        c = pending[0]
        raise StoreError(f"case {case_id} still holds {c.name.lower()}: assign it to "
                         f"{', '.join(k.upper() for k in c.assign_to)} before training on it")
    out = labels.copy()
    for c in REVIEW_CLASSES:
        if not c.hemorrhage:
            out[out == c.id] = 0
    if int(out.max()) >= NUM_CLASSES:
        raise StoreError(f"case {case_id}: label value {int(out.max())} is not a training class")
    return out


def load_cases(source: Iterable) -> list[LoadedCase]:
    """Materialise a case source (``LoadedCase`` objects or ``(case_id, volume, labels)`` tuples)."""
    return [c if isinstance(c, LoadedCase) else LoadedCase(*c) for c in source]


def workspace_cases(workspace, statuses: Sequence[str] = TRAINING_STATUSES) -> Iterable[LoadedCase]:
    """The workspace's corrected and approved cases with their final (corrected) label maps."""
    for case in workspace.training_cases(statuses=tuple(statuses)):
        volume = case.load_volume()
        yield LoadedCase(case.case_id, volume, case.load_labels(volume))


def split_cases(case_ids: Sequence[str], val_cases: Sequence[str] | None = None, val_fraction: float = 0.25,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """(train ids, validation ids), split by case, never by slice.

    Named ``val_cases`` are used as given (each must exist); otherwise a seeded random
    ``val_fraction`` of the cases (at least one) is held out. Both sides must be non-empty.
    """
    ids = sorted(case_ids)
    if val_cases:
        unknown = sorted(set(val_cases) - set(ids))
        if unknown:
            raise StoreError(f"validation case(s) not among the training cases: {', '.join(unknown)}")
        val = sorted(set(val_cases))
    else:
        n_val = max(1, round(val_fraction * len(ids)))
        val = sorted(random.Random(seed).sample(ids, min(n_val, len(ids))))
    train = [i for i in ids if i not in set(val)]
    if not train or not val:
        raise StoreError(f"need at least one training and one validation case; have {len(ids)} case(s) "
                         "with status corrected or approved")
    return train, val


class SliceDataset(Dataset):
    """Every axial slice of the given cases as a 2.5D sample ``{"image": (C, H, W), "label": (H, W)}``
    on the model's grid, made by the plan (``Plan.training_pair``) exactly as the predictor makes input.

    Items are addressed by ``(index, seed)``: with an augmenter, the seed drives the sample's
    augmentation; without one (validation) it is ignored.
    """

    def __init__(self, cases: Sequence[LoadedCase], plan, augmenter=None):
        self.cases = list(cases)
        self.plan = plan
        self.augmenter = augmenter
        self.index = [(c, z) for c in range(len(self.cases)) for z in range(self.cases[c].volume.shape[0])]
        self.has_lesion = np.array([bool(self.cases[c].labels[z].any()) for c, z in self.index])

    def __len__(self) -> int:
        return len(self.index)

    def slices_of(self, case_index: int) -> list[int]:
        """Dataset indices of one case's slices, in z order."""
        return [i for i, (c, _) in enumerate(self.index) if c == case_index]

    def __getitem__(self, item) -> dict:
        i, seed = item if isinstance(item, tuple) else (item, 0)
        c, z = self.index[i]
        case = self.cases[c]
        image, label = self.plan.training_pair(case.volume, case.labels, z, case.spacing_yx)
        if self.augmenter is not None:
            image, label = self.augmenter(image, label, seed)
        return {"image": image, "label": label}


def sampling_weights(has_lesion: np.ndarray, lesion_fraction: float) -> np.ndarray:
    """Per-slice weights so that lesion slices make up ``lesion_fraction`` of the draws (when both kinds exist)."""
    has_lesion = np.asarray(has_lesion, dtype=bool)
    n_les, n = int(has_lesion.sum()), len(has_lesion)
    if n_les in (0, n):
        return np.full(n, 1.0 / n)
    return np.where(has_lesion, lesion_fraction / n_les, (1.0 - lesion_fraction) / (n - n_les))


class StepBatchSampler(Sampler):
    """Weighted sampling with replacement, sharded across processes, addressed by optimizer step.

    For optimizer step ``s`` the global draw of ``batch_size * accumulate * world_size`` slices comes
    from a generator seeded with ``(seed, s)``; rank ``r`` takes its own disjoint share and yields it as
    ``accumulate`` micro-batches of ``(index, augmentation seed)``. Because each step's draw depends on
    nothing else, a resumed run at step ``s`` sees exactly the batches an uninterrupted run would.
    (torch's DistributedSampler shards but cannot weight; WeightedRandomSampler weights but cannot
    shard; this does both.)
    """

    def __init__(self, weights: np.ndarray, batch_size: int, accumulate: int, total_steps: int, seed: int,
                 start_step: int = 0, rank: int = 0, world_size: int = 1):
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.batch_size, self.accumulate = batch_size, accumulate
        self.total_steps, self.start_step = total_steps, start_step
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.accumulate

    def draw(self, step: int) -> list[list[tuple[int, int]]]:
        """The micro-batches of this rank for optimizer step ``step``."""
        per_rank = self.batch_size * self.accumulate
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        idx = torch.multinomial(self.weights, per_rank * self.world_size, replacement=True, generator=gen)
        aug = torch.randint(0, 2**31 - 1, (per_rank * self.world_size,), generator=gen)
        mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        pairs = list(zip(idx[mine].tolist(), aug[mine].tolist()))
        return [pairs[k * self.batch_size:(k + 1) * self.batch_size] for k in range(self.accumulate)]

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            yield from self.draw(step)
