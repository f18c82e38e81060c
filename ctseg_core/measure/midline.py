"""Midline shift: how far the septum pellucidum and third ventricle lie from the skull's ideal midline.

Ideal midline: the skull's axis of mirror symmetry on each slice (``head_frame``), which joins the
falx's anterior and posterior attachments. Actual midline: the midline structures around the level of
the foramen of Monro, found on each slice in a head-aligned grid (``GRID_MM`` sampling):
- a rough deep midline first: the lateral offset about which the deep brain (ventricles, thalami,
  basal ganglia; labelled blood left out) best matches its mirror image; the structures below must
  lie within ``PRIOR_MM`` of it when that match is good;
- septum pellucidum: on a row across the head, a thin band (at most ``SEPTUM_MAX_MM`` wide, not as
  bright as calcification) between two large dark regions (the lateral ventricles); its centre is a
  midline point;
- third ventricle: a dark slit (at most ``SLIT_MAX_MM`` wide, longer than wide, near the cavity's
  centre, alone on its rows), the one nearest the rough midline; the centre of each row is a point.
Dark means below the CSF/brain threshold (halfway between CSF and the slice's brain) or labelled IVH,
and deeper than ``DEEP_MM`` inside the cavity. Rows next to other labelled blood give no point (blood
hides a ventricle wall). Points form chains over neighbouring rows; a chain counts only when a chain on
a neighbouring slice continues it (the septum and the third ventricle span several slices) and at the
height each structure has relative to the slice where the lateral ventricles are largest.
Shift = the largest running median (over ``SMOOTH_POINTS`` rows) of the points' perpendicular distance
from the ideal midline, over all slices; its side is the patient side the midline is pushed to. Where
neither structure is found the result says so (``found`` False, with the reason).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from ctseg_core.measure.head_frame import HeadFrame, head_frame
from ctseg_core.volume import LabelMap, Volume

IVH_ID = 7
SEPTUM, THIRD_VENTRICLE = "septum pellucidum", "third ventricle"
GUIDELINE_MM = 5.0  # shown as a reference line beside the value (a measurement, not advice)

GRID_MM = 0.5
LATERAL_MM = 40.0  # the grid reaches this far to each side of the ideal midline
MAX_SHIFT_MM = 22.0  # midline structures are sought this far from the ideal midline
DEEP_MM = 12.0  # ... and at least this deep inside the cavity
CSF_HU = 7.0
SYMMETRY_HALF_MM = 18.0  # the rough deep midline compares this much brain on each side
SYMMETRY_STEP_MM = 1.0
MIN_SYMMETRY = 0.4  # below this correlation the rough midline is not used
PRIOR_MM = 5.0
PRIOR_SMOOTH_MM = 10.0  # the rough midline is a median over slices this far up and down
SEPTUM_MAX_MM = 3.5
SEPTUM_MAX_HU = 70.0  # brighter bands are calcified choroid plexus or bone, not septum
SEPTUM_CONTRAST_HU = 5.0  # a band within one dark region (a septum merged at its ends) must stand out this much
VENTRICLE_MIN_MM2 = 15.0  # a dark region beside a septum (a lateral ventricle) is at least this large
SLIT_MAX_MM = 9.0
SLIT_MIN_LENGTH_MM = 5.0
SLIT_CENTRAL_FRACTION = 0.3  # a third ventricle lies within this fraction of the half-length from the centre
SLIT_DARKNESS = 0.5  # its darkest sample, and that of each row giving a point, lies in the lower half between
# CSF and the threshold (not a faint sliver)
ALONE_MM = 8.0  # no other dark region this close beside it on its row
BLOOD_MARGIN_MM = 1.5  # labelled blood (other than IVH), grown by this much, ...
BLOOD_WALL_MM = 6.0  # ... within this distance of a midline point drops that point
MIN_POINTS = 4  # rows in a chain of midline points
CHAIN_GAP_ROWS = 3  # points of one chain lie on rows at most this far apart ...
CHAIN_STEP_MM = 1.0  # ... and move sideways at most this much from row to row
CHAIN_RMS_MM = 0.5  # ... and lie this close to a straight line
NEIGHBOUR_MM = 10.0  # a chain is confirmed by one on a slice this close ...
NEIGHBOUR_LATERAL_MM = 2.0  # ... whose median lies this close sideways
SMOOTH_POINTS = 5
# heights (mm, + superior) relative to the slice where the lateral ventricles are largest, where each is sought
SEPTUM_HEIGHTS_MM = (-22.0, 22.0)
THIRD_VENTRICLE_HEIGHTS_MM = (-30.0, 6.0)


@dataclass
class MidlinePoint:
    row: float
    col: float
    lateral_mm: float  # + towards the patient's left of the ideal midline
    structure: str  # SEPTUM or THIRD_VENTRICLE


@dataclass
class SliceMidline:
    slice_index: int
    shift_mm: float  # signed, + towards the patient's left
    points: list[MidlinePoint] = field(default_factory=list)  # chains, each ordered front to back
    peak: int = 0  # the point where the (smoothed) distance is largest
    ideal_line: tuple[tuple[float, float], tuple[float, float]] | None = None  # (row, col) anterior, posterior


@dataclass
class MidlineShift:
    found: bool
    shift_mm: float = 0.0  # largest perpendicular distance (>= 0)
    side: str = ""  # "left" or "right": the patient side the midline structures are pushed to ("" when ~0)
    slice_index: int = -1  # z index of the slice where it is largest
    structure: str = ""  # which structure gave the largest distance
    point: tuple[float, float] | None = None  # (row, col) of that point on the slice
    foot: tuple[float, float] | None = None  # (row, col) of its perpendicular foot on the ideal midline
    ideal_line: tuple[tuple[float, float], tuple[float, float]] | None = None  # (row, col) anterior, posterior
    slices: list[SliceMidline] = field(default_factory=list)
    angle_deg: float = 0.0  # the ideal midline against the image's column axis
    reason: str = ""  # why nothing was found

    @property
    def signed_mm(self) -> float:
        return self.shift_mm if self.side == "left" else -self.shift_mm

    def slice(self, k: int) -> SliceMidline | None:
        return next((s for s in self.slices if s.slice_index == k), None)

    def offset_at(self, k: int, dz: float, reach_mm: float = 15.0) -> float:
        """Where the brain's own midline lies on slice k (mm, + left of the ideal midline): the median of
        the nearest measured slice within ``reach_mm``, else 0."""
        near = [s for s in self.slices if abs(s.slice_index - k) * dz <= reach_mm]
        if not near:
            return 0.0
        s = min(near, key=lambda s: abs(s.slice_index - k))
        return float(np.median([p.lateral_mm for p in s.points]))

    def summary(self) -> str:
        if not self.found:
            return f"midline shift not measured: {self.reason}"
        side = f" to the patient's {self.side}" if self.side else ""
        return f"midline shift {self.shift_mm:.1f} mm{side} ({self.structure}, slice {self.slice_index + 1})"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slices"] = [{"slice_index": s.slice_index, "shift_mm": round(s.shift_mm, 2), "points": len(s.points),
                        "ideal_line": s.ideal_line} for s in self.slices]
        d["guideline_mm"] = GUIDELINE_MM
        return d


def measure_midline_shift(volume: Volume, labels: LabelMap | None = None,
                          frame: HeadFrame | None = None) -> MidlineShift:
    """Midline shift of ``volume``; ``labels``: IVH counts as ventricle, other blood hides walls.
    ``frame``: the scan's ``head_frame`` when already computed."""
    frame = head_frame(volume) if frame is None else frame
    if frame is None:
        return MidlineShift(False, reason="no closed skull outline on any slice")
    grids = {}
    for k in np.flatnonzero(frame.measurable):
        grid = _sample_grid(volume.array[k], None if labels is None else labels.array[k], frame, int(k))
        if grid is not None:
            grids[int(k)] = grid
    if not grids:
        return MidlineShift(False, angle_deg=frame.angle_deg, reason="no brain found inside the skull")
    dz = volume.geometry.spacing[0]
    priors = _smoothed_priors({k: _deep_symmetry(g) for k, g in grids.items()}, dz)
    chains, ventricle_area = {}, {}  # slice -> chains of midline points; area of its ventricles (mm^2)
    for k, grid in grids.items():
        chains[k], ventricle_area[k] = _find_chains(grid, frame, k, priors[k])
    level = max(ventricle_area, key=ventricle_area.get)
    up = 1.0 if volume.geometry.direction_matrix[2, 2] >= 0 else -1.0
    chains = {k: [c for c in cs if _at_its_height(c[0].structure, (k - level) * dz * up)] for k, cs in chains.items()}
    chains = _confirmed(chains, dz)
    slices = [_slice_result(k, cs) for k, cs in sorted(chains.items()) if cs]
    for s in slices:
        s.ideal_line = frame.ideal_line(s.slice_index)
    if not slices:
        return MidlineShift(False, angle_deg=frame.angle_deg,
                            reason="neither the septum pellucidum nor the third ventricle was found")
    best = max(slices, key=lambda s: abs(s.shift_mm))
    k = best.slice_index
    point = best.points[best.peak]
    along = frame.to_head(k, point.row, point.col)[1]
    foot = frame.to_pixel(k, 0.0, along)
    shift = abs(best.shift_mm)
    side = "" if shift < 0.05 else ("left" if best.shift_mm > 0 else "right")
    return MidlineShift(True, shift_mm=float(shift), side=side, slice_index=k, structure=point.structure,
                        point=(point.row, point.col), foot=(float(foot[0]), float(foot[1])),
                        ideal_line=frame.ideal_line(k), slices=slices, angle_deg=frame.angle_deg)


