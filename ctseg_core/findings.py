"""Per-class findings of a label map: volume, slices, scan-level detection, and ABC/2 for ICH.

``compute_findings(labels)`` gives a ``Findings`` (one ``ClassFinding`` per lesion class) that the GUI's
findings panel shows and that exports to CSV or JSON (written atomically).

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
from ctseg_core.metrics import MIN_CONSECUTIVE_SLICES, class_volumes_ml, longest_run
from ctseg_core.volume import LabelMap


ICH_ID = 1


@dataclass
class ABC2:
    a_mm: float
    b_mm: float
    c_mm: float
    slice_index: int  # the slice of largest area, where A and B were measured
    volume_ml: float


@dataclass
class ClassFinding:
    class_id: int
    key: str
    name: str
    voxels: int
    volume_ml: float
    slices: list[int] = field(default_factory=list)  # z indices where the class is present
    positive: bool = False  # present on MIN_CONSECUTIVE_SLICES or more consecutive slices
    abc2: ABC2 | None = None  # ICH only (None elsewhere or when absent)
    hemorrhage: bool = True  # False for oedema: not blood, never part of a blood total
    note: str = ""  # what a review label means and what the reviewer should do with it

    @property
    def slices_text(self) -> str:
        return format_slice_ranges(self.slices)


@dataclass
class Findings:
    classes: list[ClassFinding]
    source: str = ""  # which label map: "final", "prediction", a file name ...
    scan: str = ""  # description or path of the scan
    model: str = ""  # the model that drew the prediction these labels come from ("" unknown or none)

    def by_key(self, key: str) -> ClassFinding:
        return next(c for c in self.classes if c.key == key)

    def to_dict(self) -> dict:
        return {"scan": self.scan, "source": self.source, "model": self.model,
                "rule": f"positive = present on {MIN_CONSECUTIVE_SLICES}+ consecutive slices",
                "classes": [asdict(c) for c in self.classes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["class_id", "key", "name", "voxels", "volume_ml", "slices", "positive",
                         "abc2_ml", "abc2_a_mm", "abc2_b_mm", "abc2_c_mm", "hemorrhage", "model"])
        for c in self.classes:
            abc = c.abc2
            writer.writerow([c.class_id, c.key, c.name, c.voxels, f"{c.volume_ml:.3f}", c.slices_text,
                             int(c.positive),
                             "" if abc is None else f"{abc.volume_ml:.3f}",
                             "" if abc is None else f"{abc.a_mm:.1f}",
                             "" if abc is None else f"{abc.b_mm:.1f}",
                             "" if abc is None else f"{abc.c_mm:.1f}",
                             int(c.hemorrhage), self.model])
        return out.getvalue()


def compute_findings(labels: LabelMap, source: str = "", scan: str = "", model: str = "") -> Findings:
    """Findings for every lesion class of ``labels`` (absent classes get zero volume, negative), plus a
    row for each review label present."""
    arr = labels.array
    counts = np.bincount(arr.ravel(), minlength=NUM_LABEL_VALUES)
    rows = LESION_CLASSES + tuple(c for c in REVIEW_CLASSES if counts[c.id] > 0)
    volumes = class_volumes_ml(labels, rows)
    present_z = _slices_per_class(arr, counts)
    findings = []
    for cls in rows:
        slices = present_z.get(cls.id, [])
        abc2 = abc2_estimate(arr == cls.id, labels.geometry.spacing) if (cls.id == ICH_ID and slices) else None
        findings.append(ClassFinding(
            class_id=cls.id, key=cls.key, name=cls.name, voxels=int(counts[cls.id]),
            volume_ml=volumes[cls.id], slices=slices,
            positive=longest_run(slices) >= MIN_CONSECUTIVE_SLICES, abc2=abc2, hemorrhage=cls.hemorrhage,
            note=cls.note if cls in REVIEW_CLASSES else ""))
    return Findings(findings, source=source, scan=scan, model=model)


def write_findings_csv(findings: Findings, path) -> None:
    atomic_write_text(path, findings.to_csv())


def write_findings_json(findings: Findings, path) -> None:
    atomic_write_text(path, findings.to_json())


def _slices_per_class(arr: np.ndarray, counts: np.ndarray) -> dict[int, list[int]]:
    """{class id: sorted z indices where it occurs} for the classes that occur at all."""
    present = [c.id for c in LESION_CLASSES + REVIEW_CLASSES if counts[c.id] > 0]
    if not present:
        return {}
    per_slice = np.stack([np.bincount(arr[z].ravel(), minlength=NUM_LABEL_VALUES)[:NUM_LABEL_VALUES] for z in range(arr.shape[0])])
    return {cid: [int(z) for z in np.flatnonzero(per_slice[:, cid])] for cid in present}


def format_slice_ranges(slices: list[int]) -> str:
    """[2, 3, 4, 7] -> "2-4, 7" (z indices as stored, 0-based)."""
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
