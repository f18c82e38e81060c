"""Findings: volumes, slice lists, the 3-consecutive-slice rule, ABC/2 on shapes of known size, exports."""

import csv
import io
import json

import numpy as np
import pytest

from ctseg_core.findings import (abc2_estimate, compute_findings, format_slice_ranges, longest_run,
                                 write_findings_csv, write_findings_json)
from ctseg_core.volume import Geometry, LabelMap


def _ellipsoid(shape, spacing, centre_mm, semi_mm):
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij")
    return (((z - centre_mm[0]) / semi_mm[0]) ** 2 + ((y - centre_mm[1]) / semi_mm[1]) ** 2
            + ((x - centre_mm[2]) / semi_mm[2]) ** 2) <= 1.0


def test_abc2_of_an_ellipsoid_matches_the_kothari_formula():
    spacing = (1.0, 0.5, 0.5)
    a, b, c = 20.0, 12.0, 15.0  # semi-axes (mm): x, y, z
    mask = _ellipsoid((40, 120, 120), spacing, (20.0, 30.0, 30.0), (c, b, a))
    est = abc2_estimate(mask, spacing)
    assert est.a_mm == pytest.approx(2 * a, abs=1.0)
    assert est.b_mm == pytest.approx(2 * b, abs=1.0)
    # Kothari weighting on an ellipsoid: |z| <= c/2 counts 1, c/2..0.866c counts 0.5 -> C = 1.366 c
    assert est.c_mm == pytest.approx(1.366 * c, abs=2.0)
    assert est.volume_ml == pytest.approx(est.a_mm * est.b_mm * est.c_mm / 2000.0)
    assert 19 <= est.slice_index <= 20


def test_abc2_uses_the_largest_component_only():
    spacing = (2.0, 1.0, 1.0)
    mask = _ellipsoid((20, 100, 100), spacing, (20.0, 50.0, 30.0), (10.0, 10.0, 10.0))
    single = abc2_estimate(mask, spacing)
    mask[2:4, 80:83, 80:83] = True  # a small separate speck
    assert abc2_estimate(mask, spacing).volume_ml == pytest.approx(single.volume_ml)
    assert abc2_estimate(np.zeros((3, 4, 4), bool), spacing) is None


def test_findings_volumes_slices_and_detection_rule():
    geom = Geometry((10, 32, 32), (5.0, 0.5, 0.5))
    arr = np.zeros(geom.shape, np.uint8)
    arr[2:6, 10:20, 10:20] = 1  # ICH on 4 consecutive slices: positive
    arr[7, 0:4, 0:4] = 2  # SDH on slices 7 and 9 only: not 3 consecutive
    arr[9, 0:4, 0:4] = 2
    f = compute_findings(LabelMap(arr, geom), source="final", scan="test")
    ich, sdh, sah = f.by_key("ich"), f.by_key("sdh"), f.by_key("sah")
    voxel_ml = 5.0 * 0.5 * 0.5 / 1000
    assert ich.voxels == 400 and ich.volume_ml == pytest.approx(400 * voxel_ml)
    assert ich.slices == [2, 3, 4, 5] and ich.positive and ich.slices_text == "3-6"  # shown 1-based
    assert ich.abc2 is not None and ich.abc2.c_mm == pytest.approx(20.0)
    assert sdh.slices == [7, 9] and not sdh.positive and sdh.abc2 is None
    assert sah.voxels == 0 and not sah.positive and sah.slices == []
    assert len(f.classes) == 7


def test_slice_helpers():
    assert format_slice_ranges([2, 3, 4, 7, 9, 10]) == "2-4, 7, 9-10"
    assert format_slice_ranges([]) == ""
    assert longest_run([1, 2, 4, 5, 6]) == 3 and longest_run([]) == 0


