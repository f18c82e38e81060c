"""Fixtures shared by the core tests: generated scans written as NIfTI, a workspace, a tiny checkpoint
(the tiny model itself: ``tests/tiny_models.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_core.volume import Volume


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


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """``tiny_checkpoint(name=..., arch=..., seed=..., spacing_mm=...)`` -> a tiny checkpoint under tmp_path."""
    from tiny_models import save_tiny_checkpoint

    return lambda **kw: save_tiny_checkpoint(tmp_path, **kw)
