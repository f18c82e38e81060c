"""The lesion list: each hemorrhage of each class on its own, with the measurements that go with it.

A lesion is a group of voxels of one class: the 3-D connected components (26-neighbourhood) after
pieces closer than ``GROUP_MM`` in-plane were joined (a crescent broken by partial volume, the sulcal
pieces of one subarachnoid bleed). Groups under ``MIN_VOLUME_ML`` are counted per class as fragments,
not listed. For each lesion:
- volume (mL, voxel count), the slices it is on, its centre (the voxel nearest the centroid on the
  slice where it is largest: where the views go when it is chosen);
- largest diameter: in 3-D (edge to edge, over the voxel corners) and on the axial slice of largest area;
- maximum thickness for extra-axial collections (SDH, EDH, CSDH): the largest 3-D distance from a lesion
  voxel to the nearest bone voxel (the inner table) along a path that stays in the lesion and has room
  sideways half way (not a strip along the falx or tentorium measured end-on), i.e. measured
  perpendicular to the inner table (on the axial slices where the table is upright, across slices where
  it is oblique, near the vertex, where an in-plane caliper would overstate it);
- side (left / right / midline / bilateral) against the brain's midline (the skull's ideal midline moved
  by the measured shift on the lesion's slices: a deep lesion stays in its hemisphere), and a rough location
  from the head frame (frontal, temporal, parietal, occipital, posterior fossa, deep grey nuclei,
  ventricular for IVH), the regions holding at least ``REGION_SHARE`` of its voxels, largest first;
- for ICH, ABC/2 on the lesion beside its voxel volume (``ctseg_core.findings.abc2_estimate``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from ctseg_core.atomic import atomic_write_text
from ctseg_core.findings import ABC2, ICH_ID, abc2_estimate, planar_diameters_mm
from ctseg_core.labels import CLASSES
from ctseg_core.measure.head_frame import BONE_HU, HeadFrame, head_frame
from ctseg_core.volume import LabelMap, Volume

EXTRA_AXIAL = (2, 4, 5)  # SDH, EDH, CSDH
IVH_ID = 7
GROUP_MM = 2.0
MIN_VOLUME_ML = 0.05
REGION_SHARE = 0.25
THICKNESS_GUIDELINE_MM = 10.0  # acute SDH/EDH thickness reference line (a measurement, not advice)
THICKNESS_MARGIN_MM = 15.0  # bone is looked for this far around a collection
THICKNESS_WORK_MM = 1.2  # in-plane grid of the search for the deepest point (refined at full resolution)
PATH_FREE_MM = 1.5  # the rim next to the bone may be unlabelled (partial volume with bone)
PATH_INSIDE = 0.9  # share of a thickness path's samples that must lie in the lesion
MID_ROOM = 0.3  # ... and half way along it the lesion reaches at least this share of its length sideways
SIDE_SHARE = 0.85  # a lesion is on one side when this share of its voxels is
MIDLINE_MM = 2.0  # voxels this close to the midline count for neither side
CENTRE_MM = 10.0

FRONTAL, TEMPORAL, PARIETAL, OCCIPITAL = "frontal", "temporal", "parietal", "occipital"
POSTERIOR_FOSSA, DEEP, VENTRICULAR = "posterior fossa", "deep grey nuclei", "ventricular"
REGIONS = (FRONTAL, TEMPORAL, PARIETAL, OCCIPITAL, POSTERIOR_FOSSA, DEEP, VENTRICULAR)


@dataclass
class Thickness:
    mm: float
    slice_index: int  # the slice of the collection's deepest point
    inner: tuple[float, float, float]  # (k, j, i) voxel of the inner table it is measured from
    outer: tuple[float, float, float]  # (k, j, i) the deepest point of the collection


@dataclass
class Lesion:
    number: int  # 1-based, in list order (class, then volume, largest first)
    class_id: int
    key: str
    name: str
    voxels: int
    volume_ml: float
    slices: list[int]  # z indices (0-based) it is on
    centre: tuple[int, int, int]  # (k, j, i) voxel to centre the views on
    centre_lps: tuple[float, float, float]
    diameter_mm: float  # largest, 3-D
    axial_diameter_mm: float  # largest on the axial slice where it is largest
    side: str = ""  # "left", "right", "midline", "bilateral" ("" when the skull was not found)
    regions: list[str] = field(default_factory=list)  # rough location, largest share first
    thickness: Thickness | None = None  # extra-axial collections
    abc2: ABC2 | None = None  # ICH

    @property
    def location(self) -> str:
        return "/".join(self.regions)

    @property
    def label(self) -> str:
        """A short name for lists: "SDH 2 (left frontal/parietal)"."""
        where = " ".join(x for x in (self.side, self.location) if x)
        return f"{self.key.upper()} {self.number}" + (f" ({where})" if where else "")


@dataclass
class LesionList:
    lesions: list[Lesion]
    fragments: dict[str, dict] = field(default_factory=dict)  # class key -> {"count", "volume_ml"} below the minimum
    min_volume_ml: float = MIN_VOLUME_ML
    id_map: np.ndarray | None = field(default=None, repr=False)  # uint16 (z, y, x): lesion number per voxel

    def at(self, k: int, j: int, i: int) -> Lesion | None:
        """The lesion that holds voxel (k, j, i), if any."""
        if self.id_map is None or not self.id_map[k, j, i]:
            return None
        return self.lesions[int(self.id_map[k, j, i]) - 1]

    def of_class(self, class_id: int) -> list[Lesion]:
        return [les for les in self.lesions if les.class_id == class_id]

    def to_dict(self) -> dict:
        return {"min_volume_ml": self.min_volume_ml, "group_mm": GROUP_MM,
                "thickness_reference_mm": THICKNESS_GUIDELINE_MM,
                "lesions": [_lesion_dict(les) for les in self.lesions], "fragments": self.fragments}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["number", "class", "volume_ml", "first_slice", "last_slice", "side", "location",
                    "diameter_mm", "axial_diameter_mm", "thickness_mm", "thickness_slice", "abc2_ml",
                    "centre_x_mm", "centre_y_mm", "centre_z_mm"])
        for les in self.lesions:
            t, a = les.thickness, les.abc2
            w.writerow([les.number, les.key, f"{les.volume_ml:.3f}", les.slices[0] + 1, les.slices[-1] + 1, les.side,
                        les.location, f"{les.diameter_mm:.1f}", f"{les.axial_diameter_mm:.1f}",
                        "" if t is None else f"{t.mm:.1f}", "" if t is None else t.slice_index + 1,
                        "" if a is None else f"{a.volume_ml:.2f}", *(f"{v:.1f}" for v in les.centre_lps)])
        return out.getvalue()


def write_lesions_csv(lesions: LesionList, path) -> None:
    atomic_write_text(path, lesions.to_csv())


def write_lesions_json(lesions: LesionList, path) -> None:
    atomic_write_text(path, lesions.to_json())


def _lesion_dict(les: Lesion) -> dict:
    d = asdict(les)
    d["location"] = les.location
    d["first_slice_1based"], d["last_slice_1based"] = les.slices[0] + 1, les.slices[-1] + 1
    return d


def list_lesions(volume: Volume, labels: LabelMap, frame: HeadFrame | None = None,
                 min_volume_ml: float = MIN_VOLUME_ML, midline=None) -> LesionList:
    """The lesions of ``labels`` (on ``volume``'s grid); ``frame``: the scan's head frame if already made;
    ``midline``: its ``MidlineShift``, so that sides are taken against the brain's own (shifted) midline."""
    labels.check_matches(volume)
    arr = labels.array
    geom = volume.geometry
    frame = head_frame(volume) if frame is None else frame
    boxes = ndimage.find_objects(arr, max_label=len(CLASSES) - 1)
    lesions, fragments = [], {}
    id_map = np.zeros(arr.shape, np.uint16)
    for cls in CLASSES[1:]:
        box = boxes[cls.id - 1]
        if box is None:
            continue
        found = []
        for mask, offset in _groups(arr[box] == cls.id, geom.spacing):
            ml = float(mask.sum()) * geom.voxel_volume_ml
            if ml < min_volume_ml:
                frag = fragments.setdefault(cls.key, {"count": 0, "volume_ml": 0.0})
                frag["count"] += 1
                frag["volume_ml"] = round(frag["volume_ml"] + ml, 4)
                continue
            offset = tuple(o + b.start for o, b in zip(offset, box))
            found.append((_measure(volume, mask, offset, cls, frame, midline), mask, offset))
        for les, mask, offset in sorted(found, key=lambda item: -item[0].volume_ml):
            lesions.append(les)
            les.number = len(lesions)
            region = id_map[tuple(slice(o, o + n) for o, n in zip(offset, mask.shape))]
            region[mask] = les.number
    return LesionList(lesions, fragments, min_volume_ml, id_map)


def _groups(mask: np.ndarray, spacing) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """(cropped mask, offset) of each group of ``mask``: pieces closer than GROUP_MM in-plane are joined."""
    reach = max(1, int(round(GROUP_MM / min(spacing[1:]))))
    joined = ndimage.binary_dilation(mask, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool),
                                     iterations=reach) if reach else mask
    lab, n = ndimage.label(joined, structure=np.ones((3, 3, 3), bool))
    lab[~mask] = 0
    out = []
    for idx, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is not None:
            out.append((lab[box] == idx, tuple(b.start for b in box)))
    return out


