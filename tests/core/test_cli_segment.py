"""``ctseg segment`` and ``ctseg evaluate`` end to end with small random-weight checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_models import save_tiny_checkpoint
from ctseg_core.cli import main
from ctseg_core.io import load_volume
from ctseg_core.io.images import read_labels, read_volume, write_labels, write_volume
from ctseg_core.labels import LESION_CLASSES
from ctseg_core.metrics import overlap_counts, overlap_scores
from ctseg_core.predictor import Predictor
from ctseg_core.volume import LabelMap, Volume


def oblique_volume(seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.normal(30, 10, (4, 40, 48)).astype(np.float32)
    arr[:, 10:20, 10:30] = 70
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return Volume.from_array(arr, spacing=(2.5, 0.8, 0.7), origin=(-50.0, 20.0, 100.0), direction=direction)


def test_segment_writes_labels_on_the_scans_geometry(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path, spacing_mm=0.5)  # the model's plan differs from the scan's spacing
    scan = tmp_path / "scan.nii.gz"
    write_volume(oblique_volume(), scan)
    out = tmp_path / "out" / "labels.nii.gz"
    assert main(["segment", str(scan), "-o", str(out), "--model", str(ckpt), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    vol = read_volume(scan)
    labels = read_labels(out, like=vol)  # raises unless on the scan's grid
    assert labels.array.shape == vol.shape
    expected = Predictor.from_checkpoint(ckpt, device="cpu").predict(vol).labels.array
    assert np.array_equal(labels.array, expected)
    assert [c["key"] for c in report["classes"]] == [c.key for c in LESION_CLASSES]
    voxel_ml = vol.geometry.voxel_volume_ml
    for c in report["classes"]:
        assert c["volume_ml"] == pytest.approx(np.count_nonzero(expected == c["id"]) * voxel_ml, abs=1e-3)
        assert isinstance(c["detected"], bool)


def test_segment_a_real_dicom_series(tmp_path, capsys, ge_tilt):
    ckpt = save_tiny_checkpoint(tmp_path, spacing_mm=2.0)  # 0.49 mm slices resampled to 2 mm and back
    out = tmp_path / "ge_labels.nii.gz"
    assert main(["segment", str(ge_tilt), "-o", str(out), "--model", str(ckpt), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "labels written to" in text and "Intracerebral hemorrhage (ICH)" in text
    vol = load_volume(ge_tilt)
    assert read_labels(out, like=vol).array.shape == vol.shape


def test_segment_without_a_default_model_says_so(tmp_path, capsys, monkeypatch):
    import ctseg_core.resources

    missing = tmp_path / "models" / "aa_unet_default.safetensors"
    monkeypatch.setattr(ctseg_core.resources, "DEFAULT_MODEL", missing)
    scan = tmp_path / "scan.nii.gz"
    write_volume(oblique_volume(), scan)
    assert main(["segment", str(scan), "-o", str(tmp_path / "l.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "default model is missing" in err and "--model" in err
    assert not (tmp_path / "l.nii.gz").exists()


def test_evaluate_prints_table_one(tmp_path, capsys):
    data = tmp_path / "data"
    for seed in (3, 4):
        vol = oblique_volume(seed)
        write_volume(vol, data / f"case_{seed}_ct.nii.gz")
        truth = np.zeros(vol.shape, np.uint8)
        truth[:, 10:20, 10:30] = 1
        truth[1:4, 30:35, 5:9] = 5
        write_labels(LabelMap(truth, vol.geometry), data / f"case_{seed}_labels.nii.gz")
    (data / "case_9_ct.nii.gz").write_bytes((data / "case_3_ct.nii.gz").read_bytes())  # no labels: skipped
    a = save_tiny_checkpoint(tmp_path, "model_a", seed=1)
    b = save_tiny_checkpoint(tmp_path, "model_b", arch="rsu", seed=2)
    assert main(["evaluate", "--data", str(data), "--model", str(a), "--model", str(b), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "Dice per class, sample average over 2 scans" in text
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert header.split()[1:] == ["ICH", "SDH", "SAH", "EDH", "CSDH", "PNEUMO", "IVH", "mean"]
    assert any(line.startswith("model_a (aa_unet v1)") for line in text.splitlines())
    assert any(line.startswith("model_b (rsu v1)") for line in text.splitlines())
    assert "Scan-level detection" in text

    assert main(["evaluate", "--data", str(data), "--model", str(a), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_cases"] == 2
    # the same numbers as computing them directly
    pred = Predictor.from_checkpoint(a, device="cpu")
    counts = []
    for seed in (3, 4):
        vol = read_volume(data / f"case_{seed}_ct.nii.gz")
        counts.append(overlap_counts(pred.predict(vol).labels, read_labels(data / f"case_{seed}_labels.nii.gz")))
    expected = overlap_scores(counts).as_dict()
    assert report["results"][0]["overlap"]["dice_voxel"] == {str(k): v for k, v in expected["dice_voxel"].items()}


def test_evaluate_with_no_pairs_is_a_clear_error(tmp_path, capsys):
    a = save_tiny_checkpoint(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--data", str(tmp_path / "empty"), "--model", str(a)]) == 2
    assert "no *_ct.nii.gz files" in capsys.readouterr().err
