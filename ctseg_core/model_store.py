"""The model version registry of a workspace: every fine-tune is a new version; one is active.

Layout of ``W/models/``::

    v1.safetensors, v1.json      a version: weights + model card (ctseg_core.checkpoint)
    v2.safetensors, v2.json
    active.json                  {"version": "v2", "changed": ...}, written atomically

The bundled starting model (``ctseg_core.resources.DEFAULT_MODEL``) is the root version ``default``
when it is present. Without an ``active.json`` the root is active. All versions must share the
root's architecture; a checkpoint of another architecture is refused with ``CheckpointError``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ctseg_core.atomic import atomic_write_text
from ctseg_core.checkpoint import ModelCard, load_checkpoint, read_card, save_checkpoint
from ctseg_core.errors import CheckpointError, StoreError
from ctseg_core.resources import DEFAULT_MODEL

ROOT_VERSION = "default"
ACTIVE_FILE = "active.json"
_VERSION_RE = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path  # the .safetensors file; its card is beside it
    card: ModelCard

    @property
    def parent(self) -> str | None:
        return self.card.parent_version


class ModelStore:
    def __init__(self, models_dir: str | Path, root_model: str | Path | None = DEFAULT_MODEL):
        self.dir = Path(models_dir)
        self.root_model = Path(root_model) if root_model else None

    @classmethod
    def for_workspace(cls, workspace_root: str | Path, root_model: str | Path | None = DEFAULT_MODEL) -> "ModelStore":
        return cls(Path(workspace_root) / "models", root_model)

    # ---- listing ---------------------------------------------------------------------------------------
    def _paths(self) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        if self.root_model is not None and self.root_model.is_file():
            paths[ROOT_VERSION] = self.root_model
        if self.dir.is_dir():
            numbered = [p for p in self.dir.glob("v*.safetensors") if _VERSION_RE.match(p.stem)]
            for p in sorted(numbered, key=lambda p: int(p.stem[1:])):
                paths[p.stem] = p
        return paths

    def versions(self) -> list[ModelVersion]:
        """Every version, root first, then in the order they were made."""
        return [ModelVersion(v, p, read_card(p)) for v, p in self._paths().items()]

    def get(self, version: str) -> ModelVersion:
        path = self._paths().get(version)
        if path is None:
            known = ", ".join(self._paths()) or "none"
            raise StoreError(f"no model version {version!r} (known: {known})", self.dir)
        return ModelVersion(version, path, read_card(path))

    def architecture(self) -> str | None:
        """The architecture every version shares: the root's, else the first version's."""
        paths = list(self._paths().values())
        return read_card(paths[0]).architecture if paths else None

    # ---- the active version --------------------------------------------------------------------------
    def active_version(self) -> str:
        pointer = self.dir / ACTIVE_FILE
        if pointer.is_file():
            try:
                version = json.loads(pointer.read_text(encoding="utf-8"))["version"]
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"active model pointer is unreadable ({exc})", pointer) from exc
            if version in self._paths():
                return version
            raise StoreError(f"active model version {version!r} has no checkpoint file", pointer)
        if ROOT_VERSION in self._paths():
            return ROOT_VERSION
        raise CheckpointError("no model: the bundled default model is missing and no version has been trained",
                              self.root_model)

    def active(self) -> ModelVersion:
        return self.get(self.active_version())

    def active_path(self) -> Path:
        """The checkpoint the GUI and ``ctseg segment`` load."""
        return self.active().path

    def use(self, version: str) -> ModelVersion:
        """Make ``version`` active (promote or roll back) after checking that its checkpoint loads and
        has the store's architecture. The pointer is replaced atomically."""
        entry = self.get(version)
        load_checkpoint(entry.path, expected_architecture=self.architecture())
        self.dir.mkdir(parents=True, exist_ok=True)
        pointer = {"version": version, "changed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(self.dir / ACTIVE_FILE, json.dumps(pointer, indent=2) + "\n")
        return entry

    def activation_warning(self, version: str) -> str | None:
        """Why making ``version`` active may make the results worse (None when nothing says so): it scored
        lower than its own parent when it was trained, it scored lower than the active version on the current
        validation set (scores of other sets are never compared, ``ctseg_core.version_scores``), or it is
        the parent the active version beat."""
        candidate, active_name = self.get(version), self.active_version()
        if version == active_name:
            return None
        active = self.get(active_name)
        cand_val, act_val = _validation(candidate), _validation(active)
        if candidate.card.extra.get("promoted") is False and cand_val.get("mean_after") is not None:
            return (f"{version} scored a validation Dice of {cand_val['mean_after']:.3f} when it was trained, lower "
                    f"than its parent {candidate.parent}'s {cand_val.get('mean_before') or 0:.3f} on the same cases.")
        same_set = _current_scores(self.dir)  # both measured on the current validation set, or not compared
        cand_now, act_now = same_set.get(version, {}).get("mean"), same_set.get(active_name, {}).get("mean")
        if cand_now is not None and act_now is not None and cand_now < act_now:
            return (f"{version} scored {cand_now:.3f} on the current validation cases, the active "
                    f"{active_name} {act_now:.3f} on the same cases.")
        if (active.parent == version and act_val.get("mean_before") is not None
                and act_val.get("mean_after") is not None and act_val["mean_before"] < act_val["mean_after"]):
            return (f"the active {active_name} was trained from {version} and beat it on its validation cases "
                    f"({act_val['mean_after']:.3f} against {act_val['mean_before']:.3f}).")
        return None

    # ---- adding versions -----------------------------------------------------------------------------
    def next_version(self) -> str:
        numbers = [int(v[1:]) for v in self._paths() if _VERSION_RE.match(v)]
        return f"v{max(numbers, default=0) + 1}"

    def add(self, model, card: ModelCard) -> ModelVersion:
        """Save ``model`` with ``card`` as the next version (not active until ``use``); the card's
        ``version`` is set to the new version's name."""
        expected = self.architecture()
        if expected is not None and card.architecture != expected:
            raise CheckpointError(f"this workspace's models are {expected!r}; a {card.architecture!r} model "
                                  "cannot be added", self.dir)
        version = self.next_version()
        card.version = version
        path = save_checkpoint(model, card, self.dir / f"{version}.safetensors")
        return ModelVersion(version, path, read_card(path))


def _current_scores(models_dir: Path) -> dict:
    """{version: scores} measured on the workspace's current validation set ({} when unknown or unreadable)."""
    from ctseg_core import version_scores

    try:
        return version_scores.current(models_dir)[2]
    except StoreError:
        return {}


def _validation(entry: ModelVersion) -> dict:
    """The validation scores a version's card carries ({} when none)."""
    val = entry.card.metrics.get("validation")
    return val if isinstance(val, dict) else {}