# ---------------------------------------------------------------- one slice

@dataclass
class _Grid:
    """A slice resampled in its head frame: rows along the midline (front first), columns lateral."""

    lateral: np.ndarray  # (W,) mm, + towards the patient's left
    along: np.ndarray  # (H,) mm, + posterior
    half_length: float  # of the cavity on this slice
    hu: np.ndarray  # smoothed HU (H, W)
    dark: np.ndarray  # deep ventricle-dark samples (CSF-dark or labelled IVH)
    ivh: np.ndarray  # labelled IVH
    blood: np.ndarray  # near labelled blood other than IVH
    threshold: float

    def column(self, lateral_mm: float) -> int:
        return int(round((lateral_mm - self.lateral[0]) / GRID_MM))


def _sample_grid(hu_slice, labels, frame: HeadFrame, k: int) -> _Grid | None:
    half = frame.half_length_mm(k)
    lateral = np.arange(-LATERAL_MM, LATERAL_MM + 1e-6, GRID_MM)
    along = np.arange(-0.55 * half, 0.45 * half, GRID_MM)
    ll, aa = np.meshgrid(lateral, along)
    rows, cols = frame.to_pixel(k, ll, aa)
    hu = ndimage.gaussian_filter(ndimage.map_coordinates(hu_slice, [rows, cols], order=1, mode="nearest"), 1.0)
    step = frame.step
    depth = ndimage.distance_transform_edt(frame.cavity[k], sampling=np.asarray(frame.geometry.spacing[1:]) * step)
    deep = ndimage.map_coordinates(depth, [rows / step, cols / step], order=1, mode="constant") > DEEP_MM
    brain = hu[deep & (hu > 15) & (hu < 60)]
    if brain.size < 100:
        return None
    threshold = 0.5 * (float(np.median(brain)) + CSF_HU)
    dark = hu < threshold
    blood = np.zeros(dark.shape, bool)
    ivh = np.zeros(dark.shape, bool)
    if labels is not None and labels.any():
        lab = ndimage.map_coordinates(labels, [rows, cols], order=0, mode="constant")
        ivh = lab == IVH_ID
        dark |= ivh
        other = (lab > 0) & (lab != IVH_ID)
        if other.any():
            blood = ndimage.binary_dilation(other, iterations=max(1, int(round(BLOOD_MARGIN_MM / GRID_MM))))
    return _Grid(lateral, along, half, hu, dark & deep, ivh, blood, threshold)


