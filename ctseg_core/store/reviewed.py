"""Slices a person confirmed as reviewed without editing them (the Review menu's "Slice reviewed" key).

``<case>/reviewed.json``: ``{"format": 1, "confirmed": [z, ...], "history": [{"slices": [...], "by": ..,
"time": .., "action": "confirmed" | "unconfirmed"}]}`` (slice indices from 0, as in the arrays; people see
them from 1). Slices a person edited need no mark: training finds them where the corrected map differs
from the stored prediction (``ctseg_core.training.dataset.review_masks``). Kept apart from ``case.json``
so that the case record's format does not change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import StoreError
from ctseg_core.store.journal import now_iso

FILE = "reviewed.json"
FORMAT = 1


def _read(folder: Path) -> dict:
    path = Path(folder) / FILE
    if not path.is_file():
        return {"format": FORMAT, "confirmed": [], "history": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')} is not {FORMAT}")
        data["confirmed"] = sorted({int(z) for z in data["confirmed"]})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"the reviewed-slice marks are unreadable ({exc})", path) from exc
    return data


def confirmed_slices(folder: str | Path) -> list[int]:
    """Slice indices (from 0) a person confirmed in the case folder ``folder``."""
    return _read(Path(folder))["confirmed"]


def mark_slices(case, slices: Iterable[int], by: str = "", confirmed: bool = True) -> list[int]:
    """Confirm (or take back) ``slices`` of ``case`` (a ``ctseg_core.store.Case`` it may write); returns the
    confirmed slices now."""
    case._check_writable()  # another process edits the case: CaseLockedError
    depth = case.geometry.shape[0]
    slices = sorted({int(z) for z in slices})
    bad = [z for z in slices if not 0 <= z < depth]
    if bad:
        raise StoreError(f"slice(s) {', '.join(str(z + 1) for z in bad)} are outside 1..{depth}", case.folder)
    data = _read(case.folder)
    now = set(data["confirmed"])
    now = now | set(slices) if confirmed else now - set(slices)
    data["confirmed"] = sorted(now)
    data["history"].append({"slices": slices, "by": by, "time": now_iso(),
                            "action": "confirmed" if confirmed else "unconfirmed"})
    atomic_write_text(case.folder / FILE, json.dumps(data, indent=1) + "\n")
    return data["confirmed"]
