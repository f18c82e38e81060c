"""Undo/redo of label edits for one case, across tools and slices, storing changed voxels only.

One mouse drag is one step::

    history.begin_stroke("brush")        # mouse press
    history.apply(ops.brush(...))        # every mouse move (previous -> current position)
    history.commit()                     # mouse release   (history.abort() on Escape: reverts the drag)

``apply`` outside a stroke makes a one-delta step (e.g. a flood-fill click). ``undo()``/``redo()``
return the bounding box (z0, z1, y0, y1, x0, x1) that changed, or None. ``on_change(bbox)`` is called
after every change of the array (apply, abort, undo, redo) so a view can refresh just those slices;
``journal(deltas)`` is called with the deltas in the order they were applied to the array whenever a
step is committed, undone (inverted deltas) or redone — connect it to ``Case.journal_append``.
The history holds at most ``budget_bytes``; the oldest steps are dropped first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ctseg_core.edit.delta import BBox, Delta, union_bbox

DEFAULT_BUDGET_BYTES = 256 * 2**20


@dataclass
class Step:
    name: str
    deltas: list[Delta] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(d.nbytes for d in self.deltas)

    @property
    def bbox(self) -> BBox | None:
        return union_bbox(d.bbox for d in self.deltas)

    def undo_deltas(self) -> list[Delta]:
        return [d.inverted() for d in reversed(self.deltas)]


class History:
    def __init__(self, labels: np.ndarray, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 on_change: Callable[[BBox], None] | None = None,
                 journal: Callable[[list[Delta]], None] | None = None):
        if labels.dtype != np.uint8 or labels.ndim != 3:
            raise ValueError("History edits a uint8 (z, y, x) label array")
        self.labels = labels
        self.budget_bytes = int(budget_bytes)
        self.on_change = on_change
        self.journal = journal
        self._undo: list[Step] = []
        self._redo: list[Step] = []
        self._open: Step | None = None
        self.dropped_steps = 0  # steps forgotten to honour the byte budget

    # --- strokes -------------------------------------------------------------------------------
    def begin_stroke(self, name: str = "edit") -> None:
        if self._open is not None:
            self.commit()
        self._open = Step(name)

    @property
    def in_stroke(self) -> bool:
        return self._open is not None

    def apply(self, delta: Delta) -> BBox | None:
        """Apply ``delta`` to the array and record it (in the open stroke, or as a step of its own)."""
        if not delta:
            return None
        if self._open is None:
            self.begin_stroke("edit")
            self._record(delta)
            self.commit()
        else:
            self._record(delta)
        return delta.bbox

    def _record(self, delta: Delta) -> None:
        delta.apply(self.labels)
        self._open.deltas.append(delta)
        self._changed(delta.bbox)

    def commit(self) -> Step | None:
        """Close the open stroke; it becomes one undo step (nothing if it changed nothing)."""
        step, self._open = self._open, None
        if step is None or not step.deltas:
            return None
        self._undo.append(step)
        self._redo.clear()
        self._log(step.deltas)
        self._enforce_budget()
        return step

    def abort(self) -> BBox | None:
        """Revert and forget the open stroke."""
        step, self._open = self._open, None
        if step is None or not step.deltas:
            return None
        for d in reversed(step.deltas):
            d.revert(self.labels)
        self._changed(step.bbox)
        return step.bbox

    # --- undo / redo ---------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_count(self) -> int:
        return len(self._undo)

    @property
    def redo_count(self) -> int:
        return len(self._redo)

    @property
    def undo_name(self) -> str | None:
        return self._undo[-1].name if self._undo else None

    @property
    def redo_name(self) -> str | None:
        return self._redo[-1].name if self._redo else None

    def undo(self) -> BBox | None:
        if self._open is not None:
            self.commit()
        if not self._undo:
            return None
        step = self._undo.pop()
        inverse = step.undo_deltas()
        for d in inverse:
            d.apply(self.labels)
        self._redo.append(step)
        self._log(inverse)
        self._changed(step.bbox)
        return step.bbox

    def redo(self) -> BBox | None:
        if self._open is not None or not self._redo:
            return None
        step = self._redo.pop()
        for d in step.deltas:
            d.apply(self.labels)
        self._undo.append(step)
        self._log(step.deltas)
        self._changed(step.bbox)
        return step.bbox

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._open = None

    # --- bookkeeping ---------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        steps = self._undo + self._redo + ([self._open] if self._open else [])
        return sum(s.nbytes for s in steps)

    def _enforce_budget(self) -> None:
        total = self.nbytes
        while self._undo and total > self.budget_bytes:
            total -= self._undo.pop(0).nbytes
            self.dropped_steps += 1

    def _changed(self, bbox: BBox | None) -> None:
        if bbox is not None and self.on_change is not None:
            self.on_change(bbox)

    def _log(self, deltas: list[Delta]) -> None:
        if self.journal is not None and deltas:
            self.journal(deltas)
