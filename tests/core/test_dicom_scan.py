"""Series discovery on the real Philips multi-series study and on altered copies."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pydicom
import pytest

from ctseg_core.errors import LoadError, NotCTError
from ctseg_core.io.dicom import load_dicom_series, scan_folder

S2010_SLICES, S3010_SLICES = 54, 58


@pytest.fixture(scope="module")
def philips_scan(philips_multi):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing in the real study is corrupt: no warnings
        return scan_folder(philips_multi)


def by_slices(scan, n):
    (match,) = [s for s in scan.series if s.n_slices == n and s.is_axial_ct]
    return match


def test_philips_series_listed_and_largest_axial_ct_selected(philips_scan, philips_multi):
    scan = philips_scan
    s2010, s3010 = by_slices(scan, S2010_SLICES), by_slices(scan, S3010_SLICES)
    assert scan.selected() is s3010 and not s2010.selected
    assert [s.selected for s in scan.series].count(True) == 1
    assert {f.parent.name for f in s2010.files} == {"S2010"} and len(s2010.files) == S2010_SLICES
    assert {f.parent.name for f in s3010.files} == {"S3010"}
    assert (s2010.rows, s2010.cols) == (512, 512)
    assert s2010.pixel_spacing_mm == pytest.approx((0.482421875, 0.482421875))
    assert s3010.pixel_spacing_mm == pytest.approx((0.40625, 0.40625))
    # 2.5 mm table steps seen along a normal tilted by 18.5 / 16.5 degrees
    assert s2010.slice_spacing_mm == pytest.approx((2.5 * math.cos(math.radians(18.5)),) * 2, abs=2e-3)
    assert s3010.slice_spacing_mm == pytest.approx((2.5 * math.cos(math.radians(16.5)),) * 2, abs=2e-3)
    # the scout: localizer, one slice, listed but never chosen
    (scout,) = [s for s in scan.series if s.files[0].parent.name == "S1000"]
    assert not scout.is_axial_ct and scout.n_slices == 1 and (scout.rows, scout.cols) == (256, 512)
    assert any("localizer" in n for n in scout.notes)
    # dose screens: one series of mixed sizes split into parts, all secondary captures
    dose = [s for s in scan.series if s.files[0].parent.name == "S4010"]
    assert sum(s.n_slices for s in dose) == 5 and len(dose) == 3
    base = dose[0].series_uid
    assert {s.series_uid for s in dose} == {base, base + "#2", base + "#3"}
    assert all(not s.is_axial_ct and any("secondary capture" in n for n in s.notes) for s in dose)
    assert all(any("split into 3 parts" in n for n in s.notes) for s in dose)
    assert any(any("RGB" in n for n in s.notes) for s in dose)
    # the DIRFILE index files (top level and in every series folder): skipped with a reason
    assert sorted(str(k.path.relative_to(philips_multi)) for k in scan.skipped) == [
        "DIRFILE", "S1000/DIRFILE", "S2010/DIRFILE", "S3010/DIRFILE", "S4010/DIRFILE"]
    assert all("no pixel data" in k.reason and "directory" in k.reason for k in scan.skipped)


def test_philips_against_dcm2niix_sidecars(philips_scan, dicom_data):
    for name in ("1F_STEREOTAXIS_Head_201.json", "1F_STEREOTAXIS_Head_301.json"):
        ref = json.loads((dicom_data / "reference_dcm2niix" / name).read_text())
        iop = np.asarray(ref["ImageOrientationPatientDICOM"])
        (series,) = [s for s in philips_scan.series if s.is_axial_ct
                     and np.allclose(s.slices[0].orientation, iop, atol=1e-5)]
        header = series.slices[0].header
        assert series.modality == ref["Modality"] and series.description == ref["SeriesDescription"]
        assert header.series_number == ref["SeriesNumber"]
        assert list(header.image_type) == ref["ImageType"]
        # the table moves along z, so the tilt is the angle between the slice normal and z
        normal = np.cross(iop[:3], iop[3:])
        expected = math.degrees(math.acos(abs(normal[2]) / np.linalg.norm(normal)))
        assert abs(series.gantry_tilt_deg) == pytest.approx(expected, abs=0.05)
        # the vendor's GantryDetectorTilt has the opposite sign convention to GE's: noted, magnitude agrees
        assert abs(header.gantry_tilt_tag) == pytest.approx(expected, abs=0.05)
        assert any("opposite sign" in n for n in series.notes)


def test_philips_json_shape(philips_scan):
    data = json.loads(json.dumps(philips_scan.to_json()))
    assert set(data) == {"series", "skipped"}
    keys = {"series_uid", "modality", "description", "n_slices", "rows", "cols", "pixel_spacing_mm",
            "slice_positions_spacing_mm", "gantry_tilt_deg", "selected", "notes"}
    assert all(set(s) == keys for s in data["series"])
    assert all(set(k) == {"path", "reason"} for k in data["skipped"])
    chosen = [s for s in data["series"] if s["selected"]]
    assert len(chosen) == 1 and chosen[0]["n_slices"] == S3010_SLICES
    assert set(chosen[0]["slice_positions_spacing_mm"]) == {"min", "max"}


def test_default_and_named_series_load(philips_multi, philips_scan):
    v = load_dicom_series(philips_multi)
    assert v.meta.extra["source_shape"] == [S3010_SLICES, 512, 512]
    assert v.meta.gantry_tilt_deg == pytest.approx(-16.5, abs=0.05)
    assert "5 file(s) without images ignored" in " ".join(v.meta.notes)
    uid = by_slices(philips_scan, S2010_SLICES).series_uid
    v2 = load_dicom_series(philips_multi, series_uid=uid)
    assert v2.meta.series_uid == uid and v2.meta.extra["source_shape"] == [S2010_SLICES, 512, 512]
    assert v2.spacing[1:] == pytest.approx((0.482421875, 0.482421875))
    assert v2.meta.description == "STEREOTAXIS"
    # plausible HU for the phantom: air outside, nothing below it
    assert v2.array.min() == pytest.approx(-1024) and 200 < v2.array.max() < 3000


def test_unknown_or_unsuitable_series_uid(philips_multi, philips_scan):
    with pytest.raises(LoadError) as err:
        load_dicom_series(philips_multi, series_uid="1.2.3.4")
    message = str(err.value)
    assert "1.2.3.4" in message
    assert all(s.series_uid in message for s in philips_scan.series)
    # a scout can be opened on request: one slice, its thickness as spacing
    scout = next(s for s in philips_scan.series if any("localizer" in n for n in s.notes))
    v = load_dicom_series(philips_multi, series_uid=scout.series_uid)
    assert v.shape == (1, 256, 512) and v.spacing[0] == pytest.approx(0.625)
    assert any("single slice" in n for n in v.meta.notes)
    dose = next(s for s in philips_scan.series if any("secondary capture" in n for n in s.notes))
    with pytest.raises(LoadError, match="not CT image data"):
        load_dicom_series(philips_multi, series_uid=dose.series_uid)


def test_folder_without_ct(ge_tilt_altered, tmp_path):
    for f in sorted(ge_tilt_altered.glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.save_as(tmp_path / f.name)
    scan = scan_folder(tmp_path)
    assert scan.selected() is None and any("not CT" in n for n in scan.series[0].notes)
    with pytest.raises(NotCTError, match="no CT series found.*MR"):
        load_dicom_series(tmp_path)
    with pytest.raises(NotCTError, match="MR, not CT"):
        load_dicom_series(tmp_path, series_uid=scan.series[0].series_uid)


def test_series_with_two_sizes_is_split(ge_tilt_altered, tmp_path):
    files = sorted(ge_tilt_altered.glob("*.dcm"))[:5]
    for f in files[:4]:
        shutil.copy(f, tmp_path / f.name)
    ds = pydicom.dcmread(files[4])  # same series UID, cropped to 256 x 256
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:256, :256]).tobytes()
    ds.Rows, ds.Columns = 256, 256
    ds.save_as(tmp_path / "small.dcm")
    scan = scan_folder(tmp_path)
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    assert [(s.series_uid, s.n_slices, s.rows) for s in scan.series] == [(uid, 4, 512), (uid + "#2", 1, 256)]
    assert scan.selected().series_uid == uid
    assert load_dicom_series(tmp_path).shape == (4, 512, 512)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(LoadError, match="no DICOM image found"):
        load_dicom_series(tmp_path)
    with pytest.raises(LoadError, match="folder not found"):
        scan_folder(tmp_path / "nope")


def test_progress_is_reported(ge_tilt_altered):
    calls = []
    load_dicom_series(ge_tilt_altered, progress=lambda done, total, msg: calls.append((done, total, msg)))
    headers = [c for c in calls if c[2] == "reading DICOM headers"]
    pixels = [c for c in calls if c[2] == "reading pixels"]
    assert headers[-1][:2] == (28, 28) and pixels[-1][:2] == (28, 28)


def test_headers_read_once_for_scan_then_load_but_changes_are_seen(ge_tilt_altered, tmp_path, monkeypatch):
    import ctseg_core.io.dicom_scan as dicom_scan

    for f in sorted(ge_tilt_altered.glob("*.dcm"))[:4]:
        shutil.copy(f, tmp_path / f.name)
    dicom_scan.clear_header_cache()
    reads = []
    real = dicom_scan.read_file_header
    monkeypatch.setattr(dicom_scan, "read_file_header", lambda p: reads.append(p.name) or real(p))
    scan_folder(tmp_path)
    assert load_dicom_series(tmp_path).shape[0] == 4
    assert sorted(reads) == ["01.dcm", "02.dcm", "03.dcm", "04.dcm"]  # parsed once for both
    data = (tmp_path / "04.dcm").read_bytes()
    (tmp_path / "04.dcm").write_bytes(data[:-100])  # changed: read again, and found truncated
    with pytest.warns(UserWarning, match="04.dcm"):
        assert load_dicom_series(tmp_path).shape[0] == 3
    assert reads.count("04.dcm") == 2
