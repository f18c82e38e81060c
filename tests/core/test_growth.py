"""Growth between two scans: a generated case and the same patient with grown lesions and a moved head."""

import numpy as np
import pytest

from ctseg_core.measure.growth import compare_scans, expansion, register_rigid, resample_to
from ctseg_core.synth import generate_case
from ctseg_core.volume import LabelMap, Volume, to_sitk


def _moved(case, transform):
    """The case resampled through a known rigid transform (output point p shows the input at T(p))."""
    import SimpleITK as sitk

    g = case.volume.geometry
    img = to_sitk(case.volume.array, g)
    hu = sitk.Resample(img, img, transform, sitk.sitkLinear, -1024.0)
    lab = sitk.Resample(to_sitk(case.labels.array, g), img, transform, sitk.sitkNearestNeighbor, 0)
    return Volume(sitk.GetArrayFromImage(hu).astype(np.float32), g), LabelMap(sitk.GetArrayFromImage(lab), g)


@pytest.fixture(scope="module")
def scans():
    import SimpleITK as sitk

    prior = generate_case(4, shape_yx=(256, 256), lesion_classes=[1])
    grown = generate_case(4, shape_yx=(256, 256), lesion_classes=[1], lesion_scale=1.3)
    g = grown.volume.geometry
    centre = np.asarray(g.index_to_physical(*(np.array(g.shape) / 2)))
    move = sitk.Euler3DTransform()
    move.SetCenter(tuple(centre))
    move.SetRotation(np.deg2rad(3.0), np.deg2rad(-2.0), np.deg2rad(6.0))
    move.SetTranslation((5.0, -7.0, 3.0))
    follow_volume, follow_labels = _moved(grown, move)
    registration = register_rigid(follow_volume, prior.volume)
    return prior, follow_volume, follow_labels, move, centre, registration


def test_registration_recovers_the_head_movement(scans):
    prior, follow_volume, _, move, centre, reg = scans
    points = centre + np.array([(0, 0, 0), (60, 0, 0), (0, 70, 0), (0, 0, 40), (-50, -50, 20)], float)
    truth = np.array([move.TransformPoint(tuple(p)) for p in points])
    assert np.linalg.norm(reg.to_prior(points) - truth, axis=1).max() < 1.5
    assert reg.angle_deg == pytest.approx(np.rad2deg(np.arccos((np.trace(np.asarray(move.GetMatrix()).reshape(3, 3)) - 1) / 2)),
                                          abs=1.0)
    # the prior brought onto the follow-up grid lines up with it: bone on bone
    on_follow = resample_to(follow_volume.geometry, prior.volume, reg)
    bone = follow_volume.array > 700
    assert np.mean(on_follow[bone] > 300) > 0.85


def test_grown_hematoma_is_matched_and_flagged(scans):
    prior, follow_volume, follow_labels, _, _, reg = scans
    g = compare_scans(prior.volume, prior.labels, follow_volume, follow_labels, reg)
    ich = next(c for c in g.classes if c.key == "ich")
    vv = follow_volume.geometry.voxel_volume_ml
    assert ich.prior_ml == pytest.approx(np.count_nonzero(prior.labels.array == 1) * vv, abs=1e-3)
    assert ich.follow_up_ml == pytest.approx(np.count_nonzero(follow_labels.array == 1) * vv, abs=1e-3)
    assert ich.change_pct > 33 and ich.expansion and g.ich_expansion  # radius x1.3: the volume about doubles
    [lesion] = [c for c in g.lesions if c.key == "ich"]
    assert lesion.status == "grown" and lesion.prior == 1 and lesion.follow_up == 1 and lesion.expansion
    assert not g.new_lesions


def test_new_lesion_and_stable_scan(scans):
    import SimpleITK as sitk

    prior, follow_volume, _, move, _, reg = scans
    # the prior's own labels carried through the movement: nothing grew

    lab = sitk.Resample(to_sitk(prior.labels.array, prior.volume.geometry), to_sitk(follow_volume.array, follow_volume.geometry),
                        move, sitk.sitkNearestNeighbor, 0)
    follow_labels = LabelMap(sitk.GetArrayFromImage(lab), follow_volume.geometry)
    k = follow_volume.shape[0] // 2
    follow_labels.array[k - 1:k + 2, 40:60, 200:215] = 2  # a new subdural collection (a painted box)
    g = compare_scans(prior.volume, prior.labels, follow_volume, follow_labels, reg)
    ich = next(c for c in g.classes if c.key == "ich")
    assert not ich.expansion and abs(ich.change_pct) < 15
    assert [c.status for c in g.lesions if c.key == "ich"] == ["stable"]
    [new] = g.new_lesions
    assert new.key == "sdh" and new.prior is None and new.follow_up_ml == pytest.approx(
        3 * 20 * 15 * follow_volume.geometry.voxel_volume_ml, rel=0.01)
    assert g.to_dict()["lesions"][-1]["status"] == "new"


def test_expansion_criterion():
    assert expansion(5.0, 11.1)  # +6.1 mL
    assert not expansion(20.0, 26.0)  # +6 mL (not more) and +30 %
    assert expansion(3.0, 4.1)  # +37 %
    assert not expansion(0.0, 5.0)  # a new hematoma is "new", not expansion
    assert expansion(0.0, 6.5)
