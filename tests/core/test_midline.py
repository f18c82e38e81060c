"""Midline shift against the generator's known displacement (0-15 mm, rotated heads, open skulls, a gantry-tilted
DICOM series), on the real GE series (a normal head), and the generator options it relies on."""

import numpy as np
import pytest

from ctseg_core.measure.head_frame import head_frame
from ctseg_core.measure.midline import SEPTUM, THIRD_VENTRICLE, measure_midline_shift
from ctseg_core.synth import generate_case
from ctseg_core.synth import tissues as T
from ctseg_core.volume import Volume


@pytest.mark.parametrize("seed, classes, requested", [  # heads rotated 3-10 degrees, young and old (seeds 25, 35, 41
    # and 49: large ventricles, periventricular hypodensity)
    (41, [5], 0.0), (25, [4], 3.0), (49, [2], 6.0), (32, [4], 9.0), (44, [1], 12.0), (59, [2], 15.0), (35, [4], 15.0)])
def test_midline_shift_within_1mm_of_the_generated_displacement(seed, classes, requested):
    case = generate_case(seed, shape_yx=(256, 256), lesion_classes=classes, midline_shift_mm=requested)
    assert abs(case.params["head_angle_deg"]) > 2.5  # rotated heads
    truth = case.params["deep_midline_shift_mm"]
    assert abs(abs(truth) - requested) <= 0.07 * requested + 0.05  # the request reaches the septum / third ventricle
    m = measure_midline_shift(case.volume, case.labels)
    assert m.found, m.reason
    assert m.signed_mm == pytest.approx(truth, abs=1.0)
    if requested >= 3:
        lesion_side = next(les["side"] for les in case.lesions if "side" in les)
        assert m.side == ("right" if lesion_side > 0 else "left")  # pushed away from the mass
    assert m.structure in (SEPTUM, THIRD_VENTRICLE)
    # the drawn geometry: the distance segment is perpendicular to the ideal line and as long as the shift
    (r0, c0), (r1, c1) = m.ideal_line
    sy, sx = case.volume.spacing[1:]
    line = np.array([(c1 - c0) * sx, (r1 - r0) * sy])
    seg = np.array([(m.point[1] - m.foot[1]) * sx, (m.point[0] - m.foot[0]) * sy])
    assert abs(line @ seg) / np.linalg.norm(line) < 0.05 + 0.01 * np.linalg.norm(seg)
    assert np.linalg.norm(seg) == pytest.approx(m.shift_mm, abs=1.0)  # the peak point vs its running median


@pytest.mark.parametrize("seed, classes, requested, flap", [(136, [2], 15.0, "craniectomy"), (134, [5], 8.0, "craniotomy")])
def test_midline_shift_through_an_open_skull(seed, classes, requested, flap):
    """A craniectomy (or a craniotomy's saw cuts) opens the skull on the slices of the third ventricle: the
    cavity there is the skull's hull, the ideal midline comes from the closed slices."""
    case = generate_case(seed, shape_yx=(256, 256), lesion_classes=classes, midline_shift_mm=requested)
    assert case.params["surgery"]["flap"] == flap
    frame = head_frame(case.volume)
    assert frame.open_skull.any() and not (frame.open_skull & frame.used).any()
    m = measure_midline_shift(case.volume, case.labels, frame)
    assert m.found, m.reason
    assert frame.open_skull[[s.slice_index for s in m.slices]].any()  # measured where the skull is open
    assert m.signed_mm == pytest.approx(case.params["deep_midline_shift_mm"], abs=1.0)


def test_ideal_midline_follows_the_rotated_skull():
    case = generate_case(49, shape_yx=(256, 256), lesion_classes=[2])
    frame = head_frame(case.volume)
    assert frame.angle_deg == pytest.approx(-case.params["head_angle_deg"], abs=0.6)
    g = case.volume.geometry
    cx, cy = case.params["head_centre_xy"]
    centre_mm = np.array([cx - g.origin[0], cy - g.origin[1]])  # the head frame's origin in image mm
    for k in np.flatnonzero(frame.used):
        assert frame.offset_mm[k] == pytest.approx(centre_mm @ frame.normal, abs=0.6)
    assert frame.left_sign == 1.0 and frame.posterior_sign == 1.0  # LPS axial: columns to the left, rows back


def test_midline_shift_on_a_gantry_tilted_dicom_series(tmp_path):
    from ctseg_core.io import load_volume
    from ctseg_core.io.images import read_labels
    from ctseg_core.synth import write_case

    case = generate_case(32, shape_yx=(256, 256), lesion_classes=[4], midline_shift_mm=9.0)
    paths = write_case(case, tmp_path, fmt="dicom", tilt_deg=15.0)
    volume = load_volume(paths["ct"])
    assert abs(volume.meta.gantry_tilt_deg) == pytest.approx(15.0, abs=0.1)
    m = measure_midline_shift(volume, read_labels(paths["labels"], like=volume))
    assert m.signed_mm == pytest.approx(case.params["deep_midline_shift_mm"], abs=1.0)


def test_normal_head_on_the_real_ge_series(ge_tilt):
    """A normal head (no bleed), tilted gantry, uneven slices: a small shift at the septum or third ventricle."""
    from ctseg_core.io import load_volume

    volume = load_volume(ge_tilt)
    m = measure_midline_shift(volume)
    assert m.found, m.reason
    assert m.shift_mm < 3.0  # measured 2.3 mm (to the right, third ventricle) when this was written
    assert {s.points[0].structure for s in m.slices} == {SEPTUM, THIRD_VENTRICLE}
    assert 5.0 < abs(m.angle_deg) < 15.0  # the head lies rotated in the scanner (about 10 degrees)


def test_no_skull_no_measurement():
    vol = Volume.from_array(np.full((8, 64, 64), 30.0, np.float32), spacing=(5.0, 1.0, 1.0))
    m = measure_midline_shift(vol)
    assert not m.found and "skull" in m.reason
    assert "not measured" in m.summary()


def test_requested_shift_changes_the_brain_only():
    plain = generate_case(44, shape_yx=(192, 192), lesion_classes=[1])
    shifted = generate_case(44, shape_yx=(192, 192), lesion_classes=[1], midline_shift_mm=12.0)
    outside = np.isin(plain.tissue, (T.CORTICAL, T.DIPLOE, T.SOFT, T.AIR, T.FAT))
    assert np.array_equal(plain.tissue[outside], shifted.tissue[outside])  # skull, scalp, air: as the seed made them
    assert not np.array_equal(plain.labels.array, shifted.labels.array) or \
        not np.array_equal(plain.volume.array, shifted.volume.array)
    assert shifted.params["midline_shift_mm"] == 12.0
    assert plain.params["midline_shift_mm"] == pytest.approx(plain.lesions[0].get("midline_shift_mm", 0.0), abs=0.06)
    with pytest.raises(ValueError):
        generate_case(44, shape_yx=(64, 64), lesion_classes=[1], midline_shift_mm=-1.0)
