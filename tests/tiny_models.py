"""The one tiny real model of the test suite (core and app): a small All-Attention U-Net with seeded random
weights, as a model, a checkpoint on disk, or a Predictor on the CPU."""

from __future__ import annotations

TINY_ENCODER = "resnest14d"
TINY_DECODER = (8, 8, 16, 16, 32, 32)


def tiny_model(arch: str = "aa_unet", seed: int = 0, encoder: str = TINY_ENCODER):
    import torch

    from ctseg_core.models import create_model

    torch.manual_seed(seed)
    return create_model(arch, encoder=encoder, decoder_channels=TINY_DECODER)


def tiny_card(model, spacing_mm: float | None = None):
    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.preprocess import Plan

    return ModelCard.for_model(model, plan=Plan(spacing_mm=spacing_mm).to_dict(),
                               training_data={"description": "nothing (random weights, test)"})


def save_tiny_checkpoint(folder, name: str = "tiny", arch: str = "aa_unet", seed: int = 0,
                         spacing_mm: float | None = None, encoder: str = TINY_ENCODER):
    """X.safetensors + X.json in ``folder``; returns the weights path."""
    from ctseg_core.checkpoint import save_checkpoint

    model = tiny_model(arch, seed, encoder)
    return save_checkpoint(model, tiny_card(model, spacing_mm), folder / name)


def tiny_predictor(seed: int = 0, batch_size: int = 2, guard=None):
    """The tiny model behind the real Predictor, on the CPU, at the scan's own spacing; without the
    anatomical guard by default (the phantoms of these tests have no skull, tests/core/test_guard.py)."""
    from ctseg_core.predictor import Predictor

    model = tiny_model(seed=seed)
    return Predictor(model, tiny_card(model), device="cpu", batch_size=batch_size, guard=guard)
