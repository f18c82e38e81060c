"""The anatomical guard: it never removes a voxel inside the intracranial cavity (generated heads with
exact tissue maps), keeps every true lesion voxel, and removes what cannot be hemorrhage."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_core.guard import Guard
from ctseg_core.labels import CLASS_BY_KEY
from ctseg_core.synth import generate_case
from ctseg_core.synth import tissues as T

GUARD = Guard()


@pytest.fixture(scope="module", params=[950003, 951001, 952002])
def case(request):
    seed = request.param
    classes = {951001: [4, 6], 952002: [3, 7]}.get(seed)
    return generate_case(seed, shape_yx=(320, 320), lesion_classes=classes, normal=False)


def test_the_cavity_holds_every_intracranial_voxel_with_soft_tissue_numbers(case):
    from scipy import ndimage as ndi

    hu, spacing = case.volume.array, case.volume.spacing
    for z in range(hu.shape[0]):
        cavity = GUARD.cavity(hu[z], spacing[1:])
        inside = (np.isin(case.tissue[z], T.INTRACRANIAL) | (case.labels.array[z] > 0)) & (hu[z] > -50) & (hu[z] < 150)
        # where a thick slice mixes the sella or the cribriform plate with sinus air the generator's tissue
        # says "intracranial" inside the sinus: voxels within 3 mm of such air are left out of the check
        near_air = ndi.distance_transform_edt(hu[z] > -200, sampling=spacing[1:]) <= 3.0
        assert not (inside & ~cavity & ~near_air).any(), f"slice {z + 1}"


def test_the_guard_keeps_every_true_lesion_voxel_but_specks(case):
    from scipy import ndimage as ndi

    truth = case.labels.array
    hu, spacing = case.volume.array, case.volume.spacing
    assert truth.any() and np.array_equal(Guard(min_piece_ml=0).apply(hu, truth, spacing), truth)  # rules 1, 2
    kept = GUARD.apply(hu, truth, spacing)
    voxel_ml = float(np.prod(spacing)) / 1000
    for cls in np.unique(truth[truth > 0]):  # rule 3 takes exactly the 26-connected pieces under 0.01 mL
        pieces, _ = ndi.label(truth == cls, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(pieces.ravel()) * voxel_ml
        gone = (truth == cls) & (kept != cls)
        assert np.array_equal(gone, (pieces > 0) & (sizes[pieces] < 0.01)), cls
        assert (kept == cls).sum() >= 0.9 * (truth == cls).sum()


def test_the_speck_rule_removes_small_pieces_per_class_in_3d():
    labels = np.zeros((4, 30, 30), np.uint8)
    labels[1, 5, 5] = 2  # one voxel of 5 mm^3: a speck
    labels[1:3, 10:12, 10:12] = 2  # 8 voxels of 40 mm^3 across two slices: kept
    labels[0, 20, 20], labels[1, 21, 21] = 3, 3  # two voxels touching at a corner in 3-D: one piece, 10 mm^3
    labels[3, 25:27, 25] = 1  # 2 voxels of 10 mm^3 beside ...
    labels[3, 25:27, 26] = 2  # ... 2 of another class: each class's piece is 10 mm^3 on its own
    out = Guard(min_piece_ml=0.011).remove_specks(labels, (5.0, 1.0, 1.0))
    assert out[1, 5, 5] == 0 and (out[1:3, 10:12, 10:12] == 2).all()
    assert (out[3] == 0).all() and out[0, 20, 20] == 0  # 10 mm^3 < 11 mm^3
    assert Guard(min_piece_ml=0.009).remove_specks(labels, (5.0, 1.0, 1.0))[0, 20, 20] == 3
    assert np.array_equal(Guard(min_piece_ml=0).remove_specks(labels, (5.0, 1.0, 1.0)), labels)


def test_the_unsure_piece_rule_removes_pieces_whose_mean_probability_is_under_the_threshold():
    labels = np.zeros((3, 20, 20), np.uint8)
    probs = np.zeros((3, 8, 20, 20), np.float16)
    labels[0:2, 2:6, 2:6], probs[0:2, 2, 2:6, 2:6] = 2, 0.95  # a sure SDH piece
    labels[1, 10:13, 2:6], probs[1, 2, 10:13, 2:6] = 2, 0.85  # a doubtful one
    labels[2, 10:14, 10:14] = 5  # CSDH: half at 0.99, half at 0.80 -> mean 0.895
    probs[2, 5, 10:12, 10:14], probs[2, 5, 12:14, 10:14] = 0.99, 0.80
    out = Guard(min_piece_confidence=0.9).remove_unsure(labels, probs)
    assert (out[0:2, 2:6, 2:6] == 2).all() and not out[1, 10:13].any() and not out[2].any()
    out = Guard(min_piece_confidence=0.89).remove_unsure(labels, probs)
    assert (out[2, 10:14, 10:14] == 5).all() and not out[1, 10:13].any()
    assert np.array_equal(Guard(min_piece_confidence=0).remove_unsure(labels, probs), labels)
    # channels named by label value: here SDH (2) is the last of three channels
    three = np.zeros((3, 3, 20, 20), np.float16)
    three[:, 2], three[:, 1] = probs[:, 2], probs[:, 5]
    out = Guard(min_piece_confidence=0.9).remove_unsure(labels, three, channel_labels=(0, 5, 2))
    assert (out[0:2, 2:6, 2:6] == 2).all() and not out[1, 10:13].any() and not out[2].any()


def collections():
    """A chronic subdural collection whose dense part the model called acute (SDH), an epidural piece apart from it,
    and an ICH touching the collection; probabilities (z, 8, y, x) as a model would give them."""
    labels = np.zeros((3, 30, 30), np.uint8)
    probs = np.zeros((3, 8, 30, 30), np.float32)
    labels[:, 2:12, 2:6], probs[:, 5, 2:12, 2:6], probs[:, 2, 2:12, 2:6] = 5, 0.9, 0.1  # CSDH, 120 voxels
    labels[:, 12:15, 2:6], probs[:, 2, 12:15, 2:6], probs[:, 5, 12:15, 2:6] = 2, 0.6, 0.4  # its dense part as SDH
    labels[:, 20:25, 20:25], probs[:, 4, 20:25, 20:25] = 4, 0.95  # an EDH apart: a collection of its own
    labels[:, 2:12, 6:9], probs[:, 1, 2:12, 6:9] = 1, 0.9  # ICH touching the CSDH: not extra-axial, kept
    return labels, probs


def test_touching_extra_axial_blood_takes_the_type_the_model_is_sure_of():
    labels, probs = collections()
    share = (120 * 0.9 + 36 * 0.4) / (120 * 1.0 + 36 * 1.0)  # CSDH's share of the collection's probability
    out = Guard(min_type_share=0.75).one_type(labels, probs)
    assert share > 0.75 and (out[:, 2:15, 2:6] == 5).all()  # the dense part joins its collection
    assert (out[:, 20:25, 20:25] == 4).all() and (out[:, 2:12, 6:9] == 1).all()  # the others as they were
    assert np.array_equal(np.isin(out, (0,)), np.isin(labels, (0,)))  # nothing removed, nothing added
    assert np.array_equal(Guard(min_type_share=0.8).one_type(labels, probs), labels)  # not sure enough: kept
    assert np.array_equal(Guard(min_type_share=0).one_type(labels, probs), labels)  # off
    # channels named by label value: CSDH (5) and SDH (2) as the last two of three channels
    three = np.zeros((3, 3, 30, 30), np.float32)
    three[:, 1], three[:, 2] = probs[:, 5], probs[:, 2]
    out = Guard(min_type_share=0.75).one_type(labels, three, channel_labels=(0, 5, 2))
    assert (out[:, 2:15, 2:6] == 5).all()


def test_the_guard_reports_what_it_retyped():
    labels, probs = collections()
    out, report = Guard(min_type_share=0.75).finish(labels, labels, probs, None, (1.0, 1.0, 1.0))
    assert report.retyped_ml == pytest.approx(36 / 1000) and report.retyped_collections == 1
    assert report.total_ml == 0  # retyping removes nothing
    assert "gave 0.04 mL in 1 extra-axial collection(s) the type of the rest" in report.describe()
    assert (out[:, 12:15, 2:6] == 5).all()


def test_a_guard_takes_its_unsure_piece_threshold_from_the_model_card_unless_it_sets_one():
    from ctseg_core.checkpoint import ModelCard

    card = ModelCard(architecture="x", config={}, guard={"min_piece_confidence": 0.92, "chosen": "a test"})
    assert Guard().for_card(card).min_piece_confidence == 0.92
    assert Guard(min_piece_confidence=0).for_card(card).min_piece_confidence == 0
    assert Guard(min_piece_confidence=0.5).for_card(card).min_piece_confidence == 0.5
    assert Guard().for_card(ModelCard(architecture="x", config={})).min_piece_confidence == 0
    card.guard["min_type_share"] = 0.8
    assert Guard().for_card(card).min_type_share == 0.8 and Guard().for_card(card).min_piece_confidence == 0.92
    assert Guard(min_type_share=0).for_card(card).min_type_share == 0
    assert Guard(min_piece_confidence=0).for_card(card).min_type_share == 0.8  # each setting on its own
    assert Guard().for_card(ModelCard(architecture="x", config={})).min_type_share == 0


def test_the_guard_removes_blood_outside_the_skull_and_at_bone_numbers(case):
    hu, spacing = case.volume.array, case.volume.spacing
    z = hu.shape[0] // 2
    painted = np.full(hu[z].shape, CLASS_BY_KEY["sdh"].id, np.uint8)
    kept = GUARD.apply_slice(hu[z], painted, spacing[1:])
    outside = ~np.isin(case.tissue[z], T.INTRACRANIAL) & (case.tissue[z] != T.MIXED)
    scalp_and_air = outside & ~np.isin(case.tissue[z], T.BONE)
    far = scalp_and_air & ~GUARD.cavity(hu[z], spacing[1:])
    assert far.sum() > 1000 and not kept[far].any()  # nothing left in the scalp or the air around the head
    assert not kept[hu[z] > 400].any()  # nor on bone
    brain = np.isin(case.tissue[z], (T.GREY, T.WHITE)) & (hu[z] > 10) & (hu[z] < 60)
    assert kept[brain].all()  # brain-like numbers inside the skull stay whatever the class


def test_the_guard_takes_air_out_of_every_blood_class_and_brain_out_of_pneumocephalus():
    hu = np.full((40, 40), 30.0, np.float32)
    hu[:3], hu[-3:], hu[:, :3], hu[:, -3:] = 1500, 1500, 1500, 1500  # a square skull
    hu[10:20, 10:20] = -800  # an air pocket inside
    labels = np.full(hu.shape, CLASS_BY_KEY["sdh"].id, np.uint8)
    labels[12:18, 12:18] = CLASS_BY_KEY["pneumocephalus"].id
    labels[25:30, 25:30] = CLASS_BY_KEY["pneumocephalus"].id  # "air" on brain numbers
    out = Guard(coarse_mm=0.5).apply_slice(hu, labels, (0.5, 0.5))
    assert (out[12:18, 12:18] == CLASS_BY_KEY["pneumocephalus"].id).all()
    assert not out[25:30, 25:30].any() and not out[11, 11:19].any()  # (a median keeps corners of an edge)
    assert (out[22:24, 5:35] == CLASS_BY_KEY["sdh"].id).all()


def test_the_guard_on_the_real_ge_series_keeps_the_brain_and_drops_the_scalp(ge_tilt):
    from ctseg_core.io import load_volume

    volume = load_volume(ge_tilt)
    z = 20  # a mid-brain slice
    hu = volume.array[z]
    cavity = GUARD.cavity(hu, volume.spacing[1:])
    soft = (hu > -5) & (hu < 60)  # brain and CSF
    rows, cols = np.nonzero(cavity)
    assert 0.6 < cavity.sum() / (hu > -200).sum() < 0.9  # the cavity is most of the head, not all of it
    centre = (int(rows.mean()), int(cols.mean()))
    assert cavity[centre] and soft[centre[0] - 5:centre[0] + 5, centre[1] - 5:centre[1] + 5].mean() > 0.9
    from scipy import ndimage as ndi

    body = hu > -200
    skin = body & ~ndi.binary_erosion(body, iterations=3)
    assert not cavity[skin].any() and cavity[hu > 1000].mean() < 0.5  # the margin reaches into the inner table only
