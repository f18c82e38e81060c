"""Comparing models whose classes differ, on the classes they share (ctseg's seven, BLAST-CT's four).

Shared groups (label keys of ``ctseg_core.labels``):
- ``ich``: intracerebral hemorrhage (BLAST-CT's IPH maps to it);
- ``eah``: extra-axial blood, SDH + EDH + SAH (BLAST-CT's EAH, the unassigned ``extra_axial`` label);
- ``ivh``: intraventricular hemorrhage.
``blood``: every label that is blood (``LabelClass.hemorrhage``), including chronic SDH, which BLAST-CT
has no class for. Oedema and pneumocephalus are background here: they are not blood.
"""

from __future__ import annotations

import numpy as np

from ctseg_core.labels import LABEL_BY_KEY, LABEL_CLASSES, NUM_LABEL_VALUES
from ctseg_core.metrics import OverlapCounts, overlap_counts

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ich", ("ich",)),
    ("eah", ("sdh", "edh", "sah", "extra_axial")),
    ("ivh", ("ivh",)),
)
GROUP_KEYS = tuple(key for key, _ in GROUPS)
BLOOD = "blood"


def _lookup(groups) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for index, (_, keys) in enumerate(groups, start=1):
        for key in keys:
            lut[LABEL_BY_KEY[key].id] = index
    return lut


GROUP_LOOKUP = _lookup(GROUPS)  # label value -> 1 + index in GROUPS (0: not in a shared group)
BLOOD_LOOKUP = _lookup(((BLOOD, tuple(c.key for c in LABEL_CLASSES if c.hemorrhage)),))


def _array(labels) -> np.ndarray:
    return np.asarray(getattr(labels, "array", labels))


def group_counts(pred, truth) -> OverlapCounts:
    """TP/FP/FN per shared group (index 0 background, then ``GROUPS`` in order, then ``blood`` last)."""
    p, t = _array(pred), _array(truth)
    groups = overlap_counts(GROUP_LOOKUP[p], GROUP_LOOKUP[t], num_classes=len(GROUPS) + 1)
    blood = overlap_counts(BLOOD_LOOKUP[p], BLOOD_LOOKUP[t], num_classes=2)
    return OverlapCounts(np.append(groups.tp, blood.tp[1]), np.append(groups.fp, blood.fp[1]),
                         np.append(groups.fn, blood.fn[1]))


def group_volumes_ml(labels) -> dict[str, float]:
    """{group key and "blood": painted volume in mL} of a ``LabelMap``."""
    arr = labels.array
    voxel_ml = labels.geometry.voxel_volume_ml
    counts = np.bincount(GROUP_LOOKUP[arr].ravel(), minlength=len(GROUPS) + 1)
    out = {key: float(counts[i]) * voxel_ml for i, key in enumerate(GROUP_KEYS, start=1)}
    out[BLOOD] = float(np.count_nonzero(BLOOD_LOOKUP[arr])) * voxel_ml
    return out


def label_volumes_ml(labels) -> dict[str, float]:
    """{label key: volume in mL} for every non-background label value of a ``LabelMap``."""
    counts = np.bincount(labels.array.ravel(), minlength=NUM_LABEL_VALUES)
    voxel_ml = labels.geometry.voxel_volume_ml
    return {c.key: float(counts[c.id]) * voxel_ml for c in LABEL_CLASSES[1:]}
