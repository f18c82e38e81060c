"""``Delta``: one recorded change of a label array — bounding box, changed voxels, old and new values.

Only changed voxels are stored (mask bit-packed, values as uint8), never copies of the volume.
``apply``/``revert`` restore bit for bit; ``inverted`` gives the delta that undoes this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BBox = tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (half-open)


@dataclass(frozen=True, eq=False)
class Delta:
    bbox: BBox
    packed_mask: np.ndarray  # np.packbits of the bool mask of the bbox (C order)
    old: np.ndarray  # uint8 values of the changed voxels before (in mask order)
    new: np.ndarray  # uint8 values after

    @classmethod
    def from_mask(cls, bbox: BBox, mask: np.ndarray, old: np.ndarray, new: np.ndarray) -> "Delta":
        mask = np.asarray(mask, dtype=bool)
        return cls(tuple(int(b) for b in bbox), np.packbits(mask, axis=None),
                   np.asarray(old, np.uint8).copy(), np.asarray(new, np.uint8).copy())

    @classmethod
    def empty(cls) -> "Delta":
        return cls((0, 0, 0, 0, 0, 0), np.zeros(0, np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.uint8))

    @classmethod
    def write(cls, labels: np.ndarray, offset: tuple[int, int, int], change: np.ndarray, value: int) -> "Delta":
        """The delta that writes the class ``value`` where ``change`` is set.

        ``change`` is a bool array placed at ``offset`` (z, y, x) in ``labels``; the bbox is shrunk to it.
        """
        if not change.any():
            return cls.empty()
        nz = [np.flatnonzero(change.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        lo = [int(n[0]) for n in nz]
        hi = [int(n[-1]) + 1 for n in nz]
        sub = change[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        bbox = (offset[0] + lo[0], offset[0] + hi[0], offset[1] + lo[1], offset[1] + hi[1],
                offset[2] + lo[2], offset[2] + hi[2])
        region = labels[bbox[0]:bbox[1], bbox[2]:bbox[3], bbox[4]:bbox[5]]
        old = region[sub]
        return cls.from_mask(bbox, sub, old, np.full(old.shape, value, np.uint8))

    @classmethod
    def between(cls, old: np.ndarray, new: np.ndarray) -> "Delta":
        """The delta that turns the array ``old`` into ``new`` (same shape): their differing voxels."""
        if old.shape != new.shape:
            raise ValueError(f"shapes differ: {old.shape} != {new.shape}")
        change = old != new
        delta = cls.write(old, (0, 0, 0), change, 0)
        return cls(delta.bbox, delta.packed_mask, delta.old, new[delta.slices][delta.mask]) if delta else delta

    @property
    def shape(self) -> tuple[int, int, int]:
        z0, z1, y0, y1, x0, x1 = self.bbox
        return (z1 - z0, y1 - y0, x1 - x0)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        z0, z1, y0, y1, x0, x1 = self.bbox
        return slice(z0, z1), slice(y0, y1), slice(x0, x1)

    @property
    def mask(self) -> np.ndarray:
        n = int(np.prod(self.shape))
        return np.unpackbits(self.packed_mask, count=n).view(bool).reshape(self.shape)

    @property
    def count(self) -> int:
        """Number of changed voxels."""
        return int(self.old.size)

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def nbytes(self) -> int:
        return int(self.packed_mask.nbytes + self.old.nbytes + self.new.nbytes) + 64

    def problem(self, shape: tuple[int, ...], n_classes: int) -> str | None:
        """Why this delta cannot be applied to a label array of ``shape`` (None when it can): a box outside
        the array, mask and values of different lengths, values that are no class."""
        if len(self.bbox) != 6:
            return f"box {list(self.bbox)} does not have 6 numbers"
        z0, z1, y0, y1, x0, x1 = self.bbox
        if len(shape) != 3 or not (0 <= z0 <= z1 <= shape[0] and 0 <= y0 <= y1 <= shape[1]
                                   and 0 <= x0 <= x1 <= shape[2]):
            return f"box {list(self.bbox)} lies outside the label map {tuple(shape)}"
        n = int(np.prod(self.shape))
        if self.packed_mask.size != (n + 7) // 8:
            return f"mask holds {self.packed_mask.size * 8} bits for a box of {n} voxels"
        count = int(np.count_nonzero(np.unpackbits(self.packed_mask, count=n)))
        if not count == self.old.size == self.new.size:
            return f"{count} changed voxels but {self.old.size} old and {self.new.size} new values"
        if self.count and max(int(self.new.max()), int(self.old.max())) >= n_classes:
            return f"value {max(int(self.new.max()), int(self.old.max()))} is not a class (0..{n_classes - 1})"
        return None

    def apply(self, labels: np.ndarray) -> None:
        if self.count:
            labels[self.slices][self.mask] = self.new

    def revert(self, labels: np.ndarray) -> None:
        if self.count:
            labels[self.slices][self.mask] = self.old

    def inverted(self) -> "Delta":
        return Delta(self.bbox, self.packed_mask, self.new, self.old)


def union_bbox(boxes) -> BBox | None:
    boxes = [b for b in boxes if b[1] > b[0]]
    if not boxes:
        return None
    a = np.asarray(boxes)
    return (int(a[:, 0].min()), int(a[:, 1].max()), int(a[:, 2].min()), int(a[:, 3].max()),
            int(a[:, 4].min()), int(a[:, 5].max()))
