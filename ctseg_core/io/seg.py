"""DICOM SEG export and import through highdicom, referencing the scan's source series.

The loaded volume may lie on another grid than the source slices (tilt/shear correction, uneven spacing
resampled), so labels are mapped back onto each source slice's pixel grid by nearest neighbour: every
source pixel's physical (LPS) position is turned into a volume index with ``Geometry.physical_to_index``.
One segment per class present: label = class name, tracking id = class key, display colour = the class
colour in CIELab. Codes (SNOMED CT, from pydicom's dictionary): category "Morphologically Abnormal
Structure" with type "Hemorrhage" (ICH, SAH, IVH) or "Hematoma" (SDH, EDH, chronic SDH); pneumocephalus
is category "Substance", type "Air"; unassigned extra-axial blood (a review label) "Hemorrhage";
perilesional oedema "Edema". Anatomic region: "Head". Subtype codes are not given: the class is
carried by the segment label and tracking id, which ``read_dicom_seg`` reads back.

Sources: single-frame slices, or one multi-frame (enhanced) image whose frames are the slices.
Needs the DICOM loader's ``volume.meta.extra`` entries: source_files, sop_instance_uids,
source_positions, source_orientation, source_pixel_spacing, source_shape. The source files are read
(headers only), never written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ctseg_core.atomic import atomic_write_with
from ctseg_core.errors import CtsegError, LoadError
from ctseg_core.labels import LABEL_BY_KEY, LABEL_CLASSES
from ctseg_core.volume import Geometry, LabelMap, Volume

_HEMATOMA = {"sdh", "edh", "csdh"}
_EMPTY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "AccessionNumber", "StudyID")


class SourceGrid:
    """The source slices' pixel grids: per slice an origin (LPS), row/column directions and spacing."""

    def __init__(self, extra: dict):
        needed = ("source_files", "sop_instance_uids", "source_positions", "source_orientation",
                  "source_pixel_spacing", "source_shape")
        missing = [k for k in needed if not extra.get(k)]
        if missing:
            raise CtsegError("the scan was not loaded from a DICOM series (missing " + ", ".join(missing)
                             + "): a DICOM SEG needs the source slices; export NIfTI instead")
        self.frames = list(extra.get("source_frames") or [])  # 1-based frame per slice (multi-frame source)
        self.multiframe = any(f is not None for f in self.frames)
        if self.multiframe and (len(set(extra["sop_instance_uids"])) != 1 or None in self.frames):
            raise CtsegError("DICOM SEG export supports single-frame slices or one multi-frame image, "
                             "not a mix; export NIfTI")
        self.files = [Path(p) for p in extra["source_files"]]
        self.uids = list(extra["sop_instance_uids"])
        self.positions = np.asarray(extra["source_positions"], float)  # (n, 3)
        o = np.asarray(extra["source_orientation"], float)
        self.row_dir, self.col_dir = o[:3], o[3:]  # along a row (column index grows), down a column
        self.row_spacing, self.col_spacing = (float(s) for s in extra["source_pixel_spacing"])  # PixelSpacing
        n, self.rows, self.cols = (int(s) for s in extra["source_shape"])
        if n != len(self.files) or len(self.uids) != n or len(self.positions) != n:
            raise CtsegError("the scan's source slice list is inconsistent")

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    def pixel_points(self, s: int) -> np.ndarray:
        """LPS positions (rows, cols, 3) of the pixel centres of source slice ``s``."""
        r = np.arange(self.rows, dtype=float)[:, None, None] * self.row_spacing * self.col_dir
        c = np.arange(self.cols, dtype=float)[None, :, None] * self.col_spacing * self.row_dir
        return self.positions[s] + r + c