def _measure(volume: Volume, mask: np.ndarray, offset, cls, frame: HeadFrame | None, midline) -> Lesion:
    geom = volume.geometry
    sp = geom.spacing
    zs, ys, xs = np.nonzero(mask)
    areas = np.bincount(zs, minlength=mask.shape[0])
    kz = int(np.argmax(areas))
    on = zs == kz
    cy, cx = ys[on].mean(), xs[on].mean()
    near = int(np.argmin((ys[on] - cy) ** 2 + (xs[on] - cx) ** 2))
    centre = (kz + offset[0], int(ys[on][near]) + offset[1], int(xs[on][near]) + offset[2])
    centroid = np.array([zs.mean(), ys.mean(), xs.mean()]) + np.asarray(offset)
    a_mm, _ = planar_diameters_mm(mask[kz], sp[1], sp[2])
    les = Lesion(number=0, class_id=cls.id, key=cls.key, name=cls.name, voxels=int(len(zs)),
                 volume_ml=float(len(zs)) * geom.voxel_volume_ml,
                 slices=[int(z) + offset[0] for z in np.flatnonzero(areas)], centre=centre,
                 centre_lps=tuple(round(float(v), 2) for v in geom.index_to_physical(*centroid)),
                 diameter_mm=_diameter_3d(mask, sp), axial_diameter_mm=float(a_mm))
    if frame is not None:
        ks = zs + offset[0]
        lateral, along, height = _head_coords(frame, ks, ys + offset[1], xs + offset[2])
        brain_midline = 0.0
        if midline is not None and midline.found:
            brain_midline = np.array([midline.offset_at(int(k), geom.spacing[0]) for k in range(ks.max() + 1)])[ks]
        les.side = _side(lateral - brain_midline)
        les.regions = [VENTRICULAR] if cls.id == IVH_ID else _regions(frame, lateral, along, height)
    if cls.id in EXTRA_AXIAL:
        les.thickness = _thickness(volume, mask, offset)
    if cls.id == ICH_ID:
        les.abc2 = abc2_estimate(mask, sp)
        if les.abc2 is not None:
            les.abc2.slice_index += offset[0]
    return les


