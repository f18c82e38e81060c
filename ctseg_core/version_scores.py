"""Validation scores of model versions, kept per validation set so that only like is compared with like.

``<workspace>/models/scores.json``::

    {"format": 1, "current": "<fingerprint>", "revision": 3,
     "sets": {"<fingerprint>": {"cases": [...], "revision": 3,
                                "versions": {"v2": {"dice": {...}, "dice_voxel": {...}, "mean": 0.61,
                                                    "measured": "..."}}}}}

A fingerprint (``ctseg_core.training.validation_set.fingerprint``) names the validation cases with their
scan and label contents. Every training run writes the parent's and the new version's scores under the
fingerprint it measured on (``current``), ``ctseg train --rescore`` measures every version on the current
set; the app's versions table and ``ModelStore.activation_warning`` read scores of the current set only.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import StoreError

FILE = "scores.json"
FORMAT = 1


def _read(models_dir: Path) -> dict:
    path = Path(models_dir) / FILE
    if not path.is_file():
        return {"format": FORMAT, "current": None, "revision": None, "sets": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or not isinstance(data.get("sets"), dict):
            raise ValueError("not a ctseg scores file")
    except (OSError, ValueError) as exc:
        raise StoreError(f"the version scores are unreadable ({exc})", path) from exc
    return data


def record(models_dir: str | Path, fingerprint: str, cases: list[str], revision: int, version: str,
           scores: dict) -> None:
    """Store ``version``'s scores (``dice``, ``dice_voxel``, ``mean``) on the set ``fingerprint``, now current."""
    data = _read(Path(models_dir))
    entry = data["sets"].setdefault(fingerprint, {"cases": sorted(cases), "revision": revision, "versions": {}})
    entry["revision"] = revision
    entry["versions"][version] = {**scores, "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    data["current"], data["revision"] = fingerprint, revision
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(models_dir) / FILE, json.dumps(data, indent=1) + "\n")


def current(models_dir: str | Path) -> tuple[str | None, int | None, dict]:
    """(fingerprint, validation-set revision, {version: scores}) of the set measured last."""
    data = _read(Path(models_dir))
    fp = data.get("current")
    entry = data["sets"].get(fp, {}) if fp else {}
    return fp, data.get("revision"), dict(entry.get("versions", {}))
