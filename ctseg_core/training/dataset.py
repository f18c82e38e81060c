"""Training data from corrected cases: 2.5D slice samples, lesion over-sampling, a split by case.

A *case source* is any iterable of ``(case_id, volume, labels)`` (arrays (z, y, x) or ``Volume`` /
``LabelMap``) or ``LoadedCase`` objects; ``workspace_cases`` adapts the annotation workspace to it. Samples
are built with the model plan's own ``make_stack`` so training and inference see the same input.

**What a person reviewed.** A case read from the workspace knows which of its slices a person reviewed
(``reviewed``: edited, i.e. the corrected map differs from the model's stored prediction there, or
confirmed with the Review menu's "Slice reviewed" key, ``ctseg_core.store.reviewed``) and which voxels
were corrected (``corrected``: final differs from the prediction). A case without a stored prediction was
labelled by a person throughout: all its slices count as reviewed. ``SliceDataset`` with
``unreviewed="ignore"`` (the default) trains only on reviewed slices and gives every voxel a loss weight
(``weight``): 1, or ``corrected_weight`` on a corrected voxel; with ``unreviewed="train"`` every slice of the
final map is taken as truth with weight 1 (plain fine-tuning).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ctseg_core.errors import StoreError
from ctseg_core.store.case import TRAINING_STATUSES  # corrected, adjudicated, approved: a person settled the map
UNREVIEWED = ("ignore", "train")


@dataclass
class LoadedCase:
    """A training case in memory."""

    case_id: str
    volume: np.ndarray  # HU, float32 (z, y, x); a ``Volume`` is accepted (its spacing is then used)
    labels: np.ndarray  # class ids, uint8 (z, y, x); a ``LabelMap`` is accepted
    spacing_yx: tuple[float, float] | None = None  # in-plane spacing in mm (needed when the plan resamples)
    reviewed: np.ndarray | None = None  # bool (z,): slices a person reviewed; None = all
    corrected: np.ndarray | None = None  # bool (z, y, x): voxels a person changed from the prediction; None = none
    scan_hash: str = ""  # content hash of the source scan (the workspace's), for the model card

    def __post_init__(self):
        from ctseg_core.volume import Volume

        geometry = getattr(self.volume, "geometry", None)
        if self.spacing_yx is None and geometry is not None:
            self.spacing_yx = tuple(geometry.spacing[1:])
        self.spacing_yx = tuple(float(s) for s in (self.spacing_yx or (1.0, 1.0)))
        array = np.asarray(getattr(self.volume, "array", self.volume), dtype=np.float32)
        self.scan = self.volume if isinstance(self.volume, Volume) else Volume.from_array(
            array, spacing=(1.0, *self.spacing_yx))  # what the predictor is given when the case is scored
        self.volume = array
        self.labels = np.asarray(getattr(self.labels, "array", self.labels), dtype=np.uint8)
        if self.volume.shape != self.labels.shape:
            raise StoreError(f"case {self.case_id}: labels {self.labels.shape} do not match the volume "
                             f"{self.volume.shape}")
        self.labels = training_targets(self.labels, self.case_id)
        if self.reviewed is not None:
            self.reviewed = np.asarray(self.reviewed, bool)
        if not self.scan_hash:
            self.scan_hash = hashlib.sha256(np.ascontiguousarray(self.volume).tobytes()).hexdigest()[:16]

    @property
    def labels_hash(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.labels).tobytes()).hexdigest()[:16]

    def hashes(self) -> dict:
        return {"scan": self.scan_hash, "labels": self.labels_hash}

    def reviewed_slices(self) -> np.ndarray:
        """bool (z,): the reviewed slices (all when unknown)."""
        return np.ones(self.volume.shape[0], bool) if self.reviewed is None else self.reviewed

    def lesion_keys(self) -> set[str]:
        from ctseg_core.labels import LESION_CLASSES

        present = np.bincount(self.labels.ravel(), minlength=len(LESION_CLASSES) + 1)
        return {c.key for c in LESION_CLASSES if present[c.id]}


def review_masks(final: np.ndarray, prediction: np.ndarray | None,
                 confirmed: Iterable[int] = ()) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(reviewed slices bool (z,), corrected voxels bool (z, y, x)) of a case; (None, None) when it has no
    stored prediction (labelled by a person throughout)."""
    if prediction is None or prediction.shape != final.shape:
        return None, None
    corrected = final != prediction
    reviewed = corrected.any(axis=(1, 2))
    for z in confirmed:
        if 0 <= int(z) < len(reviewed):
            reviewed[int(z)] = True
    return reviewed, corrected


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
    """The workspace's corrected and approved cases with their final (corrected) label maps and what a
    person reviewed in them (module docstring)."""
    from ctseg_core.store.reviewed import confirmed_slices

    for tc in workspace.training_cases(statuses=tuple(statuses)):
        case = tc.case()
        volume = case.load_volume()
        final = case.load_final(volume)
        if final is None:
            raise StoreError("the case has no final label map", tc.final_path)
        prediction = case.load_prediction(volume)
        reviewed, corrected = review_masks(final.array, None if prediction is None else prediction.array,
                                           confirmed_slices(case.folder))
        yield LoadedCase(tc.case_id, volume, final, reviewed=reviewed, corrected=corrected,
                         scan_hash=tc.source.content_hash[:16])


