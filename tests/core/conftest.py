"""Fixtures shared by the core tests: generated scans written as NIfTI, a workspace, a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_core.volume import Volume

TINY_DECODER = (8, 8, 16, 16, 32, 32)  # the decoder widths of every tiny test model


def write_scan(folder, name="head.nii.gz", seed=0, shape=(8, 64, 64)):
    """A small noisy brain-density scan with a blood-density block, written to ``folder/name`` and read
    back: (volume, path)."""
    from ctseg_core.io.images import read_volume, write_volume

    rng = np.random.default_rng(seed)
    arr = rng.normal(30, 10, size=shape).round().astype(np.float32)
    arr[:, 20:40, 20:40] = 65
    vol = Volume.from_array(arr, spacing=(5.0, 0.5, 0.6), origin=(-10.0, 20.0, 30.0))
    path = folder / name
    write_volume(vol, path)
    return read_volume(path), path


@pytest.fixture
def make_scan():
    """``make_scan(folder, name=..., seed=..., shape=...)`` -> (volume, path): see ``write_scan``."""
    return write_scan


@pytest.fixture
def ws(tmp_path):
    from ctseg_core.store import Workspace

    return Workspace(tmp_path / "ws")


def tiny_model(arch="aa_unet", seed=0, encoder="resnest14d"):
    """A small real network with random weights (seeded)."""
    import torch

    from ctseg_core.models import create_model

    torch.manual_seed(seed)
    return create_model(arch, encoder=encoder, decoder_channels=TINY_DECODER)


def save_tiny_checkpoint(folder, name="tiny", arch="aa_unet", seed=0, spacing_mm=None, encoder="resnest14d"):
    """A tiny random-weight checkpoint (X.safetensors + X.json) in ``folder``; returns the weights path."""
    from ctseg_core.checkpoint import ModelCard, save_checkpoint
    from ctseg_core.preprocess import Plan

    model = tiny_model(arch, seed, encoder)
    card = ModelCard.for_model(model, plan=Plan(spacing_mm=spacing_mm).to_dict(),
                               training_data={"description": "nothing (random weights, test)"})
    return save_checkpoint(model, card, folder / name)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """``tiny_checkpoint(name=..., arch=..., seed=..., spacing_mm=...)`` -> a checkpoint under tmp_path."""
    return lambda **kw: save_tiny_checkpoint(tmp_path, **kw)
