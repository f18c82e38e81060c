"""Model checkpoints: weights in safetensors (``X.safetensors``) and a JSON model card beside them
(``X.json``) carrying architecture, configuration, class table, preprocessing plan, training data,
metrics, version lineage and the weights' sha256. Never unpickles anything.

``load_checkpoint`` checks everything and refuses a mismatch with ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from ctseg_core.atomic import atomic_path, atomic_write_text
from ctseg_core.errors import CheckpointError
from ctseg_core.labels import class_table_json, output_label_values
from ctseg_core.preprocess import Plan, default_plan, plan_from_dict

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
CARD_FORMAT = "ctseg-model-card/1"


@dataclass
class ModelCard:
    architecture: str
    config: dict
    classes: list[dict] = field(default_factory=class_table_json)
    plan: dict = field(default_factory=lambda: default_plan().to_dict())
    training_data: dict = field(default_factory=dict)  # {"description": ..., "source": ..., "n_cases": ...}
    metrics: dict = field(default_factory=dict)
    version: str = "1"
    parent_version: str | None = None
    created: str = ""  # ISO 8601 UTC, filled by save_checkpoint when empty
    weights_sha256: str = ""  # filled by save_checkpoint
    recipe: dict = field(default_factory=dict)  # how it was trained: loss, optimiser, epochs, ...
    extra: dict = field(default_factory=dict)
    # the anatomical guard's settings that belong to this model, chosen on held-out cases:
    # {"min_piece_confidence": 0.92, "min_type_share": 0.8, "chosen": "how and on what"} (ctseg_core.guard,
    # rules 4 and 5)
    guard: dict = field(default_factory=dict)

    @classmethod
    def for_model(cls, model: nn.Module, **fields) -> "ModelCard":
        """A card for a model made by ``create_model`` (architecture and full configuration filled in, and
        the model's own class table and plan where its registration names them)."""
        info = getattr(model, "ctseg_model", None)
        if info is None:
            raise CheckpointError("model was not built by ctseg_core.models.create_model")
        config = dict(info["config"])
        fields = {**info.get("card", {}), **fields}
        if "plan" not in fields and "in_chans" in config:  # the default plan, stacking as many slices as it takes
            fields["plan"] = dataclasses.replace(default_plan(), adjacent_slices=int(config["in_chans"])).to_dict()
        return cls(architecture=info["architecture"], config=config, **fields)

    @property
    def plan_obj(self) -> Plan:
        return Plan.from_dict(self.plan)

    def summary(self) -> str:
        """One line for a title or status bar: "aa_unet v3 — trained on synthetic head CT (40 cases)"; a
        workspace version names its parent ("aa_unet v1 (retrained from default) — ...") so that it is
        never taken for the released model of the same number."""
        from ctseg_core.model_identity import version_label

        td = self.training_data
        what = td.get("description") or td.get("source") or "unknown data"
        n = td.get("n_cases")
        return (f"{version_label(self.architecture, self.version, self.parent_version)} — trained on {what}"
                + (f" ({n} cases)" if n is not None else ""))

    def to_json(self) -> str:
        return json.dumps({"format": CARD_FORMAT, **dataclasses.asdict(self)}, indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, path=None) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"model card is not valid JSON ({exc})", path) from exc
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            raise CheckpointError(f"not a ctseg model card (format {data.get('format') if isinstance(data, dict) else None!r}, "
                                  f"expected {CARD_FORMAT!r})", path)
        data.pop("format")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CheckpointError(f"model card has unknown field(s) {', '.join(unknown)}", path)
        required = [n for n, f in names.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise CheckpointError(f"model card lacks field(s) {', '.join(missing)}", path)
        types = {"architecture": str, "config": dict, "classes": list, "plan": dict, "training_data": dict,
                 "metrics": dict, "created": str, "weights_sha256": str, "recipe": dict, "extra": dict,
                 "guard": dict}
        for name, typ in types.items():
            if name in data and not isinstance(data[name], typ):
                raise CheckpointError(f"model card field {name!r} must be {typ.__name__}", path)
        _check_guard(data.get("guard", {}), path)
        card = cls(**data)
        card.version = str(card.version)
        return card


def _check_guard(guard: dict, path) -> None:
    """The card's guard settings (ctseg_core.guard, rules 4 and 5) are numbers in their ranges."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    threshold = guard.get("min_piece_confidence", 0)
    if not number(threshold) or not 0 <= threshold < 1:
        raise CheckpointError(f"model card field guard.min_piece_confidence must be a number from 0 to below 1, "
                              f"got {threshold!r}", path)
    share = guard.get("min_type_share", 0)
    if not number(share) or not (share == 0 or 0.5 <= share <= 1):
        raise CheckpointError(f"model card field guard.min_type_share must be 0 (off) or a number from 0.5 to 1, "
                              f"got {share!r}", path)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, card) paths of a checkpoint named by either file or by the common stem."""
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + CARD_SUFFIX)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | Path, fp16: bool = False) -> Path:
    """Write ``X.safetensors`` then ``X.json`` atomically; fills ``card.weights_sha256`` (and ``created``).

    ``fp16`` stores floating-point weights as float16 (half the size; loading casts them back)."""
    from safetensors.torch import save_file

    weights_path, card_path = checkpoint_paths(path)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if fp16 and v.is_floating_point():
            v = v.to(torch.float16)
        state[k] = v.clone().contiguous()  # clone: safetensors refuses tensors that share memory
    with atomic_path(weights_path, verify=check_safetensors_written) as tmp:
        save_file(state, str(tmp), metadata={"format": "ctseg", "architecture": card.architecture})
        card.weights_sha256 = sha256_file(tmp)
    if not card.created:
        card.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(card_path, card.to_json())
    return weights_path


