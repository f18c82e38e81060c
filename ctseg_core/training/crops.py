"""Patch sampling for training on cached cases (nnU-Net style): square crops of the model grid,
centred on a lesion, on a hard negative (normal anatomy that looks like blood), or anywhere in the head.

Rates are per sample: ``lesion`` of the crops are centred near a voxel of a lesion class (the class
drawn uniformly among the classes the cache holds, so rare classes are seen as often as common ones),
``hard_negative`` near a voxel of a hard-negative category of the cache (drawn uniformly too), the rest
near a random voxel of the head. Everything drawn for optimizer step ``s`` comes from a generator
seeded with ``(seed, s)``, so a resumed run sees exactly the crops an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ctseg_core.preprocess import stack_indices
from ctseg_core.training.case_cache import CacheEntry

KINDS = ("lesion", "hard_negative", "random")


@dataclass(frozen=True)
class CropRates:
    lesion: float = 0.5
    hard_negative: float = 0.3  # the rest: random head voxels

    def __post_init__(self):
        if self.lesion < 0 or self.hard_negative < 0 or self.lesion + self.hard_negative > 1:
            raise ValueError(f"crop rates must be >= 0 and sum to at most 1, got {self}")


@dataclass(frozen=True)
class CropAugment:
    """Cheap augmentation of a crop: rotation, zoom, left-right flip (geometry, one resampling), and a
    small contrast/brightness change and noise on the network input (0..1 units of the plan's map)."""

    rotate_deg: float = 15.0
    zoom: float = 0.12
    flip_prob: float = 0.5
    contrast: float = 0.05
    brightness: float = 0.02
    noise_max: float = 0.01  # std of added Gaussian noise, drawn up to this (0.01 = 2 HU in the soft-tissue band)
    prob: float = 0.8  # probability of the rotation/zoom and of each intensity change


@dataclass
class CropPick:
    kind: str
    entry: int
    centre: tuple[int, int, int]  # (z, y, x) on the entry's grid
    detail: str  # the class ("class_3") or category ("neg_csf") aimed at; "head" for random crops


class CropSampler:
    def __init__(self, entries: list[CacheEntry], patch: int, rates: CropRates = CropRates(),
                 augment: CropAugment | None = CropAugment(), adjacent_slices: int = 3, pad_value: float = 0.0):
        if not entries:
            raise ValueError("no cached cases to sample from")
        self.entries, self.patch, self.rates, self.augment = entries, int(patch), rates, augment
        self.adjacent, self.pad_value = adjacent_slices, float(pad_value)
        self.by_key: dict[str, list[int]] = {}
        for i, e in enumerate(entries):
            for key, c in e.centres.items():
                if len(c):
                    self.by_key.setdefault(key, []).append(i)
        self.lesion_keys = sorted(k for k in self.by_key if k.startswith("class_"))
        self.negative_keys = sorted(k for k in self.by_key if k.startswith("neg_"))

    # ---- what to crop -----------------------------------------------------------------------------------
    def pick(self, rng: np.random.Generator) -> CropPick:
        u = rng.random()
        if u < self.rates.lesion and self.lesion_keys:
            kind, keys = "lesion", self.lesion_keys
        elif u < self.rates.lesion + self.rates.hard_negative and self.negative_keys:
            kind, keys = "hard_negative", self.negative_keys
        else:
            kind, keys = "random", ["head"]
        key = keys[int(rng.integers(len(keys)))]
        holders = self.by_key.get(key) or list(range(len(self.entries)))
        entry = holders[int(rng.integers(len(holders)))]
        centres = self.entries[entry].centres.get(key)
        if centres is None or not len(centres):
            z, y, x = (int(s) // 2 for s in self.entries[entry].x.shape)
        else:
            z, y, x = (int(v) for v in centres[int(rng.integers(len(centres)))])
        jitter = self.patch // (4 if kind == "lesion" else 8)
        y += int(rng.integers(-jitter, jitter + 1))
        x += int(rng.integers(-jitter, jitter + 1))
        return CropPick(kind, entry, (z, y, x), key)

    # ---- the crop itself ----------------------------------------------------------------------------------
    def crop(self, pick: CropPick, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(input (C, P, P) float32, labels (P, P) int64) around ``pick``, augmented."""
        entry = self.entries[pick.entry]
        aug = self.augment
        geometric = aug is not None and rng.random() < aug.prob
        size = int(math.ceil(self.patch * 1.5)) if geometric else self.patch  # room for rotation and zoom-out
        zs = stack_indices(pick.centre[0], entry.x.shape[0], self.adjacent)
        x = _window(entry.x, zs, pick.centre[1:], size, self.pad_value)
        y = _window(entry.y, [pick.centre[0]], pick.centre[1:], size, 0)[0]
        return augmented(x, y, self.patch, rng, aug, geometric)

    def batch(self, seed: int, step: int, batch_size: int, stream: int = 0) -> dict:
        """The micro-batch of optimizer step ``step``: ``image`` (N, C, P, P), ``label`` (N, P, P), ``kinds``.
        ``stream`` separates other uses of the sampler (e.g. estimating class weights) from training's."""
        rng = np.random.default_rng([seed, stream, step])
        picks = [self.pick(rng) for _ in range(batch_size)]
        pairs = [self.crop(p, rng) for p in picks]
        return {"image": torch.stack([p[0] for p in pairs]), "label": torch.stack([p[1] for p in pairs]),
                "kinds": [p.kind for p in picks], "details": [p.detail for p in picks]}


def _window(arr: np.ndarray, zs, centre_yx, size: int, fill) -> np.ndarray:
    """``arr[zs]`` cropped to ``size`` x ``size`` around ``centre_yx``; outside the array is ``fill``."""
    h, w = arr.shape[1:]
    y0, x0 = centre_yx[0] - size // 2, centre_yx[1] - size // 2
    out = np.full((len(zs), size, size), fill, dtype=arr.dtype)
    sy0, sy1, sx0, sx1 = max(y0, 0), min(y0 + size, h), max(x0, 0), min(x0 + size, w)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = arr[np.asarray(zs)][:, sy0:sy1, sx0:sx1]
    return out


def _rotate_zoom(x: torch.Tensor, y: torch.Tensor, patch: int, rng: np.random.Generator, aug: CropAugment):
    """Rotate and zoom the centre of a larger window into a ``patch`` x ``patch`` crop (one resampling).
    ``x`` (C, S, S) is interpolated, ``y`` (S, S) or (L, S, S) labels are taken nearest; every channel and
    label layer moves the same way."""
    size = x.shape[-1]
    angle = math.radians(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    scale = rng.uniform(1 - aug.zoom, 1 + aug.zoom) * patch / size  # output pixel -> fraction of the window
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, patch, patch], align_corners=False)
    xo = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    layers = y.float().reshape(1, -1, *y.shape[-2:])
    yo = F.grid_sample(layers, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return xo, yo.reshape(*y.shape[:-2], patch, patch).to(torch.int64)


def _intensity(x: torch.Tensor, rng: np.random.Generator, aug: CropAugment) -> torch.Tensor:
    if rng.random() < aug.prob:
        x = x * float(1 + rng.uniform(-aug.contrast, aug.contrast))
    if rng.random() < aug.prob:
        x = x + float(rng.uniform(-aug.brightness, aug.brightness))
    if rng.random() < aug.prob and aug.noise_max > 0:
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        x = x + float(rng.uniform(0, aug.noise_max)) * torch.randn(x.shape, generator=g)
    return x


def augmented(x: np.ndarray, y: np.ndarray, patch: int, rng, aug, geometric: bool):
    """A cut window as tensors (input float32, labels int64): rotated and zoomed to ``patch`` pixels when
    ``geometric`` (the window then has room around the patch), then the intensity change and the left-right
    flip of ``aug`` (None: as cut)."""
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    if geometric:
        xt, yt = _rotate_zoom(xt, yt, patch, rng, aug)
    if aug is not None:
        xt = _intensity(xt, rng, aug)
        if rng.random() < aug.flip_prob:
            xt, yt = xt.flip(-1), yt.flip(-1)
    return xt.contiguous(), yt.contiguous()
