"""Per-class findings of a label map: volume, slices, scan-level detection, and ABC/2 for ICH.

``compute_findings(labels)`` gives a ``Findings`` (one ``ClassFinding`` per lesion class) that the GUI's
findings panel shows and that exports to CSV or JSON (written atomically). Slices are numbered from 1 in
everything a person reads (``slices_text``, the CSV and JSON); ``ClassFinding.slices`` keeps z indices.

``SliceCounts`` holds the voxels of each class per axial slice and is recounted only on the slices an
edit touched; ``findings_from_counts`` turns it into findings without ABC/2 at once (the GUI shows
volumes while ABC/2, which needs the 3-D components, is computed in the background).

``model_confidence`` (mean probability of the model for the class it drew, and the share of that region
where the probability was below ``UNCERTAIN_BELOW``) and ``class_origin`` (whether a class is exactly as
the model drew it, edited by a person, or drawn by a person) say how far a finding can be trusted.

ABC/2 (Kothari et al., Stroke 1996) on the largest connected ICH component:
- A: the largest diameter (mm) on the slice where the hemorrhage area is largest,
- B: the largest extent (mm) perpendicular to A on that slice,
- C: slice thickness times the weighted number of slices: a slice counts 1 when its area is at least
  75 % of the largest, 0.5 when 25-75 %, 0 below 25 %;
- volume = A * B * C / 2.
Diameters are measured edge to edge (pixel corners), as a caliper on the image would.

Review labels (``ctseg_core.labels.REVIEW_CLASSES``) get a row only when present: unassigned extra-axial
hemorrhage (blood; the reviewer assigns it to SDH, EDH or SAH) and perilesional oedema (``hemorrhage``
False: never part of a blood total). ``Findings.model`` names the model that drew the labels.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from ctseg_core.atomic import atomic_write_text
from ctseg_core.labels import LESION_CLASSES, NUM_LABEL_VALUES, REVIEW_CLASSES
from ctseg_core.metrics import MIN_CONSECUTIVE_SLICES, longest_run
from ctseg_core.volume import LabelMap


ICH_ID = 1
UNCERTAIN_BELOW = 0.5  # a voxel is uncertain when the model gave its class less than this probability
ORIGINS = {"model": "as the model drew it", "edited": "the model's region, changed by a person",
           "person": "drawn by a person (the model drew none)"}


@dataclass
class ABC2:
    a_mm: float
    b_mm: float
    c_mm: float
    slice_index: int  # the slice of largest area, where A and B were measured
    volume_ml: float


@dataclass
class Confidence:
    mean_probability: float  # the model's mean probability for this class over the voxels it gave it
    uncertain_fraction: float  # share of those voxels where that probability was below UNCERTAIN_BELOW
    voxels: int  # voxels the model gave this class (with a known probability)


@dataclass
class ClassFinding:
    class_id: int
    key: str
    name: str
    voxels: int
    volume_ml: float
    slices: list[int] = field(default_factory=list)  # z indices (0-based) where the class is present
    positive: bool = False  # present on MIN_CONSECUTIVE_SLICES or more consecutive slices
    abc2: ABC2 | None = None  # ICH only (None elsewhere or when absent)
    hemorrhage: bool = True  # False for oedema: not blood, never part of a blood total
    note: str = ""  # what a review label means and what the reviewer should do with it
    confidence: Confidence | None = None  # the model's, where it drew this class (None: unknown)
    origin: str = ""  # a key of ORIGINS ("" = unknown or absent)

    @property
    def slice_numbers(self) -> list[int]:
        """The slices as people count them (1 = the first axial slice)."""
        return [z + 1 for z in self.slices]

    @property
    def slices_text(self) -> str:
        """ "3-6, 9": 1-based slice numbers."""
        return format_slice_ranges(self.slice_numbers)


@dataclass
class Findings:
    classes: list[ClassFinding]
    source: str = ""  # which label map: "final", "prediction", a file name ...
    scan: str = ""  # description or path of the scan
    model: str = ""  # the model that made the prediction ("" = none or unknown)
    review: str = ""  # the case's review state, e.g. "corrected by dr_x" or "not reviewed"

    def by_key(self, key: str) -> ClassFinding:
        return next(c for c in self.classes if c.key == key)

    def to_dict(self) -> dict:
        classes = []
        for c in self.classes:
            d = asdict(c)
            d["slices"] = c.slice_numbers
            if d["abc2"] is not None:
                d["abc2"]["slice"] = d["abc2"].pop("slice_index") + 1
            classes.append(d)
        return {"scan": self.scan, "source": self.source, "model": self.model, "review": self.review,
                "rule": f"positive = present on {MIN_CONSECUTIVE_SLICES}+ consecutive slices",
                "slice_numbering": "1 = the first axial slice of the scan as loaded",
                "confidence": f"the model's mean probability for the class over the voxels it gave it; uncertain "
                              f"= the share of those voxels with a probability below {UNCERTAIN_BELOW}",
                "classes": classes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["class_id", "key", "name", "voxels", "volume_ml", "slices", "positive",
                         "abc2_ml", "abc2_a_mm", "abc2_b_mm", "abc2_c_mm", "hemorrhage", "model_mean_probability",
                         "model_uncertain_fraction", "origin", "model", "review"])
        for c in self.classes:
            abc, conf = c.abc2, c.confidence
            writer.writerow([c.class_id, c.key, c.name, c.voxels, f"{c.volume_ml:.3f}", c.slices_text,
                             int(c.positive),
                             "" if abc is None else f"{abc.volume_ml:.3f}",
                             "" if abc is None else f"{abc.a_mm:.1f}",
                             "" if abc is None else f"{abc.b_mm:.1f}",
                             "" if abc is None else f"{abc.c_mm:.1f}",
                             int(c.hemorrhage),
                             "" if conf is None else f"{conf.mean_probability:.3f}",
                             "" if conf is None else f"{conf.uncertain_fraction:.3f}",
                             c.origin, self.model, self.review])
        return out.getvalue()


class SliceCounts:
    """Voxels of each class on each axial slice, ``counts[z, class]``, of one label array; ``update``
    recounts only the slices an edit touched."""

    def __init__(self, array: np.ndarray | None, shape: tuple[int, int, int] | None = None):
        """Count ``array``; or, with ``array`` None, the counts of an empty (all background) map of ``shape``."""
        shape = array.shape if array is not None else shape
        self.counts = np.zeros((shape[0], NUM_LABEL_VALUES), np.int64)
        if array is None:
            self.counts[:, 0] = shape[1] * shape[2]
        else:
            self.update(array)

    def update(self, array: np.ndarray, z0: int = 0, z1: int | None = None) -> None:
        z1 = array.shape[0] if z1 is None else z1
        n = NUM_LABEL_VALUES
        for z in range(max(z0, 0), min(z1, array.shape[0])):
            self.counts[z] = np.bincount(array[z].ravel(), minlength=n)[:n]


def findings_from_counts(counts: SliceCounts, geometry, source: str = "", scan: str = "",
                         model: str = "") -> Findings:
    """Volumes, slices and the detection rule from per-slice counts (no ABC/2: see ``add_abc2``): a row
    per lesion class, and one per review label present."""
    per_slice = counts.counts
    voxel_ml = geometry.voxel_volume_ml
    totals = per_slice.sum(axis=0)
    findings = []
    for cls in LESION_CLASSES + tuple(c for c in REVIEW_CLASSES if totals[c.id] > 0):
        slices = np.flatnonzero(per_slice[:, cls.id]).tolist()
        voxels = int(totals[cls.id])
        findings.append(ClassFinding(class_id=cls.id, key=cls.key, name=cls.name, voxels=voxels,
                                     volume_ml=voxels * voxel_ml, slices=slices,
                                     positive=longest_run(slices) >= MIN_CONSECUTIVE_SLICES,
                                     hemorrhage=cls.hemorrhage, note=cls.note if cls in REVIEW_CLASSES else ""))
    return Findings(findings, source=source, scan=scan, model=model)


def add_abc2(findings: Findings, labels: LabelMap) -> Findings:
    """Fill in ABC/2 of ICH (its largest 3-D component) when ICH is present."""
    ich = next(c for c in findings.classes if c.class_id == ICH_ID)
    ich.abc2 = abc2_estimate(labels.array == ICH_ID, labels.geometry.spacing) if ich.voxels else None
    return findings


def compute_findings(labels: LabelMap, source: str = "", scan: str = "", model: str = "") -> Findings:
    """Findings for every lesion class of ``labels`` (absent classes get zero volume, negative), plus a
    row for each review label present."""
    return add_abc2(findings_from_counts(SliceCounts(labels.array), labels.geometry, source, scan, model), labels)


def reviewed_findings(labels: LabelMap, prediction: np.ndarray | None = None, uncertainty: np.ndarray | None = None,
                      model: str = "", review: str = "", source: str = "", scan: str = "") -> Findings:
    """``compute_findings`` plus what a reader needs to weigh them: the model's confidence per class (from
    its ``prediction`` and ``uncertainty``), each class's origin, the model's name and the review state."""
    findings = compute_findings(labels, source=source, scan=scan)
    confidence = model_confidence(prediction, uncertainty) if prediction is not None and uncertainty is not None \
        else {}
    origin = class_origin(labels.array, prediction)
    for c in findings.classes:
        c.confidence, c.origin = confidence.get(c.class_id), origin.get(c.class_id, "")
    findings.model, findings.review = model, review
    return findings


def model_confidence(prediction: np.ndarray, uncertainty: np.ndarray) -> dict[int, Confidence]:
    """{lesion class id: Confidence} over the voxels the model gave each class, from its labels and its
    uncertainty (1 - the top class probability, the probability of the class it drew); NaN = unknown."""
    known = np.isfinite(uncertainty)
    labels = prediction[known]
    prob = 1.0 - uncertainty[known].astype(np.float64)
    n = NUM_LABEL_VALUES
    voxels = np.bincount(labels, minlength=n)[:n]
    sums = np.bincount(labels, weights=prob, minlength=n)[:n]
    unsure = np.bincount(labels[prob < UNCERTAIN_BELOW], minlength=n)[:n]
    return {c.id: Confidence(float(sums[c.id] / voxels[c.id]), float(unsure[c.id] / voxels[c.id]),
                             int(voxels[c.id]))
            for c in LESION_CLASSES + REVIEW_CLASSES if voxels[c.id] > 0}


def class_origin(final: np.ndarray, prediction: np.ndarray | None) -> dict[int, str]:
    """{lesion class id present in ``final``: a key of ORIGINS}: "model" where the class is exactly as the
    model drew it, "edited" where a person changed it, "person" where the model drew none of it."""
    n = NUM_LABEL_VALUES
    in_final = np.bincount(final.ravel(), minlength=n)[:n] > 0
    if prediction is None:
        return {c.id: "person" for c in LESION_CLASSES + REVIEW_CLASSES if in_final[c.id]}
    in_pred = np.bincount(prediction.ravel(), minlength=n)[:n] > 0
    diff = final != prediction
    changed = np.zeros(n, bool)
    changed[np.unique(final[diff])] = True
    changed[np.unique(prediction[diff])] = True
    return {c.id: ("person" if not in_pred[c.id] else "edited" if changed[c.id] else "model")
            for c in LESION_CLASSES + REVIEW_CLASSES if in_final[c.id]}


def write_findings_csv(findings: Findings, path) -> None:
    atomic_write_text(path, findings.to_csv())


def write_findings_json(findings: Findings, path) -> None:
    atomic_write_text(path, findings.to_json())


def format_slice_ranges(slices: list[int]) -> str:
    """[2, 3, 4, 7] -> "2-4, 7" (the numbers as given)."""
    parts, start, prev = [], None, None
    for z in slices:
        if start is None:
            start = prev = z
        elif z == prev + 1:
            prev = z
        else:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = z
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(parts)


def abc2_estimate(mask: np.ndarray, spacing_zyx) -> ABC2 | None:
    """ABC/2 of the largest 3-D connected component of a boolean mask (z, y, x); None if empty."""
    from scipy import ndimage

    box = ndimage.find_objects(mask.astype(np.uint8))
    if not box or box[0] is None:
        return None
    offset = box[0][0].start
    mask = mask[box[0]]
    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        mask = comp == int(np.argmax(sizes))
    areas = mask.sum(axis=(1, 2))
    z_max = int(np.argmax(areas))
    a_mm, b_mm = planar_diameters_mm(mask[z_max], spacing_zyx[1], spacing_zyx[2])
    frac = areas / areas[z_max]
    weighted = float(np.sum(frac >= 0.75) + 0.5 * np.sum((frac >= 0.25) & (frac < 0.75)))
    c_mm = weighted * float(spacing_zyx[0])
    return ABC2(a_mm, b_mm, c_mm, z_max + offset, a_mm * b_mm * c_mm / 2.0 / 1000.0)


def planar_diameters_mm(mask_yx: np.ndarray, sy: float, sx: float) -> tuple[float, float]:
    """(largest diameter, largest extent perpendicular to it) of a 2-D mask, edge to edge, in mm."""
    pts = _corner_points_mm(mask_yx, sy, sx)
    hull = _hull_points(pts)
    d = hull[:, None, :] - hull[None, :, :]
    dist2 = np.einsum("ijk,ijk->ij", d, d)
    i, j = np.unravel_index(int(np.argmax(dist2)), dist2.shape)
    a = float(np.sqrt(dist2[i, j]))
    if a == 0:
        return 0.0, 0.0
    axis = (hull[j] - hull[i]) / a
    perp = np.array([-axis[1], axis[0]])
    proj = hull @ perp
    return a, float(proj.max() - proj.min())


def _corner_points_mm(mask_yx: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """The corners (y, x in mm) of the mask's boundary pixels."""
    from scipy import ndimage

    edge = mask_yx & ~ndimage.binary_erosion(mask_yx)
    ys, xs = np.nonzero(edge)
    corners = [(ys + dy, xs + dx) for dy in (0, 1) for dx in (0, 1)]
    y = np.concatenate([c[0] for c in corners]) * sy
    x = np.concatenate([c[1] for c in corners]) * sx
    return np.unique(np.stack([y, x], axis=1), axis=0)


def _hull_points(pts: np.ndarray) -> np.ndarray:
    if len(pts) < 4:
        return pts
    from scipy.spatial import ConvexHull, QhullError

    try:
        return pts[ConvexHull(pts).vertices]
    except QhullError:  # collinear points (a one-pixel line)
        return pts