def read_card(path: str | Path) -> ModelCard:
    _, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        raise CheckpointError("model card not found (a checkpoint is X.safetensors with X.json beside it)", card_path)
    return ModelCard.from_json(card_path.read_text(encoding="utf-8"), card_path)


def load_checkpoint(path: str | Path, expected_architecture: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Load and verify a checkpoint; the model is returned in eval mode on ``device``."""
    from ctseg_core.models import default_config, is_model

    path = Path(path)
    if path.suffix not in ("", WEIGHTS_SUFFIX, CARD_SUFFIX) and not path.with_name(path.name + WEIGHTS_SUFFIX).exists():
        raise CheckpointError(f"not a ctseg checkpoint: expected a {WEIGHTS_SUFFIX} file with its {CARD_SUFFIX} "
                              "model card beside it (pickled files are never loaded)", path)
    weights_path, card_path = checkpoint_paths(path)
    if not weights_path.is_file():
        raise CheckpointError("weights file not found", weights_path)
    card = read_card(weights_path)
    digest = sha256_file(weights_path)
    if digest != card.weights_sha256:
        raise CheckpointError(f"weights sha256 {digest[:12]}... does not match the card's "
                              f"{card.weights_sha256[:12] or '(none)'}...: the file was changed or belongs to "
                              "another card", weights_path)
    _check_classes(card, card_path)
    if not is_model(card.architecture):
        raise CheckpointError(f"unknown architecture {card.architecture!r}", card_path)
    if expected_architecture is not None and card.architecture != expected_architecture:
        raise CheckpointError(f"architecture {card.architecture!r} is not the expected {expected_architecture!r}",
                              card_path)
    check_plan_fits(card, card_path)
    config = dict(card.config)
    if "encoder_weights" in default_config(card.architecture):
        config["encoder_weights"] = None  # the checkpoint holds every weight
    skeleton = _build(card.architecture, config, card_path, device="meta")  # shapes only, no memory
    _check_state(skeleton, _weight_shapes(weights_path), weights_path, card_path)
    model = _build(card.architecture, config, card_path)
    state = _read_weights(weights_path)
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model.eval().to(device), card


def check_plan_fits(card: ModelCard, path=None):
    """The card's plan (``Plan`` or ``VolumePlan``), validated, and checked against the model's inputs."""
    try:
        plan = plan_from_dict(card.plan)
    except CheckpointError as exc:
        raise CheckpointError(exc.problem, path) from exc
    plan.check_fits(card.config, path)
    return plan


def _check_classes(card: ModelCard, card_path: Path) -> None:
    """The card's class table is ctseg's own, or the model's own classes each mapped onto a ctseg label
    (``ctseg_core.labels.output_label_values``), one per output channel."""
    try:
        values = output_label_values(card.classes)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError("model card's class table is malformed", card_path) from exc
    except ValueError as exc:
        raise CheckpointError(f"model card's {exc}", card_path) from exc
    channels = card.config.get("num_classes", len(values))
    if channels != len(values):
        raise CheckpointError(f"model card lists {len(values)} classes but the model has {channels} outputs",
                              card_path)


def _build(architecture: str, config: dict, card_path: Path, device: str | None = None) -> nn.Module:
    """The card's architecture; on the ``meta`` device only its tensor shapes exist (a card asking for an
    enormous network is refused before anything is allocated)."""
    from ctseg_core.models import create_model

    try:
        if device is None:
            return create_model(architecture, **config)
        with torch.device(device):
            return create_model(architecture, **config)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(f"cannot build {architecture!r} from the card's config ({exc})", card_path) from exc
    except CheckpointError as exc:
        raise CheckpointError(exc.problem, card_path) from exc


def _weight_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (nothing else is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError / OSError for corrupt headers
        raise CheckpointError(f"not a readable safetensors file ({exc})", weights_path) from exc


def check_safetensors_written(path: Path) -> None:
    """``atomic_path``'s check of a just-written safetensors file: its header and every tensor's bytes are
    there (a short file on a full disk is refused before it replaces anything)."""
    from ctseg_core.errors import WriteError

    try:
        _weight_shapes(path)
    except CheckpointError as exc:
        raise WriteError(f"could not be written: the file read back is incomplete ({exc.problem}); is the disk "
                         "full? The previous file is kept unchanged", path, disk_full=True) from exc


def _read_weights(weights_path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(weights_path))
    except Exception as exc:  # safetensors raises SafetensorError / OSError for corrupt headers
        raise CheckpointError(f"not a readable safetensors file ({exc})", weights_path) from exc


def _check_state(model: nn.Module, shapes: dict[str, tuple[int, ...]], weights_path: Path,
                 card_path: Path | None = None) -> None:
    """The weights file's tensors (names and shapes) must be exactly the architecture's; the error names the
    weights file and, when the card's config is what differs, the card."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    where = f" (the card {card_path.name} describes another network than the weights)" if card_path else ""
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError("weights do not fit the architecture: " + ", ".join(parts) + " tensors" + where,
                              weights_path)
    for k, shape in shapes.items():
        if tuple(shape) != own[k]:
            raise CheckpointError(f"weight {k} has shape {tuple(shape)}, the architecture needs {own[k]}{where}",
                                  weights_path)
