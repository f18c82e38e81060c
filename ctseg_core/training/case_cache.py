"""A disk cache of generated head CTs on a model's grid, for patch training that never waits for data.

Each entry is what the predictor would feed the model for every slice of one generated case: the
plan's intensity map applied to the HU volume, resampled in-plane to the plan's spacing and padded
(``Plan.grid(...).to_model``, the same code as inference), stored as float16; the labels on the same
grid (nearest); and the centres a crop sampler draws from: voxels of each lesion class and of each
*hard-negative* category (normal anatomy that looks like blood on CT: the generator's
``hard_negative_categories``, e.g. the inner-table rim, ventricles, falx and sinuses, skull base,
calcifications, scalp haematoma, postoperative air).

An entry is a folder ``<cache>/<name>/`` with ``x.npy``, ``y.npy`` (memory-mapped by readers: a crop
touches only its own pages), ``centres.npz`` and ``meta.json``; it is written to a temporary folder
and renamed, so a reader never sees half an entry. Entries are built by ``build_entries`` (``ctseg
pretrain-cache``), typically in a background process beside a training run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from ctseg_core.labels import NUM_CLASSES
from ctseg_core.preprocess import Plan

CACHE_FORMAT = 1
MAX_CENTRES = 384  # centres kept per class / category per case

@dataclass
class CacheEntry:
    """One cached case, memory-mapped."""

    path: Path
    x: np.ndarray  # float16 (z, H, W): plan input on the model grid
    y: np.ndarray  # uint8 (z, H, W): labels on the model grid
    centres: dict[str, np.ndarray]  # "class_<id>" / "neg_<category>" / "head" -> (k, 3) int16 (z, y, x)
    meta: dict

    @classmethod
    def open(cls, path: str | Path) -> "CacheEntry":
        path = Path(path)
        with np.load(path / "centres.npz") as c:
            centres = {k: c[k] for k in c.files}
        return cls(path, np.load(path / "x.npy", mmap_mode="r"), np.load(path / "y.npy", mmap_mode="r"), centres,
                   json.loads((path / "meta.json").read_text()))


def list_entries(cache_dir: str | Path) -> list[Path]:
    """Complete entries of a cache folder, sorted by name (temporary folders of writers are skipped)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "meta.json").is_file())


def _centres(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if len(idx) > MAX_CENTRES:
        idx = rng.choice(idx, MAX_CENTRES, replace=False)
    return np.stack(np.unravel_index(np.sort(idx), mask.shape), axis=1).astype(np.int16)


def to_model_grid(hu: np.ndarray, labels: np.ndarray, extra: np.ndarray, spacing_yx, plan: Plan):
    """(input float16, labels uint8, extra uint8) of a whole volume on the plan's model grid."""
    grid = plan.grid(hu.shape[1:], spacing_yx)
    with torch.inference_mode():
        x = grid.to_model(torch.from_numpy(plan.map_intensity(hu))[:, None])[:, 0]
        y = grid.labels_to_model(torch.from_numpy(np.ascontiguousarray(labels)))
        e = grid.labels_to_model(torch.from_numpy(np.ascontiguousarray(extra)))
    return x.to(torch.float16).numpy(), y.to(torch.uint8).numpy(), e.to(torch.uint8).numpy()


def negative_map(case) -> tuple[np.ndarray, list[str]]:
    """uint8 (z, y, x): 1 + the index of the case's hard-negative category (``hard_negative_categories``
    of the generator: normal anatomy that looks like blood, never labelled), 0 elsewhere; and the names.
    Where categories overlap the later one wins."""
    from ctseg_core.synth import hard_negative_categories

    masks = hard_negative_categories(case)
    names = list(masks)
    out = np.zeros(case.labels.array.shape, np.uint8)
    for i, name in enumerate(names):
        out[masks[name]] = i + 1
    return out, names


def write_entry(cache_dir: str | Path, name: str, case, plan: Plan, meta: dict, seed: int = 0) -> Path:
    """Put one generated case into the cache (atomically: a temporary folder renamed into place)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    neg, categories = negative_map(case)
    x, y, neg = to_model_grid(case.volume.array, case.labels.array, neg, case.volume.spacing[1:], plan)
    rng = np.random.default_rng(seed)
    centres = {f"class_{c}": _centres(y == c, rng) for c in range(1, NUM_CLASSES)}
    centres.update({f"neg_{n}": _centres(neg == i + 1, rng) for i, n in enumerate(categories)})
    centres["head"] = _centres(x > plan.pad_value + 0.02, rng)
    full_meta = {"format": CACHE_FORMAT, "plan": plan.to_dict(), "shape": list(x.shape),
                 "classes": sorted(int(c) for c in np.unique(y) if c), "negative_categories": categories, **meta}
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_dir))
    try:
        np.save(tmp / "x.npy", x)
        np.save(tmp / "y.npy", y)
        np.savez(tmp / "centres.npz", **centres)
        (tmp / "meta.json").write_text(json.dumps(full_meta))
        final = cache_dir / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _note_cost(entry: Path, cpu_s: float) -> None:
    """Record in the entry's meta the CPU seconds it took to make (the data cost of a training run)."""
    meta = json.loads((entry / "meta.json").read_text())
    meta["cpu_s"] = round(cpu_s, 3)
    (entry / "meta.json").write_text(json.dumps(meta))


def check_plan(cache_dir: str | Path, plan: Plan) -> None:
    """Raise ``ValueError`` when an entry of the cache was made with another plan (other input)."""
    entries = list_entries(cache_dir)
    if entries:
        theirs = json.loads((entries[0] / "meta.json").read_text())["plan"]
        mine = plan.to_dict()
        keys = ("intensity", "spacing_mm", "spacing_tolerance", "size_multiple")
        if any(theirs.get(k) != mine.get(k) for k in keys):
            raise ValueError(f"cache {cache_dir} was built for another plan ({theirs}); use a new folder")


def build_entries(cache_dir: str | Path, seeds: Iterable[int], plan: Plan,
                  make_case: Callable[[int], object], progress: Callable[[str], None] | None = None) -> int:
    """Generate and cache the cases of ``seeds`` that are not cached yet; returns how many were added."""
    check_plan(cache_dir, plan)
    have = {p.name for p in list_entries(cache_dir)}
    added = 0
    for seed in seeds:
        name = f"seed{seed:08d}"
        if name in have:
            continue
        t0 = time.process_time()
        case = make_case(seed)
        meta = {"seed": int(seed), "source": "ctseg_core.synth", "params": case.params,
                "spacing_zyx": list(case.volume.spacing), "lesions": [les.get("cls") for les in case.lesions]}
        write_entry(cache_dir, name, case, plan, meta, seed)
        _note_cost(Path(cache_dir) / name, time.process_time() - t0)
        added += 1
        if progress:
            progress(f"cached {name} ({case.volume.shape[0]} slices)")
    return added
