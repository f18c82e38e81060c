"""Segmentation models: the registry and the model families (importing this package registers them)."""

from ctseg_core.models.registry import (
    KIND_DOCS,
    count_flops,
    count_parameters,
    create_model,
    default_config,
    example_input_shape,
    is_model,
    list_models,
    model_info,
    model_kind,
    paper_figures,
    register_model,
)
from ctseg_core.models import aa_unet as _aa_unet  # noqa: F401  (registers aa_unet, rsu*, resnet50_unet)
from ctseg_core.models import deepmedic as _deepmedic  # noqa: F401  (registers deepmedic, blast_ct)
from ctseg_core.models import focusnet as _focusnet  # noqa: F401  (registers focusnetpp)
from ctseg_core.models import radnet as _radnet  # noqa: F401  (registers radnet)
from ctseg_core.models import rsanet as _rsanet  # noqa: F401  (registers rsanet)

__all__ = ["KIND_DOCS", "count_flops", "count_parameters", "create_model", "default_config", "example_input_shape",
           "is_model", "list_models", "model_info", "model_kind", "paper_figures", "register_model"]
