"""Loading real DICOM series: order, HU, gantry tilt (shear) correction, uneven spacing, broken files."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ctseg_core.errors import GeometryError, LoadError
from ctseg_core.io import load_volume
from ctseg_core.io.dicom import load_dicom_series, scan_folder

PAD = -1500  # GE PixelPaddingValue: outside the reconstructed field, loaded as air


@pytest.fixture(scope="module")
def ge_volume(ge_tilt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real series loads without warnings
        return load_dicom_series(ge_tilt)


def raw_hu(path) -> np.ndarray:
    """Independent reference: pydicom's pixel_array, rescaled, padding as air."""
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    if "PixelPaddingValue" in ds:
        hu[ds.pixel_array == ds.PixelPaddingValue] = -1024
    return hu


def axes(iop):
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    return r, c, np.cross(r, c)


def copy_series(src, dst, names=None):
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.dcm"))
    for f in files if names is None else [files[k] for k in names]:
        shutil.copy(f, dst / f.name)
    return dst


def test_ge_tilt_geometry_against_dcm2niix_and_tags(ge_volume, dicom_data):
    v = ge_volume
    sidecar = json.loads((dicom_data / "reference_dcm2niix" / "_2.json").read_text())
    r, c, n = axes(sidecar["ImageOrientationPatientDICOM"])
    assert v.meta.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)
    assert v.meta.modality == sidecar["Modality"] == "CT"
    assert v.meta.extra["series_number"] == sidecar["SeriesNumber"]
    assert v.meta.extra["source_slice_thickness"][0] == sidecar["SliceThickness"]
    assert np.allclose(v.meta.extra["source_orientation"], sidecar["ImageOrientationPatientDICOM"], atol=1e-5)
    # orthonormal output whose axes are the slice plane's row/col axes and their normal
    d = v.geometry.direction_matrix
    assert np.allclose(d @ d.T, np.eye(3), atol=1e-6)
    assert np.allclose(d[:, 0], r, atol=1e-5) and np.allclose(d[:, 1], c, atol=1e-5)
    assert np.allclose(d[:, 2], n / np.linalg.norm(n), atol=1e-5)
    # 14 slices 4 mm apart then 7 mm: resampled to the median spacing (4.00 mm) over the full extent
    assert v.spacing[0] == pytest.approx(4.0019, abs=1e-3)
    assert v.spacing[1:] == pytest.approx((0.4882812, 0.4882812))
    assert v.shape[0] == 37 and v.shape[2] == 512
    assert v.shape[1] > 512  # the plane grew so the sheared slices are not cut


def test_ge_notes_say_what_was_done(ge_volume):
    notes = " | ".join(ge_volume.meta.notes)
    assert "gantry tilt +18.50°" in notes and "shear correction" in notes
    assert "uneven slice spacing" in notes and "1.08" in notes and "7.00" in notes
    assert "4.00 mm (the median gap)" in notes and "28 slices -> 37" in notes
    assert "overlap" in notes and "14.dcm" in notes and "15.dcm" in notes
    assert "PixelPaddingValue -1500" in notes
    assert "missing" not in notes  # 7 mm gaps between 7 mm thick slices leave nothing out


