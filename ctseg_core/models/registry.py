"""The model registry (timm style): ``@register_model`` on a factory, ``create_model(name, **config)``.

A factory takes keyword configuration only and returns an ``nn.Module``; its defaults are the model's
default configuration. The registry also reports parameter counts and FLOPs for ``ctseg models``.

Each model has a *kind*, which says what it maps and so how it is trained and run (``KIND_DOCS``):
``@register_model`` registers a slice model; ``@register_model(kind="volume", example_input=(1, 1, 64, 64, 64),
paper="...")`` another kind, with the input its FLOPs are counted at (and tests start from) and the paper's
own figures. A model whose classes or preprocessing are not ctseg's defaults names them with ``card_defaults``
(a function returning model-card fields such as ``classes`` and ``plan``; ``ModelCard.for_model`` uses them).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ctseg_core.errors import CheckpointError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}
_EXAMPLE_INPUTS: dict[str, tuple[int, ...]] = {}
_PAPERS: dict[str, str] = {}
_CARD_DEFAULTS: dict[str, Callable[[], dict]] = {}
SLICE_EXAMPLE_INPUT = (1, 3, 512, 512)
KIND_DOCS = {
    "slice": "(N, C adjacent slices, H, W) -> (N, classes, H, W) logits of the centre slice",
    "slab": "(N, K consecutive slices, H, W) -> (N, classes, K, H, W) logits of every slice",
    "scan": "(B, S slices of a scan, C, H, W) -> (B, S) logits of 'this slice shows hemorrhage'",
    "volume": "(N, C, D, H, W) block of voxels -> (N, classes, d, h, w) logits of its centre block",
}
MODEL_KINDS = tuple(KIND_DOCS)


def register_model(fn: Callable[..., nn.Module] | None = None, *, kind: str = "slice",
                   example_input: tuple[int, ...] = SLICE_EXAMPLE_INPUT, paper: str = "",
                   card_defaults: Callable[[], dict] | None = None):
    """Register a model factory under its function name (``@register_model`` or ``@register_model(kind=...)``).

    ``example_input``: the input shape FLOPs are counted at; ``paper``: the figures the model's paper
    reports (parameters, FLOPs), shown beside ours by ``ctseg models``; ``card_defaults``: see above."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        _KINDS[name] = kind
        _EXAMPLE_INPUTS[name] = tuple(example_input)
        _PAPERS[name] = paper
        _CARD_DEFAULTS[name] = card_defaults or dict
        return fn

    return register(fn) if fn is not None else register


def list_models(kind: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``kind`` when given."""
    return sorted(n for n in _REGISTRY if kind is None or _KINDS[n] == kind)


def model_kind(name: str) -> str:
    """"slice", "slab" or "scan" (see ``KIND_DOCS``)."""
    _check_known(name)
    return _KINDS[name]


def example_input_shape(name: str) -> tuple[int, ...]:
    """The input shape FLOPs are counted at (and tests start from) for this model."""
    _check_known(name)
    return _EXAMPLE_INPUTS[name]


def paper_figures(name: str) -> str:
    """What the model's paper reports about its size and cost ("" when it reports nothing we could use)."""
    _check_known(name)
    return _PAPERS[name]


def _check_known(name: str) -> None:
    if name not in _REGISTRY:
        raise CheckpointError(f"unknown model architecture {name!r} (known: {', '.join(list_models())})")


def is_model(name: str) -> bool:
    return name in _REGISTRY


def create_model(name: str, **config) -> nn.Module:
    """Build a registered model; unknown names or configuration keys raise ``CheckpointError``."""
    if name not in _REGISTRY:
        raise CheckpointError(f"unknown model architecture {name!r} (known: {', '.join(list_models())})")
    fn = _REGISTRY[name]
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise CheckpointError(f"model {name!r} has no configuration key(s) {', '.join(unknown)}")
    model = fn(**config)
    full = default_config(name)
    full.update(config)
    model.ctseg_model = {"architecture": name, "config": _jsonable(full),  # read by checkpoint.ModelCard.for_model
                         "card": _CARD_DEFAULTS[name]()}
    return model


def _jsonable(value):
    """Configuration as plain JSON data (tuples become lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def default_config(name: str) -> dict:
    """The factory's keyword defaults (the configuration a model card records when none is given)."""
    if name not in _REGISTRY:
        raise CheckpointError(f"unknown model architecture {name!r}")
    params = inspect.signature(_REGISTRY[name]).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def model_description(name: str) -> str:
    doc = inspect.getdoc(_REGISTRY[name]) or ""
    return doc.splitlines()[0] if doc else ""


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape=SLICE_EXAMPLE_INPUT) -> int:
    """Floating point operations of one forward pass (``torch.utils.flop_counter``, multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(input_shape)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class ModelInfo:
    name: str
    description: str
    parameters: int
    flops: int | None  # per forward pass at ``input_shape``
    input_shape: tuple[int, ...]
    kind: str = "slice"
    paper: str = ""

    @property
    def slices(self) -> int:
        """Slices in one example input: 1 for slice models, K for a slab, S for a scan, D for a volume block."""
        if self.kind == "volume":
            return int(self.input_shape[2])
        return 1 if self.kind == "slice" else int(self.input_shape[1])

    @property
    def flops_per_slice(self) -> float | None:
        return None if self.flops is None else self.flops / self.slices


def model_info(name: str, input_shape=None, with_flops: bool = True, **config) -> ModelInfo:
    """Description, parameters and FLOPs at ``input_shape`` (default: the model's example input)."""
    input_shape = example_input_shape(name) if input_shape is None else tuple(input_shape)
    model = create_model(name, **config)
    flops = count_flops(model, input_shape) if with_flops else None
    return ModelInfo(name, model_description(name), count_parameters(model), flops, tuple(input_shape),
                     model_kind(name), paper_figures(name))
