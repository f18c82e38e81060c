"""Agreement statistics over a workspace, checked against numbers counted by hand (voxels of known
blocks), through ``ctseg agreement --json``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ctseg_core.cli import main
from ctseg_core.store.readers import save_adjudicated
from ctseg_core.volume import LabelMap

VOXEL_ML = 5.0 * 0.5 * 0.6 / 1000  # the test scans' spacing


def _block(shape, n_rows, value=1, z=0, x0=10):
    a = np.zeros(shape, np.uint8)
    a[z, 10:10 + n_rows, x0:x0 + 10] = value
    return a


def _reader_map(ws, case, reader, array):
    rc = ws.reader_case(case.id, reader)
    rc.lock_for_editing()
    rc.save_final(LabelMap(array, case.geometry))
    rc.set_status("done")
    rc.release_lock()


@pytest.fixture
def two_cases(ws, make_scan, tmp_path):
    (v1, p1), (v2, p2) = make_scan(tmp_path, "one.nii.gz", seed=1), make_scan(tmp_path, "two.nii.gz", seed=2)
    c1, c2 = ws.open_case(v1, p1), ws.open_case(v2, p2)
    shape = v1.shape
    # case 1: alice ICH 10 rows (100 voxels), bob 8 of them; the model 5 of them; alice's map adjudicated final
    c1.save_prediction(LabelMap(_block(shape, 5), v1.geometry), "v1")
    _reader_map(ws, c1, "alice", _block(shape, 10))
    _reader_map(ws, c1, "bob", _block(shape, 8))
    c1.lock_for_editing()
    save_adjudicated(c1, LabelMap(_block(shape, 10), v1.geometry), "alice", "bob")
    # case 2: alice ICH 4 rows (40 voxels), bob 6 rows (60) holding alice's 40; not adjudicated
    _reader_map(ws, c2, "alice", _block(shape, 4))
    _reader_map(ws, c2, "bob", _block(shape, 6))
    return ws


def test_agreement_numbers_match_a_hand_computation(two_cases, capsys):
    assert main(["agreement", "--workspace", str(two_cases.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 2 and report["problems"] == []
    ich = {kind: rows["ich"] for kind, rows in report["summary"].items()}

    # reader vs reader: Dice 2*80/(100+80) and 2*40/(40+60); volume differences alice - bob = +20 and -20 voxels
    d = [20 * VOXEL_ML, -20 * VOXEL_ML]
    sd = math.sqrt(sum(x * x for x in d) / 1)  # mean 0, n - 1 = 1
    assert ich["inter_reader"]["n"] == 2
    assert ich["inter_reader"]["dice_mean"] == pytest.approx((160 / 180 + 80 / 100) / 2)
    assert ich["inter_reader"]["volume_bias_ml"] == pytest.approx(0.0, abs=1e-12)
    assert ich["inter_reader"]["volume_sd_ml"] == pytest.approx(sd)
    assert ich["inter_reader"]["limits_of_agreement_ml"] == pytest.approx([-1.96 * sd, 1.96 * sd])

    # reader vs final (case 1 only): alice = final (Dice 1, 0 mL), bob 80 of 100 (Dice 160/180, -20 voxels)
    bias = (0 - 20 * VOXEL_ML) / 2
    sd = math.sqrt(((0 - bias) ** 2 + (-20 * VOXEL_ML - bias) ** 2) / 1)
    assert ich["reader_vs_final"]["n"] == 2
    assert ich["reader_vs_final"]["dice_mean"] == pytest.approx((1 + 160 / 180) / 2)
    assert ich["reader_vs_final"]["volume_bias_ml"] == pytest.approx(bias)
    assert ich["reader_vs_final"]["limits_of_agreement_ml"] == pytest.approx([bias - 1.96 * sd, bias + 1.96 * sd])

    # model vs final: 50 of 100 voxels, one pair: no SD, no limits
    assert ich["model_vs_final"] == {"class": "ich", "n": 1, "dice_mean": pytest.approx(100 / 150),
                                     "volume_bias_ml": pytest.approx(-50 * VOXEL_ML), "volume_sd_ml": None,
                                     "limits_of_agreement_ml": None}
    assert all(row["n"] == 0 for kind in report["summary"].values() for key, row in kind.items() if key != "ich")
    assert len(report["pairs"]) == 2 + 2 + 1


def test_agreement_table_on_the_terminal(two_cases, capsys):
    assert main(["agreement", "--workspace", str(two_cases.root)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("reader vs reader") and " ich " in ln)
    assert f"{(160 / 180 + 0.8) / 2:.3f}" in line and "+0.00" in line


def test_audit_command_lists_exports_and_replays(two_cases, capsys, tmp_path):
    ws = two_cases
    adjudicated = next(r.id for r in ws.cases() if r.status == "adjudicated")
    assert main(["audit", "--workspace", str(ws.root), "--replay", adjudicated]) == 0
    assert "the last one matches final.nii.gz" in capsys.readouterr().out
    assert main(["audit", "--workspace", str(ws.root), "--replay", adjudicated, "--map", "reader/bob", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matches_file"] is True
    assert main(["audit", "--workspace", str(ws.root), "--case", adjudicated, "--json"]) == 0
    ops = [json.loads(line)["op"] for line in capsys.readouterr().out.splitlines()]
    assert ops.count("save") == 3 and "adjudicate" in ops and ops[0] == "prediction"
    assert main(["audit", "--workspace", str(ws.root), "-o", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_text().count("\n") == len(list(ws.audit.entries())) + 1
