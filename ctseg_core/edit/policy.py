"""The paint-over policy: which voxels a write of one class value may change.

Every edit operation asks ``writable(current, value, policy)``; no tool decides this on its own.

Modes:
- ``overwrite``: any voxel may take the new value (other classes are painted over).
- ``background_only``: painting fills background voxels only; other classes are left alone. Erasing
  (value 0) still clears any class except the locked ones.
- ``protect_locked``: any voxel except those of a locked class.
Locked classes are honoured in ``background_only`` and ``protect_locked``; ``overwrite`` means everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class PaintMode(str, Enum):
    OVERWRITE = "overwrite"
    BACKGROUND_ONLY = "background_only"
    PROTECT_LOCKED = "protect_locked"


@dataclass(frozen=True)
class PaintPolicy:
    mode: PaintMode = PaintMode.OVERWRITE
    locked: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self):
        object.__setattr__(self, "mode", PaintMode(self.mode))
        object.__setattr__(self, "locked", frozenset(int(c) for c in self.locked))


OVERWRITE = PaintPolicy()


def writable(current: np.ndarray, value: int, policy: PaintPolicy = OVERWRITE) -> np.ndarray:
    """Boolean mask of the voxels of ``current`` that a write of ``value`` changes under ``policy``.

    Voxels already holding ``value`` are never in it (an edit records real changes only).
    """
    ok = current != value
    if policy.mode is PaintMode.OVERWRITE:
        return ok
    if policy.locked:
        ok &= ~np.isin(current, list(policy.locked))
    if policy.mode is PaintMode.BACKGROUND_ONLY and value != 0:
        ok &= current == 0
    return ok


def passable(current: np.ndarray, value: int, policy: PaintPolicy = OVERWRITE) -> np.ndarray:
    """Voxels a fill may spread through: writable ones and those that already hold ``value``."""
    return writable(current, value, policy) | (current == value)
