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
    guarded = read_labels(out, like=vol).array
    assert guarded.shape == vol.shape
    raw_out = tmp_path / "ge_raw.nii.gz"
    assert main(["segment", str(ge_tilt), "-o", str(raw_out), "--model", str(ckpt), "--device", "cpu",
                 "--no-guard"]) == 0
    raw = read_labels(raw_out, like=vol).array
    # the random tiny model paints blood in the air around the head; the guard (default) removes it (air
    # may stay pneumocephalus inside the skull) and removes nothing the raw model did not paint
    air = vol.array < -500
    blood = [c.id for c in LESION_CLASSES if c.key != "pneumocephalus"]
    assert np.isin(raw[air], blood).any() and not np.isin(guarded[air], blood).any()
    assert np.all((guarded == raw) | (guarded == 0))
    removed_ml = float(((raw > 0) & (guarded == 0)).sum()) * vol.geometry.voxel_volume_ml
    assert f"the anatomical guard removed {removed_ml:.2f} mL the model painted" in text  # said, per rule
    assert "no unsure-piece rule for this model" in text  # the tiny model's card names no threshold
    strict_out = tmp_path / "ge_strict.nii.gz"
    assert "the anatomical guard" not in capsys.readouterr().out  # the --no-guard run says nothing of it
    assert main(["segment", str(ge_tilt), "-o", str(strict_out), "--model", str(ckpt), "--device", "cpu",
                 "--piece-confidence", "0.99", "--json"]) == 0
    guard = json.loads(capsys.readouterr().out)["guard"]
    strict = read_labels(strict_out, like=vol).array
    assert guard["threshold"] == 0.99 and guard["unsure_pieces"] > 0  # a random model is sure of little
    assert np.all((strict == guarded) | (strict == 0)) and (strict > 0).sum() < (guarded > 0).sum()
    gone_ml = float(((guarded > 0) & (strict == 0)).sum()) * vol.geometry.voxel_volume_ml
    assert guard["unsure_ml"] == pytest.approx(gone_ml, abs=1e-3)


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
    assert "scans that hold the class only" in text and "painted it on" in text

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


def head_phantom(shape=(8, 48, 48), spacing=(4.0, 0.9, 0.9)) -> Volume:
    """A small piece of head: brain, a dense blob, skull, air around."""
    _, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    r = np.hypot((y - shape[1] / 2) / (shape[1] * 0.45), (x - shape[2] / 2) / (shape[2] * 0.45))
    arr = np.where(r < 0.85, 32.0, np.where(r < 1.0, 1100.0, -1000.0)).astype(np.float32)
    arr[2:6, 18:28, 14:26] = 72.0
    return Volume.from_array(arr, spacing=spacing, origin=(-20.0, -30.0, 10.0))


def test_segment_with_the_bundled_blast_ct_writes_ctseg_labels_on_the_scans_grid(tmp_path, capsys):
    """The real BLAST-CT checkpoint (1 member, torch) on a small piece of head: labels on the scan's grid in
    ctseg's label values, the report names the model and its members."""
    scan = tmp_path / "head.nii.gz"
    write_volume(head_phantom(), scan)
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(scan), "-o", str(out), "--model", "blast_ct", "--members", "1", "--engine", "torch",
                 "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"].startswith("blast_ct v1") and report["model"].endswith("(1 of 12 members)")
    assert "guard" not in report  # a volume model: no anatomical guard
    vol = read_volume(scan)
    labels = read_labels(out, like=vol)
    assert set(np.unique(labels.array)) <= {0, 1, 7, 8, 9}  # background, ICH, IVH, extra-axial, oedema
    keys = [c["key"] for c in report["classes"]]
    assert keys[:7] == [c.key for c in LESION_CLASSES] and set(keys[7:]) <= {"extra_axial", "oedema"}
    assert all(c["hemorrhage"] == (c["key"] not in ("oedema", "pneumocephalus")) for c in report["classes"])


