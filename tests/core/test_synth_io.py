"""Writing synthetic cases: NIfTI and DICOM (plain and gantry-tilted) read back through ctseg's loaders,
and the ``ctseg synth`` command."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ctseg_core.io import load_volume
from ctseg_core.io.images import read_labels
from ctseg_core.labels import CLASSES
from ctseg_core.synth import generate_case, write_case
from ctseg_core.volume import to_sitk


@pytest.fixture(scope="module")
def case():
    return generate_case(5, shape_yx=(160, 160), pixel_spacing=1.4, n_slices=22, lesion_classes=[1, 2, 7])


def test_nifti_round_trip(case, tmp_path):
    paths = write_case(case, tmp_path)
    assert paths["ct"].name == "case_5_ct.nii.gz" and paths["labels"].name == "case_5_labels.nii.gz"
    vol = load_volume(paths["ct"])
    assert vol.geometry.matches(case.volume.geometry)
    assert np.array_equal(vol.array, case.volume.array)
    assert sitk.ReadImage(str(paths["ct"])).GetPixelID() == sitk.sitkInt16
    lab = read_labels(paths["labels"], like=vol)
    assert np.array_equal(lab.array, case.labels.array)


def test_dicom_series_is_valid_ct_and_loads(case, tmp_path):
    paths = write_case(case, tmp_path, fmt="dicom")
    files = sorted(paths["ct"].glob("*.dcm"))
    assert len(files) == case.volume.shape[0]
    ds = pydicom.dcmread(files[3])
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.pixel_array.dtype == np.int16 and float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert [float(x) for x in ds.PixelSpacing] == pytest.approx([1.4, 1.4]) and float(ds.SliceThickness) == 5
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(hu, case.volume.array[3])
    # the project's loader and SimpleITK's series reader give the scan back on the generator's grid
    vol = load_volume(paths["ct"])
    assert vol.geometry.matches(case.volume.geometry), vol.geometry
    assert np.array_equal(vol.array, case.volume.array)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(paths["ct"])))
    img = reader.Execute()
    assert np.allclose(img.GetOrigin(), case.volume.geometry.origin, atol=1e-3)
    assert np.allclose(sitk.GetArrayFromImage(img), case.volume.array)
    lab = read_labels(paths["labels"], like=vol)
    assert np.array_equal(lab.array, case.labels.array)


def test_tilted_dicom_matches_the_untilted_scan(case, tmp_path):
    paths = write_case(case, tmp_path, fmt="dicom", tilt_deg=15.0)
    ds = pydicom.dcmread(sorted(paths["ct"].glob("*.dcm"))[0])
    assert float(ds.GantryDetectorTilt) == pytest.approx(15.0)
    assert [float(x) for x in ds.ImageOrientationPatient][3:] == pytest.approx([0, np.cos(np.radians(15)), -np.sin(np.radians(15))], abs=1e-5)
    vol = load_volume(paths["ct"])
    assert abs(abs(vol.meta.gantry_tilt_deg) - 15.0) < 0.1
    lab = read_labels(paths["labels"], like=vol)  # the labels lie on the loaded grid
    # resample the loaded scan back onto the generator's grid: it matches the untilted volume
    back = sitk.Resample(to_sitk(vol.array, vol.geometry), to_sitk(case.volume.array, case.volume.geometry),
                         sitk.Transform(), sitk.sitkLinear, -1024.0)
    back = sitk.GetArrayFromImage(back)
    brain = (case.volume.array > 0) & (case.volume.array < 100)
    inner = np.zeros_like(brain)
    inner[4:-4] = brain[4:-4]  # leave out the slices the tilted stack only partly covers
    diff = np.abs(back[inner] - case.volume.array[inner])
    assert np.median(diff) < 10, np.median(diff)
    assert np.corrcoef(back[inner], case.volume.array[inner])[0, 1] > 0.5
    for c in (1, 2, 7):
        ml_truth = (case.labels.array == c).sum() * case.volume.geometry.voxel_volume_ml
        ml_tilt = (lab.array == c).sum() * vol.geometry.voxel_volume_ml
        assert ml_tilt == pytest.approx(ml_truth, rel=0.2), (c, ml_tilt, ml_truth)


def test_synth_command(tmp_path):
    from ctseg_core.cli import main

    assert main(["synth", "--n", "2", "--out", str(tmp_path), "--seed", "40", "--size", "96"]) == 0
    index = json.loads((tmp_path / "cases.json").read_text())
    assert [e["seed"] for e in index] == [40, 41]
    for e in index:
        vol = load_volume(e["ct"])
        lab = read_labels(e["labels"], like=vol)
        assert vol.shape[1:] == (96, 96) and lab.array.max() <= 7
    assert main(["synth", "--n", "1", "--out", str(tmp_path / "d"), "--seed", "3", "--size", "64", "--format", "dicom",
                 "--tilt", "10"]) == 0
    assert len(list((tmp_path / "d" / "case_3_dicom").glob("*.dcm"))) > 20
    assert main(["synth", "--n", "1", "--out", str(tmp_path), "--tilt", "5"]) == 2  # tilt needs DICOM: clear error
    # a randomly drawn scan: its spacing and thickness reach the written files
    assert main(["synth", "--n", "1", "--out", str(tmp_path / "r"), "--seed", "7", "--size", "96", "--random-scan"]) == 0
    entry = json.loads((tmp_path / "r" / "cases.json").read_text())[0]
    vol = load_volume(entry["ct"])
    assert vol.shape[1:] == (96, 96) and vol.spacing[0] == pytest.approx(entry["spacing"][0], abs=1e-3)
    assert entry["spacing"] != [5.0, entry["spacing"][1], entry["spacing"][2]]
    assert main(["synth", "--n", "1", "--out", str(tmp_path), "--random-scan", "--thin"]) == 2


def test_bundled_demo_case():
    from ctseg_core.resources import DEMO_CT, DEMO_TRUTH

    vol = load_volume(DEMO_CT)
    lab = read_labels(DEMO_TRUTH, like=vol)
    assert vol.shape[1:] == (512, 512) and 24 <= vol.shape[0] <= 32
    present = set(np.unique(lab.array)) - {0}
    assert len(present) >= 3 and {1, 2, 3, 7} <= present
    assert sitk.ReadImage(str(DEMO_CT)).GetPixelID() == sitk.sitkInt16
    assert DEMO_CT.stat().st_size + DEMO_TRUTH.stat().st_size < 10e6
    for c in present:  # each class shows its own CT numbers
        lo, hi = CLASSES[c].hu_range
        assert lo <= vol.array[lab.array == c].mean() <= hi
