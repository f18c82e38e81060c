"""Label editing: operations (numpy in, ``Delta`` out), the paint-over policy, and undo history.

Typical use from a GUI tool (see ``history`` for the stroke protocol)::

    from ctseg_core.edit import History, PaintPolicy, ops
    history = History(labels.array, on_change=refresh_bbox, journal=case.journal_append)
    history.begin_stroke("brush")
    history.apply(ops.brush(labels.array, [prev_zyx, cur_zyx], spacing, 5.0, active_class, policy=policy))
    history.commit()
"""

from ctseg_core.edit import ops
from ctseg_core.edit.delta import BBox, Delta
from ctseg_core.edit.history import History, Step
from ctseg_core.edit.ops import HU_PRESETS
from ctseg_core.edit.policy import PaintMode, PaintPolicy, writable

__all__ = ["ops", "BBox", "Delta", "History", "Step", "HU_PRESETS", "PaintMode", "PaintPolicy", "writable"]
