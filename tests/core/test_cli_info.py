"""``ctseg info`` and ``ctseg convert`` through the real command-line entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctseg_core.cli import main
from ctseg_core.io.images import read_volume


def test_info_json_is_one_object_in_the_documented_shape(philips_multi, capsys):
    assert main(["info", str(philips_multi), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # exactly one JSON document on stdout
    assert set(data) == {"series", "skipped"}
    keys = {"series_uid", "modality", "description", "n_slices", "rows", "cols", "pixel_spacing_mm",
            "slice_positions_spacing_mm", "gantry_tilt_deg", "selected", "notes"}
    assert all(set(s) == keys for s in data["series"])
    counts = sorted(s["n_slices"] for s in data["series"] if s["modality"] == "CT")
    assert 54 in counts and 58 in counts
    (chosen,) = [s for s in data["series"] if s["selected"]]
    assert chosen["n_slices"] == 58 and chosen["rows"] == 512 and chosen["pixel_spacing_mm"] == [0.40625, 0.40625]
    assert abs(chosen["gantry_tilt_deg"]) == pytest.approx(16.5, abs=0.05)
    assert len(data["skipped"]) == 5 and all(k["path"].endswith("DIRFILE") for k in data["skipped"])


def test_info_table_for_the_ge_series(ge_tilt, capsys):
    assert main(["info", str(ge_tilt)]) == 0
    out = capsys.readouterr().out
    assert "+18.50" in out and "1.08-7.00" in out and "28" in out and "512 x 512" in out and "rows x cols" in out
    assert "1.2.826.0.1.3680043.9.4245.3115138630835728997848661150714813892" in out
    # a file inside the series folder lists the same folder
    assert main(["info", str(ge_tilt / "05.dcm"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["series"][0]["n_slices"] == 28


def test_convert_writes_the_corrected_volume_and_prints_notes(ge_tilt, tmp_path, capsys):
    out = tmp_path / "ge.nii.gz"
    assert main(["convert", str(ge_tilt), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gantry tilt +18.50°" in printed and "uneven slice spacing" in printed
    v = read_volume(out)
    assert v.shape == (37, 611, 512)
    assert v.spacing == pytest.approx((4.0019, 0.4882812, 0.4882812), abs=1e-3)
    d = v.geometry.direction_matrix
    assert np.allclose(d @ d.T, np.eye(3), atol=1e-5) and d[2, 2] == pytest.approx(0.9483, abs=1e-3)
    assert v.array.min() == -1024 and v.array.max() > 1200
    # the written image describes itself as one pseudo-series
    assert main(["info", str(out), "--json"]) == 0
    (series,) = json.loads(capsys.readouterr().out)["series"]
    assert (series["n_slices"], series["rows"], series["cols"]) == (37, 611, 512) and series["selected"]


def test_convert_named_series_and_unknown_uid(philips_multi, tmp_path, capsys):
    assert main(["convert", str(philips_multi), str(tmp_path / "x.nii.gz"), "--series", "9.9.9"]) == 2
    err = capsys.readouterr().err
    assert "no series with UID 9.9.9" in err and "available" in err and "STEREOTAXIS" in err
    assert not (tmp_path / "x.nii.gz").exists()
