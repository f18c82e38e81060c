"""Adjudication of two readers' label maps: where they agree, what only one drew, and the decisions.

``compare(a, b, geometry)`` gives the per-class Dice and volumes of the two maps and ``agreement_map``
the voxel categories an adjudication view colours: ``AGREE`` (same class), ``A_ONLY`` / ``B_ONLY`` (one
reader drew blood where the other drew none), ``CONFLICT`` (both drew, different classes).
``Adjudication`` steps through the disagreeing components (connected regions where the maps differ in
the same way, e.g. "SDH by A, nothing by B"; largest first); each is taken from reader A or B, and the result (agreed voxels, then each decision) is
the case's final map (``ctseg_core.store.readers.save_adjudicated``). A component not decided keeps
background where the readers disagree; the adjudicator may redraw anything afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ctseg_core.labels import LESION_CLASSES, NUM_LABEL_VALUES
from ctseg_core.metrics import overlap_counts
from ctseg_core.volume import Geometry

NONE, AGREE, A_ONLY, B_ONLY, CONFLICT = 0, 1, 2, 3, 4
CATEGORY_NAMES = {AGREE: "agreement", A_ONLY: "reader A only", B_ONLY: "reader B only",
                  CONFLICT: "both, different class"}


def agreement_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per voxel: NONE (both background), AGREE, A_ONLY, B_ONLY or CONFLICT (uint8)."""
    if a.shape != b.shape:
        raise ValueError(f"the readers' maps differ in shape: {a.shape} != {b.shape}")
    out = np.zeros(a.shape, np.uint8)
    da, db = a > 0, b > 0
    out[da & (a == b)] = AGREE
    out[da & ~db] = A_ONLY
    out[db & ~da] = B_ONLY
    out[da & db & (a != b)] = CONFLICT
    return out


@dataclass
class ClassComparison:
    key: str
    name: str
    dice: float | None  # None: neither reader drew the class
    volume_a_ml: float
    volume_b_ml: float

    @property
    def difference_ml(self) -> float:
        return self.volume_a_ml - self.volume_b_ml

    def to_json(self) -> dict:
        return {"class": self.key, "dice": self.dice, "volume_a_ml": round(self.volume_a_ml, 4),
                "volume_b_ml": round(self.volume_b_ml, 4), "difference_ml": round(self.difference_ml, 4)}


def compare(a: np.ndarray, b: np.ndarray, geometry: Geometry) -> list[ClassComparison]:
    """Per lesion class: Dice between the maps and each one's volume in mL."""
    counts = overlap_counts(a, b, NUM_LABEL_VALUES)
    dice = counts.dice()
    voxel_ml = geometry.voxel_volume_ml
    va = np.bincount(a.ravel(), minlength=NUM_LABEL_VALUES)
    vb = np.bincount(b.ravel(), minlength=NUM_LABEL_VALUES)
    return [ClassComparison(c.key, c.name, None if np.isnan(dice[c.id]) else float(dice[c.id]),
                            float(va[c.id]) * voxel_ml, float(vb[c.id]) * voxel_ml) for c in LESION_CLASSES]


@dataclass
class Component:
    """One connected region where the two maps differ."""

    index: int
    bbox: tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (half open)
    voxels: int
    centre: tuple[int, int, int]  # a voxel of the component (z, y, x), for navigation
    classes_a: tuple[int, ...]  # what reader A drew there (0: nothing)
    classes_b: tuple[int, ...]
    decision: str = ""  # "a", "b" or "" (undecided)

    @property
    def slices(self) -> tuple[int, int]:
        """First and last axial slice, numbered from 1."""
        return self.bbox[0] + 1, self.bbox[1]


def _difference_components(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Numbered connected regions (26-neighbourhood) of voxels where the maps differ in the same way (the
    same class drawn by A and by B), so that one decision settles one lesion of one class."""
    out = np.zeros(a.shape, np.int32)
    differ = a != b
    code = a.astype(np.int32) * 256 + b.astype(np.int32)
    n = 0
    for value in np.unique(code[differ]):
        labels, k = ndimage.label(differ & (code == value), structure=ndimage.generate_binary_structure(3, 3))
        out[labels > 0] = labels[labels > 0] + n
        n += k
    return out


class Adjudication:
    """Two readers' maps and the adjudicator's decisions; ``result`` is the map they make."""

    def __init__(self, a: np.ndarray, b: np.ndarray, reader_a: str = "A", reader_b: str = "B"):
        self.a, self.b = np.asarray(a, np.uint8), np.asarray(b, np.uint8)
        self.reader_a, self.reader_b = reader_a, reader_b
        self.categories = agreement_map(self.a, self.b)
        self._labels = _difference_components(self.a, self.b)
        objects = ndimage.find_objects(self._labels)
        found = []
        for i, sl in enumerate(objects, start=1):
            mask = self._labels[sl] == i
            points = np.argwhere(mask)
            where = points[len(points) // 2]
            bbox = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop, sl[2].start, sl[2].stop)
            found.append(Component(i, bbox, int(mask.sum()), tuple(int(w + s.start) for w, s in zip(where, sl)),
                                   tuple(int(v) for v in np.unique(self.a[sl][mask])),
                                   tuple(int(v) for v in np.unique(self.b[sl][mask]))))
        self.components = sorted(found, key=lambda c: -c.voxels)
        self.result = np.where(self.a == self.b, self.a, 0).astype(np.uint8)

    def mask(self, component: Component) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        z0, z1, y0, y1, x0, x1 = component.bbox
        sl = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
        return sl, self._labels[sl] == component.index

    def decide(self, position: int, choice: str) -> None:
        """Take the component at ``position`` (in ``components``) from reader "a" or "b" ("" undoes)."""
        if choice not in ("a", "b", ""):
            raise ValueError(f"choice {choice!r} is not 'a', 'b' or ''")
        comp = self.components[position]
        sl, m = self.mask(comp)
        source = self.a if choice == "a" else self.b if choice == "b" else None
        self.result[sl][m] = source[sl][m] if source is not None else 0
        comp.decision = choice

    def decide_all(self, choice: str) -> None:
        """Take every disagreeing component from one reader (accept A / accept B)."""
        for i in range(len(self.components)):
            self.decide(i, choice)

    @property
    def undecided(self) -> int:
        return sum(not c.decision for c in self.components)

    def next_undecided(self, after: int = -1) -> int | None:
        """The position of the next undecided component after ``after`` (wrapping), or None."""
        n = len(self.components)
        for k in range(1, n + 1):
            i = (after + k) % n
            if not self.components[i].decision:
                return i
        return None

    def decisions(self) -> dict:
        """What the adjudicator decided (for the audit log)."""
        return {"components": len(self.components),
                "from_a": sum(c.decision == "a" for c in self.components),
                "from_b": sum(c.decision == "b" for c in self.components),
                "undecided": self.undecided}