def test_ge_source_mapping_for_seg_writers(ge_volume, ge_tilt):
    extra = ge_volume.meta.extra
    files = extra["source_files"]
    assert len(files) == 28 and len(set(files)) == 28
    assert [len(x) for x in (extra["sop_instance_uids"], extra["source_positions"])] == [28, 28]
    _, _, n = axes(extra["source_orientation"])
    along = np.asarray(extra["source_positions"]) @ n
    assert np.all(np.diff(along) > 0)  # sorted along the normal
    for f, uid, pos in zip(files[::9], extra["sop_instance_uids"][::9], extra["source_positions"][::9]):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert ds.SOPInstanceUID == uid and np.allclose([float(x) for x in ds.ImagePositionPatient], pos)
    assert extra["source_shape"] == [28, 512, 512]
    assert extra["source_pixel_spacing"] == pytest.approx([0.4882812, 0.4882812])
    assert extra["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    assert ge_volume.meta.series_uid and ge_volume.meta.study_uid and ge_volume.meta.patient_id == "QMNx85rKkkg"
    assert ge_volume.meta.source_path == str(ge_tilt)


def test_ge_hu_range_is_head_ct(ge_volume):
    a = ge_volume.array
    assert a.dtype == np.float32
    assert a.min() == -1024  # air / padding / outside the scanned region
    assert 1200 < a.max() < 4000  # dense bone
    head = a > -200
    brain = (a > 0) & (a < 80)
    assert 0.1 < head.mean() < 0.6
    assert brain.sum() > 0.3 * head.sum()  # mostly soft tissue inside the head


def skull_centroid_slope(arr, positions_mm, row_mm):
    """Slope (mm per mm) of the skull's centroid along the rows vs the slice position."""
    ts, cs = [], []
    for k in range(arr.shape[0]):
        bone = arr[k] > 300
        if bone.sum() > 2000:
            ts.append(positions_mm[k])
            cs.append(np.nonzero(bone)[0].mean() * row_mm)
    return np.polyfit(ts, cs, 1)[0]


def test_tilt_correction_removes_the_shear(ge_volume):
    v = ge_volume
    extra = v.meta.extra
    raw = np.stack([raw_hu(f) for f in extra["source_files"]])
    r, c, n = axes(extra["source_orientation"])
    pos = np.asarray(extra["source_positions"])
    t_src = (pos - pos[0]) @ n
    row_mm = v.spacing[1]
    corrected = skull_centroid_slope(v.array, np.arange(v.shape[0]) * v.spacing[0], row_mm)
    sheared = skull_centroid_slope(raw, t_src, row_mm)
    # the uncorrected stack drifts by about tan(18.5°) = 0.33 mm per mm; the corrected head stays put
    assert abs(sheared) > 0.2
    assert abs(corrected) < 0.12 and abs(corrected) < abs(sheared) / 2
    # every bone pixel of a source slice lands on bone in the output at its true physical position;
    # placing the slices without their in-plane offsets (no shear correction) would miss
    rng = np.random.default_rng(0)
    hit, miss_if_unsheared = [], []
    for k in (1, 8, 16, 25):
        jj, ii = np.nonzero(raw[k] > 600)
        pick = rng.choice(len(jj), 400)
        inplane = np.outer(ii[pick] * v.spacing[2], r) + np.outer(jj[pick] * row_mm, c)
        for base, out in ((pos[k], hit), (pos[0] + t_src[k] * n, miss_if_unsheared)):
            idx = np.array([v.geometry.physical_to_index(p) for p in base + inplane])
            kk, yy, xx = np.round(idx).astype(int).T
            inside = (yy >= 0) & (yy < v.shape[1])
            out.append(np.mean(np.where(inside, v.array[kk, yy.clip(0, v.shape[1] - 1), xx] > 300, False)))
    assert min(hit) > 0.97
    assert np.mean(miss_if_unsheared) < 0.6


def test_altered_geometry_tilt_from_tags_not_from_gantry_tag(ge_tilt_altered):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = load_dicom_series(ge_tilt_altered)
    scan = scan_folder(ge_tilt_altered)
    assert abs(v.meta.gantry_tilt_deg) < 0.05 and abs(scan.series[0].gantry_tilt_deg) < 0.05
    notes = " | ".join(v.meta.notes)
    assert "GantryDetectorTilt tag says +18.5°" in notes and "shear" not in notes
    assert v.shape == (28, 512, 512) and v.spacing[0] == pytest.approx(2.5, abs=1e-4)
    r, c, n = axes(pydicom.dcmread(ge_tilt_altered / "01.dcm").ImageOrientationPatient)
    assert np.allclose(v.geometry.direction_matrix, np.column_stack([r, c, n]), atol=1e-6)
    # no resampling was needed: each output slice is exactly the source slice at that position
    for k in (0, 13, 27):
        assert np.array_equal(v.array[k], raw_hu(v.meta.extra["source_files"][k]))
    assert np.allclose(v.geometry.origin, v.meta.extra["source_positions"][0])


def test_order_comes_from_positions_not_names_or_instance_numbers(ge_tilt_altered, tmp_path):
    files = sorted(ge_tilt_altered.glob("*.dcm"))[:6]
    for i, f in enumerate(files):  # reversed names, scrambled instance numbers
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = (i * 7) % 6 + 1
        ds.save_as(tmp_path / f"{len(files) - i:02d}.dcm")
    v = load_volume(tmp_path)
    assert v.shape == (6, 512, 512)
    for k, f in enumerate(files):
        assert np.array_equal(v.array[k], raw_hu(f))


def test_rescale_slope_and_intercept_apply_per_slice(ge_tilt_altered, tmp_path):
    files = sorted(ge_tilt_altered.glob("*.dcm"))[:4]
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        raw = ds.pixel_array.astype(np.int32)
        if i == 1:  # HU = 0.5 * stored
            stored, ds.RescaleSlope, ds.PixelPaddingValue = raw * 2, 0.5, PAD * 2
        elif i == 2:  # HU = stored - 1024
            stored, ds.RescaleIntercept, ds.PixelPaddingValue = raw + 1024, -1024, PAD + 1024
        else:
            stored = raw
        ds.PixelData = stored.astype(np.int16).tobytes()
        ds.save_as(tmp_path / f.name)
    v = load_dicom_series(tmp_path)
    for k, f in enumerate(files):
        assert np.array_equal(v.array[k], raw_hu(f)), f"slice {k}"


def test_missing_slices_refused_or_interpolated_by_parameter(ge_tilt_altered, tmp_path):
    folder = copy_series(ge_tilt_altered, tmp_path / "gap", names=[0, 1, 2, 5, 6, 7])  # 3 and 4 missing
    with pytest.raises(GeometryError, match=r"7\.50 mm between 03\.dcm and 06\.dcm") as err:
        load_dicom_series(folder)
    assert "03.dcm" in str(err.value) or "06.dcm" in str(err.value)
    v = load_dicom_series(folder, max_gap_factor=4)
    assert v.shape[0] == 8 and v.spacing[0] == pytest.approx(2.5, abs=1e-3)
    notes = " | ".join(v.meta.notes)
    assert "about 2 slice(s) appear to be missing between 03.dcm and 06.dcm" in notes
    assert "resampled" in notes
    # interpolated slice 3 lies between the neighbours' values
    a, b = raw_hu(folder / "03.dcm"), raw_hu(folder / "06.dcm")
    assert np.allclose(v.array[3], a + (b - a) / 3, atol=0.5)  # rounded to whole HU


def test_corrupt_files_are_skipped_by_name(ge_tilt_altered, tmp_path):
    folder = copy_series(ge_tilt_altered, tmp_path / "s", names=[0, 1, 2, 3, 4, 5])
    data = (folder / "06.dcm").read_bytes()
    (folder / "06.dcm").write_bytes(data[: len(data) // 2])  # truncated inside the pixel data
    (folder / "07.dcm").write_bytes(data[:132] + np.random.default_rng(1).bytes(3000))  # DICM + garbage
    (folder / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning) as record:
        v = load_dicom_series(folder)
    warned = " ".join(str(w.message) for w in record)
    assert "06.dcm" in warned and "truncated" in warned and "07.dcm" in warned
    assert v.shape[0] == 5
    notes = " | ".join(v.meta.notes)
    assert "skipped 06.dcm: truncated" in notes and "skipped 07.dcm" in notes and "notes.txt" in notes
    with pytest.warns(UserWarning):
        scan = scan_folder(folder)
    assert {k.path.name for k in scan.skipped} == {"06.dcm", "07.dcm", "notes.txt"}


def test_corrupt_file_that_breaks_the_geometry_is_refused(ge_tilt_altered, tmp_path):
    folder = copy_series(ge_tilt_altered, tmp_path / "s", names=[0, 1, 2, 3, 4])
    data = (folder / "03.dcm").read_bytes()
    (folder / "03.dcm").write_bytes(data[:-1000])
    with pytest.warns(UserWarning, match="03.dcm"), pytest.raises(GeometryError) as err:
        load_dicom_series(folder, max_gap_factor=1.5)
    assert "03.dcm (truncated" in str(err.value) and "02.dcm and 04.dcm" in str(err.value)


def test_same_position_twice_is_refused(ge_tilt_altered, tmp_path):
    folder = copy_series(ge_tilt_altered, tmp_path / "s", names=[0, 1, 2])
    ds = pydicom.dcmread(folder / "02.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(folder / "02b.dcm")
    with pytest.raises(GeometryError, match="same position"):
        load_dicom_series(folder)
    # an exact copy of an instance (same SOP Instance UID) is simply ignored
    (folder / "02b.dcm").unlink()
    shutil.copy(folder / "02.dcm", folder / "02copy.dcm")
    v = load_dicom_series(folder)
    assert v.shape[0] == 3 and any("copy of an instance" in n for n in scan_folder(folder).series[0].notes)


def test_file_without_pixel_data(ge_tilt_altered, tmp_path):
    ds = pydicom.dcmread(ge_tilt_altered / "01.dcm")
    del ds.PixelData
    only = tmp_path / "only"
    only.mkdir()
    ds.save_as(only / "nopix.dcm")
    with pytest.warns(UserWarning, match="nopix.dcm"), pytest.raises(LoadError) as err:
        load_dicom_series(only)
    assert "nopix.dcm: no pixel data" in str(err.value)
    mixed = copy_series(ge_tilt_altered, tmp_path / "mixed", names=[1, 2, 3])
    ds.save_as(mixed / "nopix.dcm")
    with pytest.warns(UserWarning, match="nopix.dcm"):
        v = load_dicom_series(mixed)
    assert v.shape[0] == 3
    with pytest.warns(UserWarning, match="nopix.dcm"):
        skipped = scan_folder(mixed).skipped
    assert any(k.path.name == "nopix.dcm" and "no pixel data" in k.reason for k in skipped)


def test_untilted_series_agrees_with_simpleitk(ge_tilt_altered):
    import SimpleITK as sitk

    from ctseg_core.volume import geometry_from_sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(ge_tilt_altered)))
    img = reader.Execute()
    ref = sitk.GetArrayFromImage(img).astype(np.float32)
    v = load_dicom_series(ge_tilt_altered)
    assert v.geometry.matches(geometry_from_sitk(img))
    padding = ref == PAD
    assert padding.any() and np.all(v.array[padding] == -1024)
    assert np.array_equal(v.array[~padding], ref[~padding])


def test_native_fast_path_equals_pydicom_pixel_array(philips_multi, ge_tilt):
    from ctseg_core.io.dicom_decode import decode_stack
    from ctseg_core.io.dicom_headers import read_file_header

    files = [ge_tilt / "01.dcm", ge_tilt / "20.dcm"]
    files += sorted((philips_multi / "S2010").glob("I1*"))[:2]  # 12 of 16 bits, unsigned, intercept -1024
    for f in files:
        header, slices = read_file_header(f)
        assert header.pixel_offset is not None  # read straight from the file, not through pydicom
        hu, failures, _ = decode_stack(slices)
        assert not failures and np.array_equal(hu[0], raw_hu(f))