def _find_chains(grid: _Grid, frame: HeadFrame, k: int, prior: float | None) -> tuple[list[list[MidlinePoint]], float]:
    """The chains of midline points of one slice, and the area (mm^2) of its large dark (ventricle) regions.
    ``prior``: the rough deep midline (mm) the points must lie near, if known."""
    lab, n = ndimage.label(grid.dark, structure=np.ones((3, 3), bool))
    areas = np.bincount(lab.ravel(), minlength=n + 1) * GRID_MM ** 2
    areas[0] = 0
    big = areas >= VENTRICLE_MIN_MM2
    found = _septum_points(grid, lab, big) + _slit_points(grid, lab, prior)
    wall = int(round(BLOOD_WALL_MM / GRID_MM))
    out = []
    for r, lat, structure in found:
        c = grid.column(lat)
        if abs(lat) > MAX_SHIFT_MM or grid.blood[r, max(c - wall, 0): c + wall + 1].any():
            continue
        if prior is not None and abs(lat - prior) > PRIOR_MM:
            continue
        pr, pc = frame.to_pixel(k, lat, grid.along[r])
        out.append((r, MidlinePoint(float(pr), float(pc), float(lat), structure)))
    out.sort(key=lambda item: item[0])
    return _chains(out), float(areas[big].sum())


