"""Small configurations of every registered model, and inputs they take, so tests over ``list_models()``
stay fast (slice models: a small encoder and decoder; volume models: 4 feature maps, 2 members)."""

from __future__ import annotations

import torch

from ctseg_core.models import default_config, model_kind

SMALL_DECODER = (8, 8, 16, 16, 32, 32)
VOLUME_INPUT = 95  # the smallest DeepMedic input (15^3 output)


def tiny_config(name: str) -> dict:
    if model_kind(name) == "volume":
        config = {"feature_maps": (4,) * 8, "fully_connected": (8, 8)}
        if "members" in default_config(name):
            config["members"] = 2
        return config
    encoder = "resnet18d" if default_config(name)["encoder"].startswith("resnet") else "resnest14d"
    return {"encoder": encoder, "decoder_channels": SMALL_DECODER}


def tiny_input(name: str, batch: int = 1) -> torch.Tensor:
    if model_kind(name) == "volume":
        return torch.randn(batch, 1, VOLUME_INPUT, VOLUME_INPUT, VOLUME_INPUT)
    return torch.randn(batch, 3, 64, 64)