def test_exports_read_back(tmp_path):
    geom = Geometry((6, 16, 16), (3.0, 1.0, 1.0))
    arr = np.zeros(geom.shape, np.uint8)
    arr[1:5, 4:8, 4:8] = 1
    f = compute_findings(LabelMap(arr, geom), source="prediction", scan="case 1")
    write_findings_json(f, tmp_path / "f.json")
    write_findings_csv(f, tmp_path / "f.csv")
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["source"] == "prediction" and data["classes"][0]["key"] == "ich"
    assert data["classes"][0]["voxels"] == 64 and data["classes"][0]["positive"] is True
    rows = list(csv.DictReader(io.StringIO((tmp_path / "f.csv").read_text())))
    assert rows[0]["key"] == "ich" and float(rows[0]["volume_ml"]) == pytest.approx(64 * 3 / 1000, abs=1e-3)
    assert rows[0]["slices"] == "2-5" and rows[0]["abc2_ml"] != "" and rows[1]["abc2_ml"] == ""  # z 1..4, 1-based
    assert data["classes"][0]["slices"] == [2, 3, 4, 5] and data["classes"][0]["abc2"]["slice"] in (2, 3, 4, 5)


def test_slice_counts_follow_edits_slice_by_slice():
    from ctseg_core.findings import SliceCounts, findings_from_counts

    geom = Geometry((8, 20, 20), (4.0, 0.5, 0.5))
    arr = np.zeros(geom.shape, np.uint8)
    arr[1:4, 2:6, 2:6] = 1
    counts = SliceCounts(arr)
    arr[5, 0:3, 0:3] = 2  # an edit on slice 5 only
    arr[2, 2:4, 2:6] = 0
    stale = findings_from_counts(counts, geom)
    assert stale.by_key("sdh").voxels == 0  # not recounted yet
    counts.update(arr, 2, 3)
    counts.update(arr, 5, 6)
    f = findings_from_counts(counts, geom)
    full = compute_findings(LabelMap(arr, geom))
    for mine, ref in zip(f.classes, full.classes):
        assert (mine.voxels, mine.slices, mine.positive) == (ref.voxels, ref.slices, ref.positive)
        assert mine.volume_ml == pytest.approx(ref.volume_ml)
    assert f.by_key("ich").voxels == 40 and f.by_key("sdh").slices_text == "6"


def test_model_confidence_and_origin():
    from ctseg_core.findings import class_origin, model_confidence

    pred = np.zeros((2, 4, 4), np.uint8)
    pred[0, :2, :2] = 1  # 4 ICH voxels: probabilities 0.9, 0.9, 0.4, 0.4
    pred[1, :, :] = 2  # 16 SDH voxels, probability unknown on half of them
    unc = np.zeros(pred.shape, np.float32)
    unc[0, :2, :2] = [[0.1, 0.1], [0.6, 0.6]]
    unc[1, :2] = np.nan
    unc[1, 2:] = 0.2
    conf = model_confidence(pred, unc)
    assert conf[1].mean_probability == pytest.approx(0.65) and conf[1].uncertain_fraction == pytest.approx(0.5)
    assert conf[1].voxels == 4 and conf[2].voxels == 8 and conf[2].uncertain_fraction == 0
    assert conf[2].mean_probability == pytest.approx(0.8) and set(conf) == {1, 2}

    final = pred.copy()
    assert class_origin(final, pred) == {1: "model", 2: "model"}
    final[1, 0, 0] = 0  # SDH edited
    final[0, 3, 3] = 4  # EDH painted where the model drew none
    assert class_origin(final, pred) == {1: "model", 2: "edited", 4: "person"}
    assert class_origin(final, None) == {1: "person", 2: "person", 4: "person"}


def test_slice_counts_of_an_empty_map_need_no_counting():
    from ctseg_core.findings import SliceCounts

    arr = np.zeros((4, 6, 5), np.uint8)
    assert np.array_equal(SliceCounts(None, arr.shape).counts, SliceCounts(arr).counts)
