"""Review labels (a model's unassigned extra-axial blood, oedema) through findings, editing, files, training
targets, metrics, and the shared-class comparison of model families."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from ctseg_core.comparison import BLOOD, GROUP_KEYS, group_counts, group_volumes_ml
from ctseg_core.edit.ops import relabel_component
from ctseg_core.errors import StoreError
from ctseg_core.findings import compute_findings
from ctseg_core.io.images import read_labels, write_labels
from ctseg_core.labels import CLASS_BY_KEY, EXTRA_AXIAL, OEDEMA, output_label_values
from ctseg_core.metrics import overlap_counts
from ctseg_core.training.dataset import LoadedCase
from ctseg_core.volume import LabelMap

SDH = CLASS_BY_KEY["sdh"].id


def blast_like_labels() -> LabelMap:
    arr = np.zeros((6, 20, 20), np.uint8)
    arr[1:5, 2:6, 2:12] = EXTRA_AXIAL.id  # 160 voxels of unassigned extra-axial blood
    arr[2:5, 10:14, 10:14] = OEDEMA.id  # 48 voxels of oedema
    arr[2:4, 15:18, 15:18] = CLASS_BY_KEY["ich"].id
    return LabelMap(arr, _geometry())


def _geometry():
    from ctseg_core.volume import Geometry

    return Geometry((6, 20, 20), (5.0, 1.0, 1.0))


def test_findings_list_review_labels_when_present_and_name_the_model():
    f = compute_findings(blast_like_labels(), source="prediction", model="blast_ct v1 (4 of 12 members)")
    eah, oedema = f.by_key("extra_axial"), f.by_key("oedema")
    assert eah.voxels == 160 and eah.volume_ml == pytest.approx(0.8) and eah.hemorrhage and eah.positive
    assert oedema.voxels == 48 and not oedema.hemorrhage and "never counted as blood" in oedema.note
    rows = list(csv.DictReader(io.StringIO(f.to_csv())))
    assert [r["key"] for r in rows][-2:] == ["extra_axial", "oedema"]
    assert {r["key"]: r["hemorrhage"] for r in rows}["oedema"] == "0"
    assert all(r["model"] == "blast_ct v1 (4 of 12 members)" for r in rows)
    assert [c.key for c in compute_findings(LabelMap(np.zeros((2, 3, 3), np.uint8), _geom2())).classes] == \
        ["ich", "sdh", "sah", "edh", "csdh", "pneumocephalus", "ivh"]  # no review rows when absent


def _geom2():
    from ctseg_core.volume import Geometry

    return Geometry((2, 3, 3), (1.0, 1.0, 1.0))


def test_reviewer_assigns_the_extra_axial_component_to_sdh():
    labels = blast_like_labels()
    delta = relabel_component(labels.array, (2, 3, 5), SDH)
    delta.apply(labels.array)
    f = compute_findings(labels)
    assert f.by_key("sdh").voxels == 160 and "extra_axial" not in [c.key for c in f.classes]


def test_review_labels_survive_a_file_round_trip(tmp_path):
    labels = blast_like_labels()
    write_labels(labels, tmp_path / "l.nii.gz")
    assert np.array_equal(read_labels(tmp_path / "l.nii.gz").array, labels.array)


def test_training_targets_refuse_unassigned_blood_and_drop_oedema():
    labels = blast_like_labels()
    volume = np.zeros(labels.array.shape, np.float32)
    with pytest.raises(StoreError, match="assign it to SDH, EDH, SAH"):
        LoadedCase("c1", volume, labels.array)
    labels.array[labels.array == EXTRA_AXIAL.id] = SDH
    case = LoadedCase("c1", volume, labels.array)
    assert case.labels.max() < 8 and not np.any(case.labels[2:5, 10:14, 10:14])


def test_scoring_ctseg_classes_refuses_review_labels():
    with pytest.raises(ValueError, match="outside the 8 classes"):
        overlap_counts(blast_like_labels(), np.zeros((6, 20, 20), np.uint8))


def test_shared_groups_compare_blast_ct_eah_with_sdh_edh_sah():
    pred = blast_like_labels()
    truth = pred.array.copy()
    truth[truth == EXTRA_AXIAL.id] = SDH
    truth[truth == OEDEMA.id] = 0
    counts = group_counts(pred, truth)
    dice = counts.dice()
    assert list(GROUP_KEYS) == ["ich", "eah", "ivh"]
    assert dice[1] == 1.0 and dice[2] == 1.0 and np.isnan(dice[3]) and dice[4] == 1.0  # ICH, EAH, IVH, blood
    volumes = group_volumes_ml(pred)
    assert volumes["eah"] == pytest.approx(0.8) and volumes[BLOOD] == pytest.approx(0.8 + 18 * 0.005)


def test_a_model_card_maps_its_own_classes_or_is_refused():
    from ctseg_core.models.deepmedic import BLAST_CT_CLASS_TABLE

    assert output_label_values([dict(c) for c in BLAST_CT_CLASS_TABLE]) == [0, 1, 8, 9, 7]
    bad = [dict(c) for c in BLAST_CT_CLASS_TABLE]
    bad[2]["maps_to"] = "subdural-ish"
    with pytest.raises(ValueError, match="not a ctseg label"):
        output_label_values(bad)
    swapped = [dict(c) for c in BLAST_CT_CLASS_TABLE][::-1]
    with pytest.raises(ValueError, match="channel order"):
        output_label_values(swapped)
