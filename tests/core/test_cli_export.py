"""``ctseg export``: a case's labels as NIfTI / DICOM SEG and its findings as CSV / JSON; mismatches refused."""

import csv
import json

import numpy as np
import pydicom
import pytest

from ctseg_core.cli import main
from ctseg_core.io import load_volume
from ctseg_core.io.images import read_labels, read_volume, write_labels, write_volume
from ctseg_core.store import Workspace
from ctseg_core.volume import Geometry, LabelMap, Volume


@pytest.fixture
def nifti_case(tmp_path):
    arr = np.full((10, 48, 48), 30.0, np.float32)
    vol = Volume.from_array(arr, spacing=(5.0, 0.5, 0.5))
    write_volume(vol, tmp_path / "scan.nii.gz")
    vol = read_volume(tmp_path / "scan.nii.gz")
    ws = Workspace(tmp_path / "ws")
    case = ws.open_case(vol, tmp_path / "scan.nii.gz")
    labels = LabelMap.empty_like(vol)
    labels.array[2:6, 10:30, 10:30] = 1  # 4 slices x 400 voxels x 1.25 uL = 2 mL
    case.save_final(labels)
    return ws, case, vol, labels


def test_export_case_nifti_csv_json(nifti_case, tmp_path, capsys):
    ws, case, vol, labels = nifti_case
    base = ["export", case.id, "--workspace", str(ws.root)]
    assert main(base + ["--format", "nifti", "-o", str(tmp_path / "out.nii.gz")]) == 0
    np.testing.assert_array_equal(read_labels(tmp_path / "out.nii.gz", like=vol).array, labels.array)

    assert main(base + ["--format", "csv", "-o", str(tmp_path / "f.csv")]) == 0
    rows = {r["key"]: r for r in csv.DictReader(open(tmp_path / "f.csv"))}
    assert float(rows["ich"]["volume_ml"]) == pytest.approx(2.0) and rows["ich"]["positive"] == "1"
    assert float(rows["sdh"]["volume_ml"]) == 0

    assert main(base + ["--format", "json", "-o", str(tmp_path / "f.json")]) == 0
    data = json.loads((tmp_path / "f.json").read_text())
    ich = next(c for c in data["classes"] if c["key"] == "ich")
    assert ich["slices"] == [3, 4, 5, 6] and ich["voxels"] == 1600  # slice numbers count from 1

    # the case folder works as well as its id (no --workspace needed)
    assert main(["export", str(case.folder), "--format", "csv", "-o", str(tmp_path / "g.csv")]) == 0
    assert (tmp_path / "g.csv").read_text() == (tmp_path / "f.csv").read_text()

    # no prediction stored yet: a clear error, exit code 2
    assert main(base + ["--format", "nifti", "--source", "prediction", "-o", str(tmp_path / "p.nii.gz")]) == 2
    assert "no prediction label map" in capsys.readouterr().err
    assert main(["export", "no-such-case", "--workspace", str(ws.root), "--format", "csv",
                 "-o", str(tmp_path / "x.csv")]) == 2


def test_export_label_file_checked_against_scan(nifti_case, tmp_path, capsys):
    ws, case, vol, labels = nifti_case
    other = LabelMap(labels.array, Geometry(vol.shape, (2.5, 0.5, 0.5)))
    write_labels(other, tmp_path / "other.nii.gz")
    rc = main(["export", str(tmp_path / "other.nii.gz"), "--scan", str(tmp_path / "scan.nii.gz"),
               "--format", "csv", "-o", str(tmp_path / "o.csv")])
    assert rc == 2 and not (tmp_path / "o.csv").exists()
    err = capsys.readouterr().err
    assert "other.nii.gz" in err and "spacing" in err
    # without a scan a label file exports as is; DICOM SEG then asks for the scan
    assert main(["export", str(tmp_path / "other.nii.gz"), "--format", "json", "-o", str(tmp_path / "o.json")]) == 0
    assert main(["export", str(tmp_path / "other.nii.gz"), "--format", "dicom-seg",
                 "-o", str(tmp_path / "o.dcm")]) == 2
    assert "--scan" in capsys.readouterr().err


def test_export_dicom_case_as_dicom_seg(ge_tilt, tmp_path):
    vol = load_volume(ge_tilt)
    ws = Workspace(tmp_path / "ws")
    case = ws.open_case(vol)  # source path from the loader: the DICOM folder
    assert case.record.source.kind == "dicom" and case.record.source.n_files == 28
    assert ws.open_case(vol, ge_tilt).id == case.id
    labels = LabelMap.empty_like(vol)
    labels.array[8:12, 250:300, 200:260] = 2
    case.save_prediction(labels, "aa_unet-2")
    case.save_final(labels)
    out = tmp_path / "case.seg.dcm"
    assert main(["export", case.id, "--workspace", str(ws.root), "--format", "dicom-seg", "-o", str(out)]) == 0
    ds = pydicom.dcmread(out)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == vol.meta.series_uid
    assert ds.SegmentSequence[0].TrackingID == "sdh"
    algo = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "ctseg" and algo.AlgorithmVersion == "aa_unet-2"
    assert [t.case_id for t in ws.training_cases(statuses=("in_review",))] == [case.id]


def test_case_findings_carry_the_stored_model_confidence_and_review(nifti_case, tmp_path, capsys):
    from ctseg_core.model_identity import ModelIdentity

    ws, case, vol, labels = nifti_case
    unc = np.where(labels.array == 1, 0.25, 0.0).astype(np.float32)  # the model gave ICH probability 0.75
    model = ModelIdentity("aa_unet", "v2", parent="default", sha256="cd" * 32)
    case.save_prediction(labels, model.label, model=model, uncertainty=unc)
    case.set_status("corrected", annotator="dr_x")
    assert main(["export", str(case.folder), "--format", "csv", "-o", str(tmp_path / "c.csv")]) == 0
    ich = {r["key"]: r for r in csv.DictReader(open(tmp_path / "c.csv"))}["ich"]
    assert float(ich["model_mean_probability"]) == pytest.approx(0.75, abs=0.01)
    assert ich["origin"] == "model" and ich["model"] == "aa_unet v2 (retrained from default)"
    assert ich["review"] == "corrected by dr_x"
