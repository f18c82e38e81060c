"""The tiny real models of the test suite (core and app): a small All-Attention U-Net with seeded random
weights, as a model, a checkpoint on disk, or a Predictor on the CPU; and small configurations of every
registered model with inputs they take, so tests over ``list_models()`` stay fast (slice models: a small
encoder and decoder; volume models: 4 feature maps, 2 members)."""

from __future__ import annotations

TINY_ENCODER = "resnest14d"
TINY_DECODER = (8, 8, 16, 16, 32, 32)
SMALL_DECODER = TINY_DECODER
VOLUME_INPUT = 95  # the smallest DeepMedic input (15^3 output)


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


def tiny_config(name: str) -> dict:
    from ctseg_core.models import default_config, model_kind

    if model_kind(name) == "volume":
        config = {"feature_maps": (4,) * 8, "fully_connected": (8, 8)}
        if "members" in default_config(name):
            config["members"] = 2
        return config
    encoder = "resnet18d" if default_config(name)["encoder"].startswith("resnet") else TINY_ENCODER
    return {"encoder": encoder, "decoder_channels": TINY_DECODER}


def tiny_input(name: str, batch: int = 1):
    import torch

    from ctseg_core.models import model_kind

    if model_kind(name) == "volume":
        return torch.randn(batch, 1, VOLUME_INPUT, VOLUME_INPUT, VOLUME_INPUT)
    return torch.randn(batch, 3, 64, 64)