def _deep_symmetry(grid: _Grid) -> float | None:
    """The lateral offset (mm) about which the deep brain best mirrors itself, or None when no offset
    gives a correlation of MIN_SYMMETRY."""
    rows = (grid.along >= -0.35 * grid.half_length) & (grid.along <= 0.3 * grid.half_length)
    hu = np.clip(grid.hu[rows][::2], 0.0, 60.0)
    ok = ~(grid.blood | grid.ivh)[rows][::2]
    half = int(round(SYMMETRY_HALF_MM / GRID_MM))
    best, best_r = None, MIN_SYMMETRY
    for m in np.arange(-MAX_SHIFT_MM, MAX_SHIFT_MM + 1e-6, SYMMETRY_STEP_MM):
        c = grid.column(m)
        if c - half < 0 or c + half >= hu.shape[1]:
            continue
        p, v = hu[:, c - half: c + half + 1], ok[:, c - half: c + half + 1]
        v = v & v[:, ::-1]
        a, b = p[v], p[:, ::-1][v]
        if a.size < 200:
            continue
        a, b = a - a.mean(), b - b.mean()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        r = float((a * b).sum() / denom) if denom > 0 else 0.0
        if r > best_r:
            best, best_r = float(m), r
    return best


def _smoothed_priors(priors: dict[int, float | None], dz: float) -> dict[int, float | None]:
    """Each slice's rough midline replaced by the median of those within PRIOR_SMOOTH_MM along z."""
    reach = max(1, int(PRIOR_SMOOTH_MM // dz))
    out = {}
    for k in priors:
        near = [priors[j] for j in range(k - reach, k + reach + 1) if priors.get(j) is not None]
        out[k] = float(np.median(near)) if near else None
    return out


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of the True runs of a 1-D bool array."""
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _edge(values: np.ndarray, i_dark: int, i_bright: int, threshold: float) -> float:
    """Fractional index where the profile crosses the threshold between a dark and a bright sample."""
    a, b = values[i_dark], values[i_bright]
    if a >= threshold or b <= a:  # a sample dark by its IVH label: the edge lies between the samples
        return i_dark + 0.5 * (i_bright - i_dark)
    t = float(np.clip((threshold - a) / (b - a), 0.0, 1.0))
    return i_dark + t * (i_bright - i_dark)


def _lateral_at(grid: _Grid, index: float) -> float:
    return float(grid.lateral[0] + index * GRID_MM)


def _septum_points(grid: _Grid, lab: np.ndarray, big: np.ndarray) -> list[tuple[int, float, str]]:
    """Rows where a thin band (the septum) separates two large dark regions (the lateral ventricles)."""
    out = []
    max_gap = SEPTUM_MAX_MM / GRID_MM
    for r in np.flatnonzero((lab > 0).any(axis=1)):
        row = lab[r]
        runs = [(s, e, row[s]) for s, e in _runs(row > 0) if big[row[s]]]
        best = None
        for (_, e1, c1), (s2, _, c2) in zip(runs, runs[1:]):
            peak = grid.hu[r, e1:s2].max(initial=-1e9)
            if s2 - e1 > max_gap or peak > SEPTUM_MAX_HU:
                continue
            if c1 == c2 and peak < grid.threshold + SEPTUM_CONTRAST_HU:  # one region: only a clear band
                continue
            left = _edge(grid.hu[r], e1 - 1, e1, grid.threshold)
            right = _edge(grid.hu[r], s2, s2 - 1, grid.threshold)
            centre = _lateral_at(grid, 0.5 * (left + right))
            if best is None or abs(centre) < abs(best):
                best = centre
        if best is not None:
            out.append((int(r), best, SEPTUM))
    return out


def _slit_points(grid: _Grid, lab: np.ndarray, prior: float | None) -> list[tuple[int, float, str]]:
    """Row centres of the dark slit (the third ventricle) near the cavity's centre nearest the rough midline."""
    slits = []
    for idx, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is None:
            continue
        length = (box[0].stop - box[0].start) * GRID_MM
        width = (box[1].stop - box[1].start) * GRID_MM
        centre_a = grid.along[(box[0].start + box[0].stop - 1) // 2]
        centre_l = _lateral_at(grid, (box[1].start + box[1].stop - 1) / 2)
        own = (lab[box] == idx) & ~grid.ivh[box]  # blood-filled (IVH) parts are dark by their label
        darkest = float(grid.hu[box][own].min()) if own.any() else CSF_HU
        if width <= SLIT_MAX_MM and length >= SLIT_MIN_LENGTH_MM and length >= 1.3 * width \
                and abs(centre_a) <= SLIT_CENTRAL_FRACTION * grid.half_length and abs(centre_l) <= MAX_SHIFT_MM \
                and darkest <= _clearly_dark(grid):
            slits.append((abs(centre_l - (prior or 0.0)), idx, box))
    if not slits or (prior is None and len(slits) > 1):  # several and nothing to choose by: none
        return []
    _, idx, box = min(slits)
    reach = int(ALONE_MM / GRID_MM)
    near = slice(max(box[1].start - reach, 0), box[1].stop + reach)
    others = (lab[:, near] > 0) & (lab[:, near] != idx)
    out = []
    for r in range(box[0].start, box[0].stop):
        runs = _runs(lab[r] == idx)
        if others[r].any() or len(runs) != 1:  # alone near it on its row, one run
            continue
        s, e = runs[0]
        if s == 0 or e == lab.shape[1]:
            continue
        if not grid.ivh[r, s:e].any() and grid.hu[r, s:e].min() > _clearly_dark(grid):
            continue  # a faint sliver on this row (dimmer tissue beside the ventricle, noise), not CSF
        left = _edge(grid.hu[r], s, s - 1, grid.threshold)
        right = _edge(grid.hu[r], e - 1, e, grid.threshold)
        out.append((r, _lateral_at(grid, 0.5 * (left + right)), THIRD_VENTRICLE))
    return out


def _clearly_dark(grid: _Grid) -> float:
    """HU below which a sample is clearly CSF: the lower SLIT_DARKNESS part between CSF and the threshold."""
    return CSF_HU + SLIT_DARKNESS * (grid.threshold - CSF_HU)


def _chains(points: list[tuple[int, MidlinePoint]]) -> list[list[MidlinePoint]]:
    """Runs of at least MIN_POINTS points of one structure on neighbouring rows with small lateral steps."""
    chains: list[list[tuple[int, MidlinePoint]]] = []
    for r, p in points:
        for chain in chains:
            r0, p0 = chain[-1]
            if 0 < r - r0 <= CHAIN_GAP_ROWS and abs(p.lateral_mm - p0.lateral_mm) <= CHAIN_STEP_MM \
                    and p.structure == p0.structure:
                chain.append((r, p))
                break
        else:
            chains.append([(r, p)])
    return [[p for _, p in chain] for chain in chains if len(chain) >= MIN_POINTS and _straight(chain)]


def _straight(chain: list[tuple[int, MidlinePoint]]) -> bool:
    """True when the chain's points lie within CHAIN_RMS_MM (root mean square) of a straight line."""
    rows = np.array([r for r, _ in chain], float)
    lat = np.array([p.lateral_mm for _, p in chain])
    fit = np.polyval(np.polyfit(rows, lat, 1), rows)
    return float(np.sqrt(np.mean((lat - fit) ** 2))) <= CHAIN_RMS_MM


# ---------------------------------------------------------------- across slices

def _at_its_height(structure: str, height_mm: float) -> bool:
    lo, hi = SEPTUM_HEIGHTS_MM if structure == SEPTUM else THIRD_VENTRICLE_HEIGHTS_MM
    return lo <= height_mm <= hi


def _confirmed(chains: dict[int, list[list[MidlinePoint]]], dz: float) -> dict[int, list[list[MidlinePoint]]]:
    """The chains that a chain on a neighbouring slice continues (within NEIGHBOUR_MM along z and
    NEIGHBOUR_LATERAL_MM sideways): the septum and third ventricle span several slices, stray finds do not."""
    med = {k: [float(np.median([p.lateral_mm for p in c])) for c in cs] for k, cs in chains.items()}
    reach = max(1, int(NEIGHBOUR_MM // dz))

    def continues(k: int, m: float) -> bool:
        return any(abs(m - other) <= NEIGHBOUR_LATERAL_MM for j in range(k - reach, k + reach + 1)
                   if j != k for other in med.get(j, ()))

    return {k: [c for c, m in zip(cs, med[k]) if continues(k, m)] for k, cs in chains.items()}


def _slice_result(k: int, chains: list[list[MidlinePoint]]) -> SliceMidline:
    """The slice's shift: the largest running median (over SMOOTH_POINTS neighbouring rows of one chain)
    of the points' lateral offsets."""
    best_value, best_point, points = 0.0, 0, []
    for chain in chains:
        lat = np.array([p.lateral_mm for p in chain])
        w = min(SMOOTH_POINTS, len(lat))
        medians = np.median(np.lib.stride_tricks.sliding_window_view(lat, w), axis=1)
        i = int(np.argmax(np.abs(medians)))
        if not points or abs(medians[i]) > abs(best_value):
            best_value, best_point = float(medians[i]), len(points) + i + w // 2
        points.extend(chain)
    return SliceMidline(k, best_value, points, best_point)
