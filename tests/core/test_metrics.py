"""Metrics against hand-computed values, including the 3-consecutive-slice rule's edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctseg_core.metrics import (ANY, class_volumes_ml, detection_scores, overlap_counts, overlap_scores,
                                scan_detection)
from ctseg_core.volume import Geometry, LabelMap


def test_overlap_counts_and_scores_by_hand():
    truth = np.zeros((1, 4, 4), np.uint8)
    pred = np.zeros((1, 4, 4), np.uint8)
    truth[0, 0, :4] = 1  # 4 voxels of class 1
    pred[0, 0, :3] = 1  # 3 of them found
    pred[0, 3, 3] = 1  # 1 false positive
    truth[0, 2, 2] = 2  # class 2 missed entirely
    c = overlap_counts(pred, truth)
    assert (c.tp[1], c.fp[1], c.fn[1]) == (3, 1, 1)
    assert (c.tp[2], c.fp[2], c.fn[2]) == (0, 0, 1)
    assert c.dice()[1] == pytest.approx(6 / 8) and c.iou()[1] == pytest.approx(3 / 5)
    assert c.dice()[2] == 0.0 and math.isnan(c.dice()[3])


def test_sample_average_differs_from_voxel_average():
    # scan A: big lesion, Dice 0.9 (tp 90, fp 10, fn 10); scan B: small lesion, Dice 0 (fn 10)
    a_t = np.zeros((1, 20, 20), np.uint8)
    a_p = a_t.copy()
    a_t.reshape(-1)[:100] = 1
    a_p.reshape(-1)[10:110] = 1
    b_t = np.zeros((1, 20, 20), np.uint8)
    b_t.reshape(-1)[:10] = 1
    b_p = np.zeros_like(b_t)
    scores = overlap_scores([overlap_counts(a_p, a_t), overlap_counts(b_p, b_t)])
    assert scores.dice_sample[1] == pytest.approx((0.9 + 0.0) / 2)
    assert scores.dice_voxel[1] == pytest.approx(2 * 90 / (2 * 90 + 10 + 20))
    assert scores.iou_sample[1] == pytest.approx((90 / 110 + 0) / 2)
    assert scores.iou_voxel[1] == pytest.approx(90 / 120)
    d = scores.as_dict()
    assert d["dice_sample"][2] is None and d["n_scans"] == 2 and 0 not in d["dice_sample"]


def test_class_absent_in_one_scan_is_left_out_of_the_sample_mean():
    t = np.zeros((1, 4, 4), np.uint8)
    t[0, 0, 0] = 1
    empty = np.zeros_like(t)
    scores = overlap_scores([overlap_counts(t, t), overlap_counts(empty, empty)])
    assert scores.dice_sample[1] == 1.0


def test_present_average_leaves_out_scans_without_the_class_and_counts_their_false_alarms():
    # scan A holds class 1 (Dice 0.5); scan B has no class 1 but the model paints it (Dice 0);
    # scan C has neither; class 2 is painted on A without being there
    t_a = np.zeros((1, 4, 4), np.uint8)
    t_a[0, 0, :2] = 1
    p_a = np.zeros_like(t_a)
    p_a[0, 0, 0] = 1
    p_a[0, 3, 3] = 2
    t_b = np.zeros_like(t_a)
    p_b = t_b.copy()
    p_b[0, 2, 2] = 1
    empty = np.zeros_like(t_a)
    scores = overlap_scores([overlap_counts(p_a, t_a), overlap_counts(p_b, t_b), overlap_counts(empty, empty)])
    assert scores.dice_sample[1] == pytest.approx((2 / 3 + 0) / 2)
    assert scores.dice_present[1] == pytest.approx(2 / 3)
    assert (scores.painted_free[1], scores.free[1]) == (1, 2)
    assert (scores.painted_free[2], scores.free[2]) == (1, 3) and math.isnan(scores.dice_present[2])
    d = scores.as_dict()
    assert d["dice_present"][2] is None and d["painted_free"][1] == 1 and d["free"][2] == 3


def _labels(depth: int, slices_by_class: dict[int, list[int]]) -> np.ndarray:
    arr = np.zeros((depth, 6, 6), np.uint8)
    for cid, zs in slices_by_class.items():
        for z in zs:
            arr[z, cid % 6, :2] = cid
    return arr


@pytest.mark.parametrize("slices, present", [
    ([], False), ([4], False), ([0, 1], False), ([0, 1, 2], True), ([7, 8, 9], True),  # at both ends
    ([0, 1, 3, 4], False), ([0, 2, 4, 6], False), ([1, 3, 4, 5], True), ([2, 3, 4, 5, 6, 7, 8, 9], True),
])
def test_scan_detection_three_consecutive_slices(slices, present):
    det = scan_detection(_labels(10, {1: slices, 5: [0, 1, 2]}))
    assert det[1] is present
    assert det[5] is True and det[2] is False and set(det) == set(range(1, 8))


def test_scan_detection_counts_each_class_separately():
    arr = _labels(6, {1: [0, 1], 2: [2]})  # a run of three slices with lesions, but never one class
    assert scan_detection(arr) == {c: False for c in range(1, 8)}
    assert scan_detection(LabelMap(arr, Geometry(arr.shape, (1, 1, 1))))[1] is False


def test_detection_scores_by_hand():
    truth = [{1: True}, {1: True}, {1: False}, {1: False, 3: True}]
    pred = [{1: True}, {1: False}, {1: True}, {1: False, 3: True}]
    s = detection_scores(pred, truth)
    one = s[1]
    assert (one.tp, one.fn, one.fp, one.tn) == (1, 1, 1, 1)
    assert one.accuracy == 0.5 and one.recall == 0.5 and one.precision == 0.5 and one.f1 == 0.5
    anyh = s[ANY]  # any hemorrhage: truth T, T, F, T; pred T, F, T, T
    assert (anyh.tp, anyh.fn, anyh.fp, anyh.tn) == (2, 1, 1, 0)
    assert anyh.recall == pytest.approx(2 / 3) and anyh.f1 == pytest.approx(2 / 3)
    assert s[4].precision is None and s[4].recall is None and s[4].accuracy == 1.0
    with pytest.raises(ValueError):
        detection_scores(pred, truth[:2])


def test_class_volumes_ml_uses_voxel_size():
    arr = np.zeros((4, 10, 10), np.uint8)
    arr[:2, :5, :5] = 1  # 50 voxels
    arr[3, 0, :4] = 6  # 4 voxels
    vols = class_volumes_ml(LabelMap(arr, Geometry(arr.shape, (5.0, 0.5, 0.4))))
    assert vols[1] == pytest.approx(50 * 5 * 0.5 * 0.4 / 1000)
    assert vols[6] == pytest.approx(4 * 0.001)
    assert vols[2] == 0.0 and set(vols) == set(range(1, 8))
