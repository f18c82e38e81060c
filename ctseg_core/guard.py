"""The anatomical guard: an optional post-processing step of the predictor that removes results which
cannot be hemorrhage whatever the model says.

1. **Inside the skull.** Every class is intracranial. Per slice, the bone (> ``bone_hu``) of the head (the
   largest connected part of the body, so not the headrest) is closed over gaps (sutures, foramina, burr
   holes; a larger radius where it encloses clearly more, as over a craniotomy) and its holes filled;
   what is enclosed and is not bone, grown by ``margin_mm`` (partial volume at the inner table), is the
   intracranial cavity. Where no ring encloses a fair share of the head (the skull base, a wide
   defect), the cavity falls back to the convex hull of the slice's bone, which contains it: the guard
   errs towards keeping a voxel, never towards removing an intracranial one. A slice without bone has
   no cavity.
2. **Plausible CT numbers.** Each class keeps only voxels whose local HU (3x3 in-plane median: robust to
   noise and to a bony neighbour; the voxel's own HU for air pockets)
   lies within the class's window (``HU_WINDOWS``): acute blood is not 400 HU, chronic blood is not
   air, air is not brain. The windows are wide (partial volume, noise, haematocrit).

3. **No specks.** Once every slice is done, each 3-D connected piece of a class (26-connected) smaller than
   ``min_piece_ml`` (0.01 mL, 10 mm^3: about ten voxels of 0.45 x 0.45 x 5 mm) is set to background. A
   reader does not call a finding of that size, and every such piece ctseg's model painted on the 47
   held-out generated scans was a false alarm or a crumb of a larger finding (docs/models.md, "Specks"):
   removing them took no scan's finding away and raised the Table-I-style sample Dice by 0.05-0.08. The
   generated truth does hold pieces that small (crumbs of thin subarachnoid and subdural blood cut by 5-mm
   slices, 1.1 mL in all over those scans), so this rule, unlike 1 and 2, may take true voxels; the lesion list already
   leaves out pieces under 0.05 mL.
4. **Only pieces the model is sure of.** Each 3-D piece of a class (26-connected, what rules 1-3 left) whose
   mean probability of that class is under ``min_piece_confidence`` is set to background. The threshold
   belongs to a model (its calibration), so it is read from the model card (``ModelCard.guard``), where it
   was chosen on held-out cases that the model never trained on (docs/models.md, "Unsure pieces"); a
   model whose card names none is not filtered. A false alarm is mostly a piece the model paints
   hesitantly (the bundled aa_unet's false pieces on held-out cases: three in four under 0.92, while 99.7 %
   of what it painted truly lies in pieces above that); a small true finding can be hesitant too, so this
   rule, like 3, may take true voxels.
5. **One type per collection.** Extra-axial blood (acute subdural, epidural, chronic subdural) that touches
   in 3-D (26-connected, what rules 1-4 left) is one collection; where one of the three types holds at least
   ``min_type_share`` of the collection's summed probability of the three, the whole collection is given
   that type (nothing is removed). The model's commonest mistake on held-out cases was the type, not the
   blood: the dense part of a chronic collection or a thin rim of an epidural one painted as acute subdural
   (docs/models.md, "One type per collection"). Like rule 4's threshold, the share is the model's, read from
   its card (a card without one: no retyping). A collection that truly holds two types (an epidural beside
   a subdural) keeps them where the model is not that sure of one; where it is, the minority type is lost,
   which the guard's report says (mL retyped) and switching the guard off shows.

Rules 1 and 2 work slice by slice, so the predictor applies them to each slice as it arrives, and rules 3
to 5 to the finished volume (``finish``). The guard changes the label map only; probabilities are left
as the model gave them, and switching it off shows what the model painted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from ctseg_core.labels import CLASS_BY_KEY

# class id -> (lowest, highest) HU of the 3x3-averaged image that the class may have
HU_WINDOWS: dict[int, tuple[float, float]] = {  # wide: partial volume with the inner table raises a rim's median
    CLASS_BY_KEY["ich"].id: (5.0, 230.0),
    CLASS_BY_KEY["sdh"].id: (5.0, 230.0),
    CLASS_BY_KEY["sah"].id: (-5.0, 200.0),
    CLASS_BY_KEY["edh"].id: (5.0, 230.0),
    CLASS_BY_KEY["csdh"].id: (-45.0, 200.0),
    CLASS_BY_KEY["pneumocephalus"].id: (-1100.0, -100.0),
    CLASS_BY_KEY["ivh"].id: (-5.0, 200.0),
}

# the extra-axial types rule 5 gives one per collection: acute subdural, epidural, chronic subdural
EXTRA_AXIAL = tuple(CLASS_BY_KEY[k].id for k in ("sdh", "edh", "csdh"))

# air pockets may be one voxel wide, where a median would see the brain around them; air against brain
# needs no smoothing
RAW_HU_CLASSES = frozenset({CLASS_BY_KEY["pneumocephalus"].id})


@dataclass(frozen=True)
class Guard:
    bone_hu: float = 300.0  # HU above which a voxel of the head counts as skull
    body_hu: float = -200.0  # HU above which a voxel is part of the body (head, headrest, ...)
    closing_mm: tuple[float, ...] = (5.0, 15.0)  # radii tried for closing gaps in the skull ring
    margin_mm: float = 3.0  # the cavity is grown by this much
    min_share: float = 0.2  # an enclosed cavity smaller than this share of the head is taken as no ring
    coarse_mm: float = 1.0  # the cavity is found on a grid of about this pixel size (speed)
    hu_windows: dict = field(default_factory=lambda: dict(HU_WINDOWS))
    min_piece_ml: float = 0.01  # 3-D pieces of a class smaller than this are removed (0: none)
    # 3-D pieces whose mean probability of their class is under this are removed (0: none); None: the
    # value the model card names (``for_card``), none where it names none
    min_piece_confidence: float | None = None
    # an extra-axial collection takes its leading type where that type holds at least this share of the
    # collection's extra-axial probability (0: never); None: the value the model card names, none where it names none
    min_type_share: float | None = None

    def for_card(self, card) -> "Guard":
        """This guard with the model's own settings (rule 4's threshold, rule 5's share) taken from the model card
        where the guard sets none itself."""
        named = getattr(card, "guard", None) or {}
        own = {}
        if self.min_piece_confidence is None:
            own["min_piece_confidence"] = float(named.get("min_piece_confidence") or 0.0)
        if self.min_type_share is None:
            own["min_type_share"] = float(named.get("min_type_share") or 0.0)
        return replace(self, **own) if own else self

    def cavity(self, hu_yx: np.ndarray, spacing_yx) -> np.ndarray:
        """bool (y, x): the intracranial cavity of one slice (grown by the margin)."""
        hu_yx = np.asarray(hu_yx)
        f = max(1, int(round(self.coarse_mm / max(float(min(spacing_yx)), 1e-6))))
        coarse = tuple(float(s) * f for s in spacing_yx)
        body = _opening(_block_any(hu_yx > self.body_hu, f), 3.0, coarse)
        head = _largest_component(body)  # not the headrest or the table (opening cuts thin bridges to them)
        bone = _block_any(hu_yx > self.bone_hu, f) & head
        if bone.sum() < 5:
            return np.zeros(hu_yx.shape, bool)
        inside = self._enclosed(bone, coarse)
        if inside.sum() < self.min_share * head.sum():  # no ring on this slice: the bone's hull contains the cavity
            inside = _convex_hull_mask(bone) & ~bone
        grown = _dilation(inside, self.margin_mm, coarse)
        return np.repeat(np.repeat(grown, f, axis=0), f, axis=1)[: hu_yx.shape[0], : hu_yx.shape[1]]

    def _enclosed(self, bone: np.ndarray, spacing_yx) -> np.ndarray:
        """What the skull ring encloses: closed with the smallest radius unless a larger one encloses
        clearly more (a gap such as a burr hole or a craniotomy)."""
        best = None
        for r in self.closing_mm:
            inside = ndi.binary_fill_holes(_closing(bone, r, spacing_yx)) & ~bone
            if best is None or inside.sum() > 1.3 * best.sum():
                best = inside
        return best

    def apply_slice(self, hu_yx: np.ndarray, labels_yx: np.ndarray, spacing_yx) -> np.ndarray:
        """Labels of one slice with what the guard rules out set to background (a new array)."""
        out = np.array(labels_yx, dtype=np.uint8, copy=True)
        if not out.any():
            return out
        out[~self.cavity(hu_yx, spacing_yx)] = 0
        raw = np.asarray(hu_yx, np.float32)
        local_hu = ndi.median_filter(raw, size=3, mode="nearest")
        for cls, (lo, hi) in self.hu_windows.items():
            sel = out == cls
            if sel.any():
                value = raw if cls in RAW_HU_CLASSES else local_hu
                out[sel & ((value < lo) | (value > hi))] = 0
        return out

    def apply(self, hu_zyx: np.ndarray, labels_zyx: np.ndarray, spacing_zyx) -> np.ndarray:
        """The guard on a whole volume: rules 1 and 2 slice by slice, then rule 3."""
        kept = np.stack([self.apply_slice(hu_zyx[z], labels_zyx[z], spacing_zyx[1:]) for z in range(len(hu_zyx))])
        return self.remove_specks(kept, spacing_zyx)

    def finish(self, model_labels_zyx: np.ndarray, labels_zyx: np.ndarray, probs_zcyx: np.ndarray, channel_labels,
               spacing_zyx) -> tuple[np.ndarray, "GuardReport"]:
        """Rules 3 to 5 on a finished volume whose slices had rules 1 and 2 (``labels_zyx``; the model's own
        labels ``model_labels_zyx``): what the predictor does once every slice is done. (new labels, what each
        rule removed or retyped)"""
        kept = self.remove_specks(labels_zyx, spacing_zyx)
        sure, unsure_pieces = self._without_unsure(kept, probs_zcyx, channel_labels)
        final, collections = self._one_type(sure, probs_zcyx, channel_labels)
        voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
        report = GuardReport(slice_rules_ml=float(((model_labels_zyx > 0) & (labels_zyx == 0)).sum()) * voxel_ml,
                             specks_ml=float(((labels_zyx > 0) & (kept == 0)).sum()) * voxel_ml,
                             unsure_ml=float(((kept > 0) & (sure == 0)).sum()) * voxel_ml,
                             unsure_pieces=unsure_pieces, threshold=float(self.min_piece_confidence or 0.0),
                             retyped_ml=float((sure != final).sum()) * voxel_ml, retyped_collections=collections,
                             type_share=float(self.min_type_share or 0.0))
        return final, report

    def one_type(self, labels_zyx: np.ndarray, probs_zcyx: np.ndarray, channel_labels=None) -> np.ndarray:
        """Labels with each extra-axial collection whose leading type holds at least ``min_type_share`` of its
        summed extra-axial probability given that type (rule 5; a new array)."""
        return self._one_type(labels_zyx, probs_zcyx, channel_labels)[0]

    def _one_type(self, labels_zyx, probs_zcyx, channel_labels) -> tuple[np.ndarray, int]:
        """(``one_type``'s labels, how many collections it retyped)"""
        out = np.array(labels_zyx, dtype=np.uint8, copy=True)
        channels = list(channel_labels) if channel_labels is not None else list(range(probs_zcyx.shape[1]))
        types = [c for c in EXTRA_AXIAL if c in channels]
        if not self.min_type_share or len(types) < 2 or not np.isin(out, types).any():
            return out, 0
        pieces, n = _connected_pieces(np.isin(out, types))
        ids = np.arange(1, n + 1)
        sums = np.stack([ndi.sum_labels(np.asarray(probs_zcyx[:, channels.index(c)], np.float32), pieces, ids)
                         for c in types])
        lead = leading_types(sums, self.min_type_share)
        target = np.where(lead >= 0, np.asarray(types)[np.maximum(lead, 0)], 0)  # 0: keeps its types
        per_voxel = np.concatenate([[0], target]).astype(np.uint8)[pieces]
        changed = (per_voxel > 0) & (out != per_voxel)
        out[per_voxel > 0] = per_voxel[per_voxel > 0]
        return out, int(np.unique(pieces[changed]).size)

    def remove_specks(self, labels_zyx: np.ndarray, spacing_zyx) -> np.ndarray:
        """Labels with every 26-connected piece of a class under ``min_piece_ml`` set to background (a new
        array; the whole volume is needed, so the predictor calls this when every slice is done)."""
        out = np.array(labels_zyx, dtype=np.uint8, copy=True)
        voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
        if self.min_piece_ml <= 0 or not out.any():
            return out
        for cls in np.unique(out[out > 0]):
            pieces, _ = _connected_pieces(out == cls)
            small = np.nonzero(np.bincount(pieces.ravel())[1:] * voxel_ml < self.min_piece_ml)[0] + 1
            if small.size:
                out[np.isin(pieces, small)] = 0
        return out

    def remove_unsure(self, labels_zyx: np.ndarray, probs_zcyx: np.ndarray, channel_labels=None) -> np.ndarray:
        """Labels with every 26-connected piece of a class whose mean probability of that class (``probs_zcyx``
        channel of the class's label value in ``channel_labels``; None: channel i is label i) is under
        ``min_piece_confidence`` set to background (a new array)."""
        return self._without_unsure(labels_zyx, probs_zcyx, channel_labels)[0]

    def _without_unsure(self, labels_zyx, probs_zcyx, channel_labels) -> tuple[np.ndarray, int]:
        """(``remove_unsure``'s labels, how many pieces it removed)"""
        out = np.array(labels_zyx, dtype=np.uint8, copy=True)
        if not self.min_piece_confidence or not out.any():
            return out, 0
        channels = list(channel_labels) if channel_labels is not None else list(range(probs_zcyx.shape[1]))
        removed = 0
        for cls in np.unique(out[out > 0]):
            if int(cls) not in channels:  # a label the model has no probability for: nothing to judge by
                continue
            pieces, means = piece_confidences(out, probs_zcyx[:, channels.index(int(cls))], int(cls))
            unsure = np.flatnonzero(means < self.min_piece_confidence) + 1
            if unsure.size:
                out[np.isin(pieces, unsure)] = 0
                removed += int(unsure.size)
        return out, removed


def leading_types(sums: np.ndarray, min_share: float) -> np.ndarray:
    """Rule 5 on collections whose summed probability of each type is ``sums`` (types, collections): per
    collection, the index of the type it takes, or -1 where no type holds ``min_share`` of it (0: never)."""
    share = sums.max(axis=0) / np.maximum(sums.sum(axis=0), 1e-12)
    return np.where((share >= min_share) & (min_share > 0), sums.argmax(axis=0), -1)


def piece_confidences(labels_zyx: np.ndarray, prob_zyx: np.ndarray, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """The 26-connected pieces of class ``cls`` (piece number per voxel, 0 outside) and the mean of ``prob_zyx``
    (that class's probability) over each: ``means[i - 1]`` is piece i's."""
    pieces, n = _connected_pieces(labels_zyx == cls)
    prob = np.asarray(prob_zyx, dtype=np.float32)
    return pieces, np.asarray(ndi.mean(prob, pieces, np.arange(1, n + 1)), dtype=np.float64).reshape(n)


@dataclass(frozen=True)
class GuardReport:
    """What the guard took from the model's labels of one scan, in mL: rules 1-2 (outside the cranial cavity or
    at CT numbers implausible for the class), rule 3 (specks), rule 4 (pieces the model was unsure of); and what
    rule 5 gave another type (extra-axial collections given their leading type)."""

    slice_rules_ml: float
    specks_ml: float
    unsure_ml: float
    unsure_pieces: int
    threshold: float  # rule 4's (0: off)
    retyped_ml: float = 0.0
    retyped_collections: int = 0
    type_share: float = 0.0  # rule 5's (0: off)

    @property
    def total_ml(self) -> float:
        return self.slice_rules_ml + self.specks_ml + self.unsure_ml

    def brief(self) -> str:
        """A few words for a status line: what the guard removed and retyped."""
        retyped = f" and gave {self.retyped_ml:.2f} mL another type" if self.retyped_ml else ""
        return f"the anatomical guard removed {self.total_ml:.2f} mL{retyped}"

    def describe(self) -> str:
        """One line for a log or a terminal."""
        retyped = (f"; it gave {self.retyped_ml:.2f} mL in {self.retyped_collections} extra-axial collection(s) the "
                   f"type of the rest of the collection" if self.retyped_ml else "")
        if self.total_ml == 0:
            return "the anatomical guard removed nothing the model painted" + retyped
        unsure = (f"{self.unsure_ml:.2f} mL in {self.unsure_pieces} piece(s) the model was unsure of (mean "
                  f"probability under {self.threshold:g})" if self.threshold else "no unsure-piece rule for this model")
        return (f"the anatomical guard removed {self.total_ml:.2f} mL the model painted: {self.slice_rules_ml:.2f} mL "
                f"outside the cranial cavity or at implausible CT numbers, {self.specks_ml:.2f} mL of specks, {unsure}"
                + retyped)


def _connected_pieces(mask_zyx: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected 3-D pieces of a mask: (piece number per voxel, 0 outside; number of pieces)."""
    return ndi.label(mask_zyx, structure=np.ones((3, 3, 3), bool))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def _block_any(mask: np.ndarray, f: int) -> np.ndarray:
    """(ceil(H/f), ceil(W/f)) bool: True where any pixel of the f x f block is."""
    if f == 1:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, ((0, -h % f), (0, -w % f)))
    return padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).any(axis=(1, 3))


# morphology with a disk of a radius in mm, through Euclidean distance transforms (linear time whatever the radius)
def _dilation(mask: np.ndarray, radius_mm: float, spacing_yx) -> np.ndarray:
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask, sampling=spacing_yx) <= radius_mm


def _erosion(mask: np.ndarray, radius_mm: float, spacing_yx) -> np.ndarray:
    return ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing_yx)[1:-1, 1:-1] > radius_mm


def _closing(mask: np.ndarray, radius_mm: float, spacing_yx) -> np.ndarray:
    r = int(np.ceil(radius_mm / min(spacing_yx))) + 1  # room around the mask so the dilation is not cut
    padded = np.pad(mask, r)
    closed = _erosion(_dilation(padded, radius_mm, spacing_yx), radius_mm, spacing_yx)
    return closed[r:-r, r:-r]


def _opening(mask: np.ndarray, radius_mm: float, spacing_yx) -> np.ndarray:
    return _dilation(_erosion(mask, radius_mm, spacing_yx), radius_mm, spacing_yx)


def _convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """bool mask of the convex hull of ``mask``'s pixels (pixel centres on or inside the hull)."""
    pts = np.argwhere(mask)
    out = np.zeros(mask.shape, bool)
    if len(pts) < 3:
        out[mask] = True
        return out
    try:
        hull = ConvexHull(pts)
    except QhullError:  # all pixels on a line
        out[mask] = True
        return out
    (y0, x0), (y1, x1) = pts.min(axis=0), pts.max(axis=0) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)
    a, b = hull.equations[:, :2], hull.equations[:, 2]
    inside = np.all(grid @ a.T + b <= 1e-9, axis=1)
    out[y0:y1, x0:x1] = inside.reshape(yy.shape)
    return out
