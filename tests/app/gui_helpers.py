"""GUI test helpers (imported by tests/app): a predictor stub that follows ctseg_core.predictor's contract, a tiny real model,
small volumes with known content, and a main window with throw-away settings."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from ctseg_core.jobs import CancelToken
from ctseg_core.volume import LabelMap, Volume

BLOOD_HU = (50.0, 90.0)


class ThresholdPredictor:
    """Labels blood-density voxels as ``class_id`` (ICH), one slice at a time in the predictor's order, with
    a delay. ``name`` tells two stub models apart (their identity has no weights hash)."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False, class_id: int = 1, name: str = "stub-threshold v0"):
        self.card = SimpleNamespace(summary=lambda: f"{name} — trained on nothing (test stub)")
        self.delay_s, self.fail, self.calls, self.class_id = delay_s, fail, [], class_id

    def predict(self, volume: Volume, start_slice=None, on_slice=None, cancel: CancelToken | None = None,
                progress=None):
        from ctseg_core.predictor import slice_order

        depth = volume.shape[0]
        self.calls.append(start_slice)
        labels = np.zeros(volume.shape, np.uint8)
        for n, z in enumerate(slice_order(depth, start_slice), start=1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if self.fail:
                raise RuntimeError("stub predictor failure")
            time.sleep(self.delay_s)
            hu = volume.array[z]
            blood = (hu >= BLOOD_HU[0]) & (hu <= BLOOD_HU[1])
            labels[z] = blood.astype(np.uint8) * self.class_id
            p1 = blood.astype(np.float16)
            probs = np.zeros((8,) + hu.shape, np.float16)
            probs[0], probs[self.class_id] = 1 - p1 * 0.7, p1 * 0.7  # uncertainty 0.3 on blood
            if on_slice is not None:
                on_slice(z, labels[z], probs)
            if progress is not None:
                progress(n, depth, "")
        return SimpleNamespace(labels=LabelMap(labels, volume.geometry))


def phantom_volume(depth=12, size=128, spacing=(5.0, 0.8, 0.8)) -> Volume:
    """A head-like ellipse (brain 35 HU, skull 1200 HU) with a 70 HU blob on slices 3..8."""
    _, y, x = np.ogrid[:depth, :size, :size]
    c = size / 2
    head = ((y - c) / (0.4 * size)) ** 2 + ((x - c) / (0.33 * size)) ** 2 < 1
    brain = ((y - c) / (0.37 * size)) ** 2 + ((x - c) / (0.30 * size)) ** 2 < 1
    arr = np.full((depth, size, size), -1000.0, np.float32)
    arr[np.broadcast_to(head, arr.shape)] = 1200.0
    arr[np.broadcast_to(brain, arr.shape)] = 35.0
    arr[3:9, int(0.3 * size):int(0.45 * size), int(0.35 * size):int(0.5 * size)] = 70.0
    return Volume.from_array(arr, spacing=spacing)


def tiny_real_predictor(adjacent: int = 3):
    """A small real All-Attention U-Net (random weights) behind the real Predictor, on the CPU."""
    import torch

    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.models import create_model
    from ctseg_core.predictor import Predictor
    from ctseg_core.preprocess import Plan

    torch.manual_seed(0)
    model = create_model("aa_unet", encoder="resnest14d", decoder_channels=(8, 8, 16, 16, 32, 32))
    card = ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict(),
                               training_data={"description": "nothing (random weights, test)"})
    return Predictor(model, card, device="cpu", batch_size=2)


def open_and_wait(qtbot, win, path, timeout=60000, **kw) -> str:
    with qtbot.waitSignal(win.pipeline_done, timeout=timeout) as blocker:
        win.open_path(path, **kw)
    return blocker.args[0]