# ---------------------------------------------------------------- diameter

def _diameter_3d(mask: np.ndarray, spacing) -> float:
    """Largest distance (mm) between two corners of the mask's voxels (edge to edge). A point of the 3-D
    convex hull is extreme within its own slice too, so only the corners on each slice's 2-D hull (taken
    at the slice's lower and upper face) are candidates; their 3-D hull gives the pairs to compare."""
    sz, sy, sx = (float(v) for v in spacing)
    candidates = []
    square = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        centres = _hull(np.stack(np.nonzero(mask[z]), axis=1).astype(float))  # extreme pixels of the slice
        yx = _hull(((centres[:, None, :] + square[None]) * [sy, sx]).reshape(-1, 2))  # their corners
        for face in (z, z + 1):
            candidates.append(np.column_stack([np.full(len(yx), face * sz), yx]))
    corners = _hull(np.concatenate(candidates))
    if len(corners) > 3000:  # keep the pairwise step small (a subsample of a huge hull is within a voxel)
        corners = corners[np.linspace(0, len(corners) - 1, 3000).astype(int)]
    d = corners[:, None, :] - corners[None, :, :]
    return float(np.sqrt(np.einsum("ijk,ijk->ij", d, d).max()))


def _hull(points: np.ndarray) -> np.ndarray:
    """The vertices of the points' convex hull (2-D or 3-D); the points themselves when they are degenerate."""
    from scipy.spatial import ConvexHull, QhullError

    if len(points) <= points.shape[1] + 1:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # flat or collinear (one slice, one pixel wide)
        return points


