"""The training-state file that makes a run resumable after a crash: one safetensors file, no pickle.

Tensors (model weights, optimizer moments, RNG states) are safetensors entries; everything else
(step, scheduler state, optimizer hyper-parameters, the run's configuration, numpy/python RNG
state) is JSON carried in the file's metadata. It is written atomically, so a crash while saving
leaves the previous state intact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ctseg_core.atomic import atomic_write_with
from ctseg_core.checkpoint import check_safetensors_written
from ctseg_core.errors import CheckpointError

STATE_FILE = Path(".training") / "state.safetensors"  # a run's resumable state, under the models folder

META_KEY = "ctseg_training_state"
FORMAT = 1


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, py_gauss = meta["python"]
    random.setstate((version, tuple(state), py_gauss))


def _split_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, entry in state_dict["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(path: str | Path, *, model, optimizer, scheduler, step: int, run: dict) -> None:
    """Write model + optimizer + scheduler + step + RNG states + ``run`` (JSON data) atomically to ``path``."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = _rng_state()
    tensors.update({k: v.detach().contiguous().cpu() for k, v in opt_tensors.items()})
    tensors.update(rng_tensors)
    meta = {"format": FORMAT, "step": int(step), "optimizer": opt_meta, "scheduler": scheduler.state_dict(),
            "rng": rng_meta, "run": run}
    text = json.dumps(meta)  # fails loudly on anything that is not plain JSON data
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata={META_KEY: text}),
                      verify=check_safetensors_written)


def read_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a training-state file; ``CheckpointError`` naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no training state to resume from", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise CheckpointError(f"not a readable ctseg training state ({exc})", path) from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"training state format {meta.get('format')} is not {FORMAT}", path)
    return tensors, meta


def restore_training_state(tensors: dict[str, torch.Tensor], meta: dict, *, model, optimizer, scheduler) -> int:
    """Load a state read by ``read_training_state`` into the objects; returns the step to continue from."""
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    _restore_rng(tensors, meta["rng"])
    return int(meta["step"])


_SCHEDULE_POSITION = ("last_epoch", "_step_count", "_is_initial", "_get_lr_called_within_step", "_last_lr")


def keep_configured_schedule(scheduler, optimizer, configured: dict) -> dict:
    """After ``restore_training_state``: the learning-rate schedule of the run as now configured (its rates,
    cycle, milestones: ``configured`` is the fresh scheduler's ``state_dict()``) at the saved position, so that
    a resumed run with another ``--lr`` runs at that rate instead of silently keeping the saved one. Returns
    the settings that changed, ``{name: [saved, configured]}`` ({} when none did; then nothing moves)."""
    saved = scheduler.state_dict()
    saved_plain = _plain(saved)
    changed = {k: [saved.get(k), v] for k, v in _plain(configured).items()
               if k not in _SCHEDULE_POSITION and saved_plain.get(k) != v}
    scheduler.load_state_dict({**configured, **{k: saved[k] for k in _SCHEDULE_POSITION if k in saved}})
    if changed:
        lrs = (scheduler._get_closed_form_lr() if hasattr(scheduler, "_get_closed_form_lr")
               else _cyclic_lr(scheduler))
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        scheduler._last_lr = list(lrs)
    return changed


def _cyclic_lr(scheduler) -> list[float]:
    """``CyclicLR``'s rate at its current step (its ``get_lr`` is closed-form but warns outside ``step``)."""
    scheduler._get_lr_called_within_step = True
    try:
        return list(scheduler.get_lr())
    finally:
        scheduler._get_lr_called_within_step = False


def _plain(state: dict) -> dict:
    """The state as JSON data (how the state file holds it: a Counter's keys become strings)."""
    return json.loads(json.dumps(state, default=str))