def test_a_piece_confidence_outside_0_to_1_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path / "absent.nii.gz"), "-o", str(tmp_path / "out.nii.gz"), "--piece-confidence", "1.5"])
    assert "a mean probability from 0 to below 1, not '1.5'" in capsys.readouterr().err
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("share", ["0.3", "1.5", "most"])
def test_a_type_share_that_is_not_off_or_a_majority_is_refused_before_anything_runs(tmp_path, capsys, share):
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path / "absent.nii.gz"), "-o", str(tmp_path / "out.nii.gz"), "--type-share", share])
    assert f"0 (off) or a share from 0.5 to 1, not '{share}'" in capsys.readouterr().err


def test_guard_settings_on_the_command_line_override_the_cards_one_by_one():
    from argparse import Namespace

    from ctseg_core.cli.segment import predictor_options

    guard = predictor_options(Namespace(type_share=0.0, piece_confidence=None))["guard"]
    assert guard.min_type_share == 0.0 and guard.min_piece_confidence is None  # None: the card's threshold
    assert "guard" not in predictor_options(Namespace(type_share=None, piece_confidence=None))
    assert predictor_options(Namespace(no_guard=True, type_share=0.9))["guard"] is None


def test_members_do_not_apply_to_a_slice_model(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path)
    scan = tmp_path / "scan.nii.gz"
    write_volume(oblique_volume(), scan)
    assert main(["segment", str(scan), "-o", str(tmp_path / "l.nii.gz"), "--model", str(ckpt), "--members", "2"]) == 2
    assert "option(s) members do not apply" in capsys.readouterr().err


def test_evaluate_compares_a_volume_model_on_shared_classes_and_normal_scans(tmp_path, capsys, monkeypatch):
    """A slice model and a (tiny, random) BLAST-CT-shaped ensemble side by side: the per-class table has the
    slice model only; both appear on the shared classes, on the normal scan, and in the times."""
    import torch

    from ctseg_core.checkpoint import ModelCard, save_checkpoint
    from ctseg_core.models import create_model

    monkeypatch.setenv("CTSEG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    vol = head_phantom()
    write_volume(vol, data / "case_1_ct.nii.gz")
    truth = np.zeros(vol.shape, np.uint8)
    truth[vol.array == 72.0] = 2  # SDH: the shared group "eah"
    write_labels(LabelMap(truth, vol.geometry), data / "case_1_labels.nii.gz")
    normal = tmp_path / "normal.nii.gz"
    write_volume(head_phantom(), normal)
    torch.manual_seed(0)
    ensemble = create_model("blast_ct", members=2, feature_maps=(4,) * 8, fully_connected=(8, 8))
    blast = save_checkpoint(ensemble, ModelCard.for_model(ensemble), tmp_path / "tiny_blast")
    slice_model = save_tiny_checkpoint(tmp_path, "slice_model")
    assert main(["evaluate", "--data", str(data), "--normal-scan", str(normal), "--model", str(slice_model),
                 "--model", str(blast), "--members", "1", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    table_one = text.split("Dice per class, sample average")[1].split("\n\n")[0]
    assert "slice_model (aa_unet v1)" in table_one and "tiny_blast" not in table_one
    shared = text.split("Dice on the shared classes")[1].split("\n\n")[0]
    header = next(line for line in shared.splitlines() if line.startswith("model"))
    assert header.split()[1:5] == ["ICH", "EAH", "IVH", "BLOOD"]
    assert "tiny_blast (blast_ct v1, 1 of 2 members)" in shared and "slice_model (aa_unet v1)" in shared
    normal_rows = text.split("Volume painted (mL) on scans without hemorrhage")[1].split("\n\n")[0]
    assert "normal.nii.gz" in normal_rows and "EXTRA_" in normal_rows
    assert "Inference time on this machine" in text and "s/scan" in text
