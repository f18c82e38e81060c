"""The workspace's validation set: chosen once, stratified, frozen, changed only by a person (recorded).

``<workspace>/validation.json``::

    {"format": 1, "cases": ["case-a", "case-b"], "revision": 2, "seed": 0,
     "history": [{"time": ..., "action": "chosen" | "added" | "removed" | "replaced", "cases": [...],
                  "by": "dr_x", "reason": "..."}]}

The first training run chooses it from the corrected/approved cases (``choose``): a quarter of them
(at least one), lesion-bearing cases first and covering as many lesion classes as possible (rarest class
first, only a class that at least two cases hold, so that training keeps one), bleed-free cases only
when the lesion-bearing ones are used up. A workspace whose cases hold no lesion at all is refused
before anything is trained: Dice on bleed-free cases cannot compare two models. From then on the set is
frozen: new cases go to training; a case of the set that is no longer corrected/approved (or gone) is
left out of the run but stays in the set. A person moves a case in or out (``add`` / ``remove``, the
app's case list, ``ctseg train --val-add/--val-remove``); the change is recorded and bumps ``revision``,
and scores measured on another set are never compared with scores on this one (``fingerprint``).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import StoreError

FILE = "validation.json"
FORMAT = 1
VAL_FRACTION = 0.25


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ValidationSet:
    cases: list[str]
    revision: int = 1
    seed: int = 0
    history: list[dict] = field(default_factory=list)

    # ---- the file ----
    @staticmethod
    def path(root: str | Path) -> Path:
        return Path(root) / FILE

    @classmethod
    def load(cls, root: str | Path) -> "ValidationSet | None":
        """The workspace's set, or None when none was chosen yet; ``StoreError`` naming a damaged file."""
        path = cls.path(root)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')} is not {FORMAT}")
            out = cls([str(c) for c in data["cases"]], int(data["revision"]), int(data.get("seed", 0)),
                      list(data.get("history", [])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the validation set is unreadable ({exc}); move it aside to choose a new one",
                             path) from exc
        return out

    def save(self, root: str | Path) -> None:
        data = {"format": FORMAT, "cases": sorted(self.cases), "revision": self.revision, "seed": self.seed,
                "history": self.history}
        atomic_write_text(self.path(root), json.dumps(data, indent=1) + "\n")

    # ---- use ----
    def split(self, eligible: list[str]) -> tuple[list[str], list[str]]:
        """(train ids, validation ids) among ``eligible`` (the corrected/approved cases with labels)."""
        members = set(self.cases)
        val = sorted(c for c in eligible if c in members)
        train = sorted(c for c in eligible if c not in members)
        if not val:
            raise StoreError("none of the validation set's cases is corrected, adjudicated or approved now "
                             f"({', '.join(sorted(members)) or 'the set is empty'}): add one from the case list")
        if not train:
            raise StoreError("every corrected, adjudicated or approved case is in the validation set: nothing is left to "
                             "train on; correct more cases or take one out of the validation set")
        return train, val

    # ---- changes by a person ----
    def _record(self, action: str, cases: list[str], by: str, reason: str) -> None:
        self.revision += 1
        self.history.append({"time": _now(), "action": action, "cases": sorted(cases), "by": by, "reason": reason})


def choose(classes_by_case: Mapping[str, set[str] | list[str]], fraction: float = VAL_FRACTION,
           seed: int = 0) -> tuple[list[str], str]:
    """(validation ids, why): the stratified choice described in the module docstring."""
    ids = sorted(classes_by_case)
    classes = {i: set(classes_by_case[i]) for i in ids}
    if len(ids) < 2:
        raise StoreError(f"need at least two corrected, adjudicated or approved cases (one to train on, one to check the new "
                         f"model); have {len(ids)}")
    lesion = [i for i in ids if classes[i]]
    if not lesion:
        raise StoreError(f"none of the {len(ids)} corrected, adjudicated or approved cases holds a lesion: a validation set of "
                         "bleed-free cases cannot tell a better model from a worse one; correct a case with a "
                         "lesion first")
    n_val = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    rng = random.Random(seed)
    chosen: list[str] = []
    covered: set[str] = set()
    holders = {c: [i for i in ids if c in classes[i]] for c in set().union(*classes.values())}
    for c in sorted(holders, key=lambda c: (len(holders[c]), c)):  # rarest class first
        if len(chosen) >= n_val or c in covered or len(holders[c]) < 2:
            continue
        free = [i for i in holders[c] if i not in chosen]
        best = max(len(classes[i] - covered) for i in free)
        pick = rng.choice([i for i in free if len(classes[i] - covered) == best])
        chosen.append(pick)
        covered |= classes[pick]
    rest_lesion = [i for i in lesion if i not in chosen]
    rng.shuffle(rest_lesion)
    rest_clear = [i for i in ids if not classes[i]]
    rng.shuffle(rest_clear)
    chosen += (rest_lesion + rest_clear)[: n_val - len(chosen)]
    covered = set().union(*(classes[i] for i in chosen))
    why = (f"{len(chosen)} of {len(ids)} cases, {sum(bool(classes[i]) for i in chosen)} with a lesion, covering "
           f"{', '.join(sorted(covered)) or 'no class'}")
    return sorted(chosen), why


def ensure(root: str | Path, classes_by_case: Mapping[str, set[str] | list[str]], seed: int = 0,
           fraction: float = VAL_FRACTION) -> tuple[ValidationSet, str | None]:
    """The workspace's set, chosen and saved now when there is none (then also the reason, else None)."""
    current = ValidationSet.load(root)
    if current is not None:
        return current, None
    cases, why = choose(classes_by_case, fraction, seed)
    vs = ValidationSet(cases, revision=1, seed=seed,
                       history=[{"time": _now(), "action": "chosen", "cases": cases, "by": "ctseg", "reason": why}])
    vs.save(root)
    return vs, why


def change(root: str | Path, add: list[str] = (), remove: list[str] = (), by: str = "", replace: list[str] | None = None,
           known: list[str] | None = None) -> ValidationSet:
    """Move cases into / out of the set (or ``replace`` it), recorded; ``known``: the workspace's case ids."""
    vs = ValidationSet.load(root) or ValidationSet([], revision=0)
    unknown = sorted((set(add) | set(replace or ())) - set(known)) if known is not None else []
    if unknown:
        raise StoreError(f"no such case(s) in the workspace: {', '.join(unknown)}", Path(root))
    if replace is not None:
        if sorted(set(replace)) != sorted(vs.cases):
            vs.cases = sorted(set(replace))
            vs._record("replaced", vs.cases, by, "set as a whole")
    for c in add:
        if c not in vs.cases:
            vs.cases = sorted(set(vs.cases) | {c})
            vs._record("added", [c], by, "moved into the validation set")
    for c in remove:
        if c in vs.cases:
            vs.cases = sorted(set(vs.cases) - {c})
            vs._record("removed", [c], by, "moved to training")
    vs.save(root)
    return vs


def fingerprint(hashes: Mapping[str, Mapping[str, str]]) -> str:
    """One short hash of the validation cases and their contents ({id: {"scan": .., "labels": ..}}):
    scores with the same fingerprint were measured on the same scans with the same labels."""
    h = hashlib.sha256()
    for case_id in sorted(hashes):
        h.update(f"{case_id}\0{hashes[case_id].get('scan', '')}\0{hashes[case_id].get('labels', '')}\n".encode())
    return h.hexdigest()[:16]