def _index_affine(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with physical_to_index(p) == M @ p + b (it is affine)."""
    b = geometry.physical_to_index(np.zeros(3))
    m = np.stack([geometry.physical_to_index(e) - b for e in np.eye(3)], axis=1)
    return m, b


def labels_on_source_grid(labels: LabelMap, grid: SourceGrid) -> np.ndarray:
    """(n source slices, rows, cols) class ids: nearest volume voxel of each source pixel (0 outside)."""
    m, b = _index_affine(labels.geometry)
    shape = np.asarray(labels.array.shape)
    out = np.zeros((len(grid.files), grid.rows, grid.cols), np.uint8)
    for s in range(len(grid.files)):
        idx = np.rint(grid.pixel_points(s) @ m.T + b).astype(np.int64)  # (rows, cols, 3) as (k, j, i)
        inside = np.all((idx >= 0) & (idx < shape), axis=-1)
        k, j, i = (idx[..., a][inside] for a in range(3))
        out[s][inside] = labels.array[k, j, i]
    return out


def _segment_description(number: int, class_id: int, algorithm):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    cls = LABEL_CLASSES[class_id]
    if cls.key == "pneumocephalus":
        category, prop = codes.SCT.Substance, codes.SCT.Air
    elif cls.key == "oedema":
        category, prop = codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Edema
    else:
        category = codes.SCT.MorphologicallyAbnormalStructure
        prop = codes.SCT.Hematoma if cls.key in _HEMATOMA else codes.SCT.Hemorrhage
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=cls.name, segmented_property_category=category,
        segmented_property_type=prop,
        algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if algorithm
                        else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
        algorithm_identification=algorithm, tracking_id=cls.key, tracking_uid=hd.UID(),
        anatomic_regions=[codes.SCT.Head], display_color=hd.color.CIELabColor.from_rgb(*cls.colour))


def _read_sources(grid: SourceGrid) -> list:
    import pydicom

    datasets = []
    for path in (grid.files[:1] if grid.multiframe else grid.files):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise LoadError(f"cannot read the source slice for the DICOM SEG ({exc})", path) from exc
        for kw in _EMPTY_TYPE2:  # type-2 attributes some exports drop; highdicom copies them (in memory only)
            if kw not in ds:
                setattr(ds, kw, "")
        datasets.append(ds)
    if [str(d.SOPInstanceUID) for d in datasets] != (grid.uids[:1] if grid.multiframe else grid.uids):
        raise LoadError("the source files no longer hold the series the scan was loaded from",
                        grid.files[0].parent)
    return datasets


def write_dicom_seg(labels: LabelMap, volume: Volume, out_path: str | Path, *, model_version: str | None = None,
                    series_description: str = "ctseg hemorrhage segmentation", series_number: int = 900,
                    content_creator: str | None = None) -> Path:
    """Write ``labels`` (on ``volume``'s grid) as a DICOM SEG referencing the volume's source series.

    ``model_version``: the segments are marked semi-automatic (AI then corrected) by this algorithm;
    without it they are manual. Raises CtsegError when nothing is labelled or the scan is not DICOM.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import ctseg_core

    labels.check_matches(volume)
    grid = SourceGrid(volume.meta.extra)
    on_source = labels_on_source_grid(labels, grid)
    present = [int(c) for c in np.unique(on_source) if c != 0]
    if not present:
        raise CtsegError("nothing to export: no labelled voxel falls on the source slices", out_path)
    number_of = np.zeros(256, np.uint8)
    number_of[present] = np.arange(1, len(present) + 1)
    algorithm = None
    if model_version:
        algorithm = hd.AlgorithmIdentificationSequence(
            name="ctseg", version=str(model_version), family=codes.cid7162.ArtificialIntelligence)
    descriptions = [_segment_description(n, c, algorithm) for n, c in enumerate(present, 1)]
    sources = _read_sources(grid)
    frames = number_of[on_source]
    if grid.multiframe:  # one frame per source frame, in the source's frame order
        by_frame = np.zeros((int(sources[0].NumberOfFrames),) + frames.shape[1:], np.uint8)
        by_frame[np.asarray(grid.frames) - 1] = frames
        frames = by_frame
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="ctseg", manufacturer_model_name="ctseg",
            software_versions=str(ctseg_core.__version__), device_serial_number="0",
            content_description=series_description[:64], content_label="CTSEG",
            content_creator_name=content_creator or None)
    seg.SeriesDescription = series_description[:64]
    out_path = Path(out_path)
    atomic_write_with(out_path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    return out_path


def read_dicom_seg(path: str | Path, volume: Volume) -> LabelMap:
    """A label map on ``volume``'s grid from a DICOM SEG that references the volume's source series.

    Classes come from each segment's tracking id (the class key ctseg writes), else its label. Each
    voxel takes the value of the nearest source pixel on the nearest source slice (0 beyond the stack).
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # pydicom/highdicom raise many types for a file that is not a SEG
        raise LoadError(f"not a readable DICOM SEG ({exc})", path) from exc
    grid = SourceGrid(volume.meta.extra)
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    if not referenced & set(grid.uids):
        raise LoadError("the DICOM SEG does not reference this scan's source series", path)
    to_class = np.zeros(max(seg.segment_numbers) + 1, np.uint8)
    for n in seg.segment_numbers:
        to_class[n] = _class_of(seg.get_segment_description(n), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = dict(combine_segments=True, relabel=False, ignore_spatial_locations=True,
                       assert_missing_frames_are_empty=True)
        if grid.multiframe:
            numbers = seg.get_pixels_by_source_frame(grid.uids[0], grid.frames, **options)
        else:
            numbers = seg.get_pixels_by_source_instance(grid.uids, **options)
    return LabelMap(_source_to_volume(to_class[numbers], grid, volume.geometry), volume.geometry)


def _class_of(desc, path) -> int:
    key = getattr(desc, "tracking_id", None)
    if key in LABEL_BY_KEY:
        return LABEL_BY_KEY[key].id
    by_name = {c.name: c.id for c in LABEL_CLASSES}
    if desc.segment_label in by_name:
        return by_name[desc.segment_label]
    raise LoadError(f"segment {desc.segment_number} ({desc.segment_label!r}) is not a ctseg class", path)


def _source_to_volume(on_source: np.ndarray, grid: SourceGrid, geometry: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of source-slice labels onto the volume grid."""
    normal = grid.normal
    depth = grid.positions @ normal
    order = np.argsort(depth)
    depth_sorted = depth[order]
    half = np.diff(depth_sorted).max(initial=1.0) / 2 if len(depth) > 1 else 1.0
    out = np.zeros(geometry.shape, np.uint8)
    kk = np.arange(geometry.shape[0])
    jj, ii = np.meshgrid(np.arange(geometry.shape[1]), np.arange(geometry.shape[2]), indexing="ij")
    origin = np.asarray(geometry.origin)
    axes = geometry.direction_matrix * np.asarray(geometry.spacing_xyz)  # columns: mm per index step (i, j, k)
    for k in kk:
        p = origin + ii[..., None] * axes[:, 0] + jj[..., None] * axes[:, 1] + k * axes[:, 2]
        d = p @ normal
        pos = np.clip(np.searchsorted(depth_sorted, d), 1, len(depth_sorted) - 1) if len(depth) > 1 else 0
        nearest = np.where(np.abs(d - depth_sorted[pos - 1]) <= np.abs(d - depth_sorted[pos]), pos - 1, pos) \
            if len(depth) > 1 else np.zeros(d.shape, int)
        s = order[nearest]
        ok = np.abs(d - depth_sorted[nearest]) <= half
        rel = p - grid.positions[s]
        row = np.rint(rel @ grid.col_dir / grid.row_spacing).astype(np.int64)
        col = np.rint(rel @ grid.row_dir / grid.col_spacing).astype(np.int64)
        ok &= (row >= 0) & (row < grid.rows) & (col >= 0) & (col < grid.cols)
        out[k][ok] = on_source[s[ok], row[ok], col[ok]]
    return out