# ---------------------------------------------------------------- thickness

def _thickness(volume: Volume, mask: np.ndarray, offset) -> Thickness | None:
    """Largest thickness of an extra-axial collection perpendicular to the inner table: the largest 3-D
    distance from a lesion voxel to the nearest bone voxel along a path that stays in the lesion. Found on a
    grid of about THICKNESS_WORK_MM in-plane, then refined at full resolution around the point found."""
    sp = np.asarray(volume.geometry.spacing)
    stride = max(1, int(round(THICKNESS_WORK_MM / min(sp[1:]))))
    margin = np.ceil(THICKNESS_MARGIN_MM / sp).astype(int)
    lo = np.maximum(np.asarray(offset) - margin, 0)
    hi = np.minimum(np.asarray(offset) + mask.shape + margin, volume.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    bone_full = volume.array[box] > BONE_HU
    if not bone_full.any():
        return None
    les_full = np.zeros(bone_full.shape, bool)
    les_full[tuple(slice(o - a, o - a + n) for o, a, n in zip(offset, lo, mask.shape))] = mask
    coarse = (slice(None), slice(None, None, stride), slice(None, None, stride))
    found = _deepest(les_full[coarse], bone_full[coarse], sp * np.array([1, stride, stride]))
    if found is None:
        return None
    mm, deep, table = _refine(les_full, bone_full, sp, np.asarray(found[1]) * [1, stride, stride], found[0], stride)
    return Thickness(mm, int(deep[0] + lo[0]), tuple(float(v) for v in table + lo), tuple(float(v) for v in deep + lo))


def _deepest(les: np.ndarray, bone: np.ndarray, sp: np.ndarray):
    """(mm, lesion voxel, bone voxel): the lesion voxel farthest from the bone along an admissible path."""
    dist, nearest = ndimage.distance_transform_edt(~bone, sampling=sp, return_indices=True)
    filled = les | bone
    pts = np.stack(np.nonzero(les), axis=1)
    d = dist[tuple(pts.T)]
    order = np.argsort(-d)
    t = np.linspace(0.0, 1.0, 24)
    shape = np.asarray(les.shape)
    for chunk in np.array_split(order, max(1, len(order) // 256)):
        p = pts[chunk]
        b = nearest[(slice(None),) + tuple(p.T)].T  # (m, 3) nearest bone voxel of each
        ray = np.clip(np.rint(b[:, None, :] + (p - b)[:, None, :] * t[None, :, None]).astype(int), 0, shape - 1)
        on_ray = tuple(np.moveaxis(ray, -1, 0))
        inside = les[on_ray] | bone[on_ray] | (d[chunk][:, None] * t[None, :] <= PATH_FREE_MM)
        ok = inside.mean(axis=1) >= PATH_INSIDE
        # a collection is wider along the table than it is thick: half way along the path there is room
        # sideways (a strip along the falx or tentorium, measured end-on, has none)
        ok &= _room(filled, ray[:, len(t) // 2], MID_ROOM * d[chunk], sp)
        if ok.any():
            i = int(np.flatnonzero(ok)[0])
            return float(d[chunk][i]), tuple(int(v) for v in p[i]), tuple(int(v) for v in b[i])
    return None


_DIRECTIONS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)],
                       float)
_DIRECTIONS /= np.linalg.norm(_DIRECTIONS, axis=1)[:, None]


def _room(filled: np.ndarray, centres: np.ndarray, radius_mm: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """True where the sphere of ``radius_mm`` around each centre voxel lies in ``filled`` (26 directions)."""
    offsets = radius_mm[:, None, None] * _DIRECTIONS[None, :, :] / sp  # (m, 26, 3) voxels
    probe = np.rint(centres[:, None, :] + offsets).astype(int)
    inside = np.all((probe >= 0) & (probe < np.asarray(filled.shape)), axis=-1)
    probe = np.clip(probe, 0, np.asarray(filled.shape) - 1)
    return (filled[tuple(np.moveaxis(probe, -1, 0))] & inside).all(axis=1)


def _refine(les: np.ndarray, bone: np.ndarray, sp: np.ndarray, point: np.ndarray, mm: float, stride: int):
    """(mm, lesion voxel, bone voxel) at full resolution: the lesion voxels within two coarse steps of
    ``point`` on its slice, each to its nearest bone-surface voxel; the farthest of them."""
    k, j, i = (int(v) for v in point)
    near = 2 * stride
    cand = np.stack(np.nonzero(les[k, max(j - near, 0): j + near + 1, max(i - near, 0): i + near + 1]), axis=1)
    if len(cand) == 0:
        return mm, point, point
    cand = np.column_stack([np.full(len(cand), k), cand + [max(j - near, 0), max(i - near, 0)]])
    reach = np.ceil((mm + 3.0) / sp).astype(int) + [0, near, near]
    lo = np.maximum(point - reach, 0)
    sub = bone[tuple(slice(a, b + 1) for a, b in zip(lo, point + reach))]
    surface = np.stack(np.nonzero(sub & ~ndimage.binary_erosion(sub, border_value=1)), axis=1) + lo
    if len(surface) == 0:
        return mm, point, point
    d2 = (((cand[:, None, :] - surface[None, :, :]) * sp) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    best = int(np.argmax(d2[np.arange(len(cand)), nearest]))
    return float(np.sqrt(d2[best, nearest[best]])), cand[best], surface[nearest[best]]


# ---------------------------------------------------------------- side and location

def _head_coords(frame: HeadFrame, ks, js, is_):
    """(lateral mm +left, along mm +posterior, height mm +superior from the reference slice) of voxels."""
    lateral = np.empty(len(ks))
    along = np.empty(len(ks))
    for k in np.unique(ks):
        sel = ks == k
        lateral[sel], along[sel] = frame.to_head(int(k), js[sel], is_[sel])
    up = 1.0 if frame.geometry.direction_matrix[2, 2] >= 0 else -1.0
    height = (ks - frame.reference_slice) * frame.geometry.spacing[0] * up
    return lateral, along, height


def _side(lateral: np.ndarray) -> str:
    """left / right (SIDE_SHARE of the voxels on that side), midline (otherwise, centred within
    CENTRE_MM of the midline), bilateral (otherwise)."""
    if float(np.mean(lateral > MIDLINE_MM)) >= SIDE_SHARE:
        return "left"
    if float(np.mean(lateral < -MIDLINE_MM)) >= SIDE_SHARE:
        return "right"
    return "midline" if abs(float(np.mean(lateral))) < CENTRE_MM else "bilateral"


def region_of(lateral, along, height, half_length: float, half_width: float) -> np.ndarray:
    """Rough lobe of head-frame points (arrays, mm): indices into REGIONS. Boundaries as fractions of the
    cavity's half-length (a, + posterior) and half-width (l), height h in mm from the largest-cavity slice:
    posterior fossa below h -15 behind a -0.1 (or below h -35); deep grey nuclei |l| < 0.45, |a| < 0.3,
    -15 < h < 25; frontal a < -0.25; occipital a > 0.55; temporal h < 5 and |l| > 0.5; parietal otherwise."""
    a = np.asarray(along) / half_length
    l_ = np.abs(np.asarray(lateral)) / half_width
    h = np.asarray(height)
    out = np.full(a.shape, REGIONS.index(PARIETAL))
    out[(h < 5) & (l_ > 0.5)] = REGIONS.index(TEMPORAL)
    out[a > 0.55] = REGIONS.index(OCCIPITAL)
    out[a < -0.25] = REGIONS.index(FRONTAL)
    out[(l_ < 0.45) & (np.abs(a) < 0.3) & (h > -15) & (h < 25)] = REGIONS.index(DEEP)
    out[((h < -15) & (a > -0.1)) | (h < -35)] = REGIONS.index(POSTERIOR_FOSSA)
    return out


def _regions(frame: HeadFrame, lateral, along, height) -> list[str]:
    ref = frame.reference_slice
    half_length = frame.half_length_mm(ref)
    half_width = float(frame.area_mm2[ref] / (np.pi * half_length))  # an ellipse's area is pi a b
    counts = np.bincount(region_of(lateral, along, height, half_length, half_width), minlength=len(REGIONS))
    share = counts / counts.sum()
    order = [int(i) for i in np.argsort(-share) if share[i] >= REGION_SHARE]
    return [REGIONS[i] for i in order] or [REGIONS[int(np.argmax(share))]]
