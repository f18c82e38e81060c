"""The smaller bad-input cases of the command line: each is a one-line error naming the problem (exit 2),
never a traceback, a 32 GB allocation, a silently created workspace or a case outside the workspace."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from ctseg_core.cli import main
from ctseg_core.errors import CheckpointError
from ctseg_core.io.dicom import load_dicom_series, scan_folder
from ctseg_core.store import Workspace
from ctseg_core.volume import LabelMap


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_output_that_is_a_folder_is_refused_before_any_work(tmp_path, capsys, make_scan):
    _, scan = make_scan(tmp_path)
    for argv in (["convert", str(scan), str(tmp_path)], ["segment", str(scan), "-o", str(tmp_path)],
                 ["export", "x", "--format", "csv", "-o", str(tmp_path)]):
        assert "is a folder" in _usage_error(argv, capsys), argv


@pytest.mark.parametrize("option,value", [("--steps", "0"), ("--batch-size", "0"), ("--accumulate", "-1"),
                                          ("--epochs", "0"), ("--lr", "nan"), ("--checkpoint-every", "x")])
def test_train_refuses_numbers_that_cannot_work(tmp_path, capsys, option, value):
    Workspace(tmp_path / "ws")
    err = _usage_error(["train", "--workspace", str(tmp_path / "ws"), option, value], capsys)
    assert option in err and "Traceback" not in err


def test_device_that_does_not_exist_is_a_clear_error(tmp_path, capsys, make_scan, tiny_checkpoint):
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _, scan = make_scan(tmp_path)
    ckpt = tiny_checkpoint()
    assert main(["segment", str(scan), "-o", str(tmp_path / "l.nii.gz"), "--model", str(ckpt),
                 "--device", "cuda:7"]) == 2
    assert "cuda:7" in capsys.readouterr().err
    assert main(["segment", str(scan), "-o", str(tmp_path / "l.nii.gz"), "--model", str(ckpt),
                 "--device", "gpu-please"]) == 2
    assert "unknown device" in capsys.readouterr().err


def test_card_asking_for_an_enormous_network_is_refused_without_allocating(tiny_checkpoint):
    ckpt = tiny_checkpoint()
    card_path = ckpt.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["config"]["decoder_channels"] = [65536] * 6  # tens of GB if it were built
    card_path.write_text(json.dumps(card))
    from ctseg_core.checkpoint import load_checkpoint

    with pytest.raises(CheckpointError, match="describes another network") as err:
        load_checkpoint(ckpt)
    assert card_path.name in str(err.value)


def test_mistyped_workspace_is_an_error_and_creates_nothing(tmp_path, capsys):
    typo = tmp_path / "workspace_typo"
    for argv in (["export", "case-1", "--workspace", str(typo), "--format", "csv", "-o", str(tmp_path / "f.csv")],
                 ["train", "--workspace", str(typo), "--steps", "1"],
                 ["models", "versions", "--workspace", str(typo)]):
        assert main(argv) == 2, argv
        assert "workspace folder does not exist" in capsys.readouterr().err
    assert not typo.exists()


def test_case_id_outside_the_workspace_is_refused(tmp_path, capsys, make_scan):
    vol, scan = make_scan(tmp_path)
    other = Workspace(tmp_path / "other_ws")
    case = other.open_case(vol, scan)
    case.save_final(LabelMap(np.ones(vol.shape, np.uint8), vol.geometry))
    Workspace(tmp_path / "ws")
    sneaky = f"../../other_ws/cases/{case.id}"
    assert main(["export", sneaky, "--workspace", str(tmp_path / "ws"), "--format", "csv",
                 "-o", str(tmp_path / "f.csv")]) == 2
    assert "not a case id" in capsys.readouterr().err and not (tmp_path / "f.csv").exists()


def test_training_says_when_reviewed_cases_have_no_final_map(tmp_path, capsys, make_scan):
    ws = Workspace(tmp_path / "ws")
    for seed in range(3):
        vol, scan = make_scan(tmp_path, f"s{seed}.nii.gz", seed=seed)
        ws.open_case(vol, scan).set_status("corrected")
    assert main(["train", "--workspace", str(ws.root), "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "3 case(s) are marked corrected, adjudicated or approved but have no saved final label map" in err


def test_thousands_of_corrupt_files_give_one_warning(ge_tilt, tmp_path):
    import shutil

    folder = tmp_path / "series"
    shutil.copytree(ge_tilt, folder)
    head = (ge_tilt / "01.dcm").read_bytes()[:400]  # DICM marker, then cut off: corrupt
    for k in range(2000):
        (folder / f"junk{k:04d}.dcm").write_bytes(head)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = scan_folder(folder)
        volume = load_dicom_series(folder)
    assert len(scan.skipped) == 2000
    lines = [str(w.message) for w in caught]
    assert len(lines) == 2 and "skipped 2000 unreadable files" in lines[0], lines[:3]
    about_junk = [n for n in volume.meta.notes if "junk" in n]
    assert len(about_junk) == 1 and "2000" in about_junk[0], about_junk