class SliceDataset(Dataset):
    """Axial slices of the given cases as 2.5D samples ``{"image": (C, H, W), "label": (H, W), "weight": (H, W)}``
    on the model's grid, made by the plan (``Plan.training_pair``) exactly as the predictor makes input.

    ``unreviewed="ignore"``: only reviewed slices are samples, corrected voxels weigh ``corrected_weight``;
    ``"train"``: every slice, weight 1. A plan with a ``patch_size`` gets crops of that size (as the model
    was pretrained; the predictor then runs sliding windows): centred on a lesion or corrected voxel two
    times in three when the slice has one, else anywhere.

    Items are addressed by ``(index, seed)``: with an augmenter, the seed drives the sample's
    augmentation and crop; without one it drives the crop only.
    """

    def __init__(self, cases: Sequence[LoadedCase], plan, augmenter=None, unreviewed: str = "train",
                 corrected_weight: float = 1.0):
        if unreviewed not in UNREVIEWED:
            raise ValueError(f"unreviewed must be one of {UNREVIEWED}, got {unreviewed!r}")
        self.cases = list(cases)
        self.plan = plan
        self.augmenter = augmenter
        self.unreviewed, self.corrected_weight = unreviewed, float(corrected_weight)
        self.patch = getattr(plan, "patch_size", None)
        self.index = [(c, z) for c in range(len(self.cases)) for z in range(self.cases[c].volume.shape[0])
                      if unreviewed == "train" or self.cases[c].reviewed_slices()[z]]
        self.has_lesion = np.array([bool(self.cases[c].labels[z].any()) for c, z in self.index], dtype=bool)

    def __len__(self) -> int:
        return len(self.index)

    def slices_of(self, case_index: int) -> list[int]:
        """Dataset indices of one case's slices, in z order."""
        return [i for i, (c, _) in enumerate(self.index) if c == case_index]

    def weight_codes(self, case: LoadedCase, z: int) -> np.ndarray:
        """uint8 (y, x): 0 normal voxel, 1 corrected voxel (padding of the model grid is 0)."""
        if self.unreviewed == "train" or case.corrected is None or self.corrected_weight == 1.0:
            return np.zeros(case.labels.shape[1:], np.uint8)
        return case.corrected[z].astype(np.uint8)

    def __getitem__(self, item) -> dict:
        i, seed = item if isinstance(item, tuple) else (item, 0)
        c, z = self.index[i]
        case = self.cases[c]
        image, label = self.plan.training_pair(case.volume, case.labels, z, case.spacing_yx)
        grid = self.plan.grid(case.volume.shape[1:], case.spacing_yx)
        codes = grid.labels_to_model(torch.from_numpy(self.weight_codes(case, z))[None])[0]
        if self.augmenter is not None:
            image, label, codes = self.augmenter(image, label, seed, codes)
        if self.patch:
            image, label, codes = crop_patch(image, label, codes, self.patch, seed, self.plan.pad_value)
        weight = torch.where(torch.as_tensor(codes) > 0, self.corrected_weight, 1.0).to(torch.float32)
        return {"image": image, "label": torch.as_tensor(label), "weight": weight}


def crop_patch(image, label, codes, patch: int, seed: int, fill: float = 0.0):
    """A ``patch`` x ``patch`` crop of (image (C, H, W), label (H, W), codes (H, W)), padded where the slice is
    smaller: centred on a lesion or corrected voxel 2/3 of the time when there is one, else anywhere."""
    rng = np.random.default_rng([int(seed) % 2**32, 7])
    label, codes = torch.as_tensor(label), torch.as_tensor(codes)
    h, w = label.shape
    target = torch.nonzero((label > 0) | (codes > 0))
    if len(target) and rng.random() < 2 / 3:
        cy, cx = (int(v) for v in target[int(rng.integers(len(target)))])
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0 = min(max(cy - patch // 2, 0), max(h - patch, 0))
    x0 = min(max(cx - patch // 2, 0), max(w - patch, 0))
    ph, pw = max(patch - h, 0), max(patch - w, 0)
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)

    def cut(t, fill):
        t = t[..., y0:y0 + patch, x0:x0 + patch]
        return torch.nn.functional.pad(t, pads, value=fill) if ph or pw else t

    return cut(image, fill).contiguous(), cut(label, 0).contiguous(), cut(codes, 0).contiguous()


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
