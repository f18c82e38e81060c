"""Training samples of consecutive slices from the case cache, beside the crop sampler (``crops``):

- ``SlabSampler`` (slab models, RSANet): K consecutive slices cropped in-plane, ``image`` (N, K, P, P) and
  ``label`` (N, K, P, P). Where to crop is drawn as for single-slice crops (lesion, hard negative or random
  centres at the configured rates); the slab holds the centre slice and stays inside the scan. The whole
  slab is rotated, zoomed and flipped as one.
- ``ScanSampler`` (scan models, RADnet): runs of S consecutive whole slices of a case, each slice the
  plan's stack of adjacent slices: ``image`` (B, S, C, H, W), targets ``slice`` (B, S) (1 where the slice
  holds any hemorrhage) and ``mask`` (B, S, H, W) (the hemorrhage mask). Slices are padded or cropped
  (centred) to ``size`` so that scans of any size batch together; rotation and flip are the same for all
  slices of a run (RADnet's augmentation).
Both draw everything for optimizer step ``s`` from a generator seeded with ``(seed, stream, s)``, as the
crop sampler does, so a resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctseg_core.preprocess import stack_indices
from ctseg_core.training.case_cache import CacheEntry
from ctseg_core.training.crops import CropAugment, CropPick, CropSampler, _rotate_zoom, _window, augmented


def run_indices(centre: int, depth: int, length: int) -> np.ndarray:
    """``length`` consecutive slice indices holding ``centre``, shifted to stay inside 0..depth-1 (the
    edge slice repeats when the scan has fewer slices)."""
    start = min(max(centre - length // 2, 0), max(depth - length, 0))
    return np.clip(np.arange(start, start + length), 0, depth - 1)


class SlabSampler(CropSampler):
    """Crops of ``slices`` consecutive slices (module docstring)."""

    def __init__(self, entries: list[CacheEntry], patch: int, slices: int, rates=None,
                 augment: CropAugment | None = CropAugment(), pad_value: float = 0.0):
        kw = {} if rates is None else {"rates": rates}
        super().__init__(entries, patch, augment=augment, adjacent_slices=1, pad_value=pad_value, **kw)
        self.slices = int(slices)

    def crop(self, pick: CropPick, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (K, P, P) float32, labels (K, P, P) int64) around ``pick``, augmented."""
        entry, aug = self.entries[pick.entry], self.augment
        geometric = aug is not None and rng.random() < aug.prob
        size = int(np.ceil(self.patch * 1.5)) if geometric else self.patch
        zs = run_indices(pick.centre[0], entry.x.shape[0], self.slices)
        x = _window(entry.x, zs, pick.centre[1:], size, self.pad_value)
        y = _window(entry.y, zs, pick.centre[1:], size, 0)
        return augmented(x, y, self.patch, rng, aug, geometric)


@dataclass(frozen=True)
class ScanAugment:
    """RADnet's augmentation: in-plane rotation and left-right flip, the same for every slice of a run."""

    rotate_deg: float = 15.0
    flip_prob: float = 0.5
    prob: float = 0.8  # probability of the rotation

    def as_crop_augment(self) -> CropAugment:
        return CropAugment(rotate_deg=self.rotate_deg, zoom=0.0, flip_prob=self.flip_prob, contrast=0.0,
                           brightness=0.0, noise_max=0.0, prob=self.prob)


class ScanSampler:
    """Runs of consecutive whole slices for scan models (module docstring)."""

    def __init__(self, entries: list[CacheEntry], slices: int, size: int, adjacent_slices: int = 3,
                 pad_value: float = 0.0, augment: ScanAugment | None = ScanAugment(), positive_rate: float = 0.5):
        if not entries:
            raise ValueError("no cached cases to sample from")
        self.entries, self.slices, self.size = entries, int(slices), int(size)
        self.adjacent, self.pad_value, self.augment = adjacent_slices, float(pad_value), augment
        self.positive_rate = positive_rate
        self.positive = [i for i, e in enumerate(entries) if any(k.startswith("class_") and len(v)
                                                                 for k, v in e.centres.items())]

    def pick(self, rng: np.random.Generator) -> tuple[int, int]:
        """(entry, centre slice): a case with hemorrhage and a slice of a lesion at ``positive_rate``,
        otherwise any case and any slice."""
        if self.positive and rng.random() < self.positive_rate:
            entry = self.positive[int(rng.integers(len(self.positive)))]
            centres = np.concatenate([v for k, v in self.entries[entry].centres.items()
                                      if k.startswith("class_") and len(v)])
            return entry, int(centres[int(rng.integers(len(centres)))][0])
        entry = int(rng.integers(len(self.entries)))
        return entry, int(rng.integers(self.entries[entry].x.shape[0]))

    def sample(self, entry_index: int, centre: int, rng: np.random.Generator):
        """(input (S, C, size, size), slice targets (S,), masks (S, size, size)) of one run."""
        entry = self.entries[entry_index]
        depth, h, w = entry.x.shape
        zs = run_indices(centre, depth, self.slices)
        stacks = np.concatenate([stack_indices(int(z), depth, self.adjacent) for z in zs])
        mid = (h // 2, w // 2)
        x = torch.from_numpy(_window(entry.x, stacks, mid, self.size, self.pad_value).astype(np.float32))
        y = torch.from_numpy(_window(entry.y, zs, mid, self.size, 0).astype(np.int64))
        aug = self.augment
        if aug is not None and rng.random() < aug.prob:
            x, y = _rotate_zoom(x, y, self.size, rng, aug.as_crop_augment())
        if aug is not None and rng.random() < aug.flip_prob:
            x, y = x.flip(-1), y.flip(-1)
        mask = (y > 0).float()
        x = x.reshape(len(zs), self.adjacent, self.size, self.size)
        return x.contiguous(), (mask.flatten(1).amax(dim=1)), mask.contiguous()

    def batch(self, seed: int, step: int, batch_size: int, stream: int = 0) -> dict:
        """The micro-batch of optimizer step ``step``: ``image`` (B, S, C, H, W) and ``label`` = {"slice":
        (B, S), "mask": (B, S, H, W)}."""
        rng = np.random.default_rng([seed, stream, step])
        runs = [self.sample(*self.pick(rng), rng) for _ in range(batch_size)]
        return {"image": torch.stack([r[0] for r in runs]),
                "label": {"slice": torch.stack([r[1] for r in runs]), "mask": torch.stack([r[2] for r in runs])}}
