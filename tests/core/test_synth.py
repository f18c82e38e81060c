"""The synthetic head-CT generator: CT numbers per tissue and class, lesion locations, label volumes,
slice statistics, determinism, forced classes, geometry options."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ctseg_core.labels import CLASSES
from ctseg_core.synth import SynthCase, generate_case
from ctseg_core.synth import tissues as T

SMALL = dict(shape_yx=(192, 192))  # about 1.2 mm pixels: fast, still resolves every structure


@pytest.fixture(scope="module")
def by_class() -> dict[int, list[SynthCase]]:
    """Two cases per lesion class, each forced to hold that class only."""
    return {c: [generate_case(1000 + 10 * c + k, lesion_classes=[c], **SMALL) for k in range(2)] for c in range(1, 8)}


@pytest.fixture(scope="module")
def mixed() -> list[SynthCase]:
    return [generate_case(s, **SMALL) for s in range(14)]


def _far_from(mask: np.ndarray, other: np.ndarray, px: int) -> np.ndarray:
    """``mask`` without the voxels within ``px`` pixels in-plane or one slice of ``other``."""
    return mask & ~ndi.binary_dilation(other, np.ones((3, 2 * px + 1, 2 * px + 1), bool))


def test_tissue_ct_numbers(mixed):
    for case in mixed[:4]:
        hu, tis = case.volume.array, case.tissue
        inner = lambda code: ndi.binary_erosion(tis == code, np.ones((1, 3, 3), bool))  # noqa: E731
        bone = np.isin(tis, T.BONE)
        away = bone | (case.labels.array > 0)  # partial volume with bone or blood is not the tissue's own number
        grey, white = hu[_far_from(inner(T.GREY), away, 3)].mean(), hu[_far_from(inner(T.WHITE), away, 3)].mean()
        assert 35 <= grey <= 45 and 22 <= white <= 30 and grey > white + 5, (case.seed, grey, white)
        vent = hu[_far_from(inner(T.VENTRICLE), case.labels.array > 0, 2)]
        assert 0 <= vent.mean() <= 15, (case.seed, vent.mean())
        csf = _far_from(inner(T.CSF), away, 3)
        assert 0 <= hu[csf].mean() <= 15, (case.seed, hu[csf].mean())
        assert 700 <= hu[bone].mean() <= 1800, (case.seed, hu[bone].mean())
        assert hu[tis == T.CORTICAL].max() > 1200
        outside = _far_from(tis == T.AIR, tis != T.AIR, 4)
        assert abs(hu[outside].mean() + 1000) < 5 and 1 < hu[outside].std() < 10
        # bright negatives: physiological calcification, falx and sagittal sinus are never labelled
        calc = tis == T.CALCIFICATION
        if calc.any():
            assert hu[calc].max() > 100 and not case.labels.array[calc].any()
        sinus = tis == T.VENOUS_SINUS
        assert sinus.any() and 40 < hu[_far_from(sinus, bone, 2)].mean() < 75
        assert not case.labels.array[np.isin(tis, (T.CALCIFICATION, T.DURA, T.VENOUS_SINUS))].any()


def test_noise_level_and_grain(mixed):
    case = mixed[0]
    hu, tis = case.volume.array, case.tissue
    wm = ndi.binary_erosion(tis == T.WHITE, np.ones((1, 7, 7), bool))
    residual = hu - ndi.uniform_filter(hu, (1, 7, 7))
    sd = residual[wm].std()
    assert 1.5 < sd < 8, sd
    # correlated: neighbouring residuals agree more than chance
    r = np.corrcoef(residual[wm], np.roll(residual, 1, axis=2)[wm])[0, 1]
    assert r > 0.2, r


@pytest.mark.parametrize("cls", range(1, 8))
def test_lesion_ct_numbers_and_place(by_class, cls):
    lo, hi = CLASSES[cls].hu_range
    for case in by_class[cls]:
        lab, hu, tis = case.labels.array, case.volume.array, case.tissue
        m = lab == cls
        assert m.sum() >= (2 if cls == 6 else 10), (case.seed, case.lesions)  # air pockets: 2-4 mm
        assert set(np.unique(lab)) <= {0, cls}
        # within the class's range, give or take the bone's glare and partial volume at the inner table
        # (CSDH: its hypodense bulk; the dense part of a layered or mixed one is brighter, see below)
        centre = float(np.median(hu[m]) if cls == 5 else hu[m].mean())
        assert lo - 3 <= centre <= hi + 3, (case.seed, centre)
        under = tis[m & (tis != T.MIXED)]  # the anatomy under the label where the slice is one tissue
        if cls in (2, 4, 5):  # extra-axial: fills the epidural/subdural space and touches the inner table
            bone = np.isin(tis, T.BONE)
            near = ndi.binary_dilation(m, np.ones((1, 5, 5), bool))
            comps, n = ndi.label(m)
            touching = {int(c) for c in np.unique(comps[ndi.binary_dilation(bone, np.ones((1, 5, 5), bool)) & m])} - {0}
            assert (near & bone).any() and len(touching) >= 1
            assert np.mean(under == T.EXTRA_AXIAL) > 0.6
        elif cls == 7:
            assert np.mean(under == T.VENTRICLE) > 0.95
            assert case.lesions[0]["level_v"] is not None
        elif cls == 3:
            assert np.mean(under == T.CSF) > 0.9
        elif cls == 6:
            assert np.isin(under, T.INTRACRANIAL).all() and len(under) > 0
            per_slice = m.sum(axis=(1, 2))
            px_area = case.volume.spacing[1] * case.volume.spacing[2]
            mm2 = per_slice[per_slice > 0] * px_area
            assert mm2.max() < 90 * 0.5 * 0.5 * 1.5  # the size of 15-90 pixels at 0.5 mm, with margin
        elif cls == 1:
            assert np.mean(np.isin(under, (T.GREY, T.WHITE, T.DEEP_GREY))) > 0.8
            rim = ndi.binary_dilation(m, np.ones((1, 5, 5), bool)) & ~m & np.isin(tis, (T.GREY, T.WHITE, T.DEEP_GREY))
            assert hu[rim].mean() < hu[m].mean() - 20  # the oedema rim is dark and is not labelled


@pytest.mark.parametrize("seed", [1051, 3007])  # a layered and a mixed CSDH
def test_dense_part_of_a_csdh_is_brighter_than_brain(seed):
    """The dense part of a layered or mixed CSDH is fresh blood (brighter than grey matter), not a
    brain-isodense band under the bone: a model taught that such a band is CSDH paints it on normal heads."""
    case = generate_case(seed, lesion_classes=[5], **SMALL)
    (les,) = case.lesions
    assert les["mode"] in ("layered", "mixed")
    m, hu = case.labels.array == 5, case.volume.array
    inner = m & ~ndi.binary_dilation(~m | np.isin(case.tissue, T.BONE), np.ones((1, 5, 5), bool))
    grey = hu[(case.tissue == T.GREY) & ~ndi.binary_dilation(case.tissue != T.GREY, np.ones((1, 3, 3), bool))]
    h = hu[inner]
    assert inner.sum() > 500
    assert np.mean(h > np.percentile(grey, 95) + 3) > 0.15  # the dense part stands out from the cortex
    assert np.mean((h > np.median(grey) - 8) & (h < np.median(grey) + 3)) < 0.12  # little that reads as brain


def test_label_volumes_in_ml(by_class):
    case = by_class[1][0]
    les = case.lesions[0]
    ml = (case.labels.array == 1).sum() * case.volume.geometry.voxel_volume_ml
    r = les["radius_mm"]
    expected = 4 / 3 * np.pi * r ** 3 / 1.15 / 1000.0  # the ellipsoid the ICH is drawn from (irregular edge)
    assert 0.5 * expected < ml < 1.6 * expected, (ml, expected)
    for c in (2, 4, 5):
        for case in by_class[c]:
            ml = (case.labels.array == c).sum() * case.volume.geometry.voxel_volume_ml
            assert 1 < ml < 250, (c, ml)


def test_about_half_of_slices_are_lesion_free(mixed):
    free = sum(int((~case.labels.array.any(axis=(1, 2))).sum()) for case in mixed)
    total = sum(case.labels.array.shape[0] for case in mixed)
    assert 0.3 < free / total < 0.7, free / total
    normal = [case for case in mixed if not case.lesions]  # P_NORMAL: seed 8 of these is a normal scan
    assert normal and all(not case.labels.array.any() for case in normal)
    kinds = {les["cls"] for case in mixed for les in case.lesions}
    assert len(kinds) >= 5


def test_mass_effect_shifts_the_midline(by_class):
    case = max(by_class[2] + by_class[4] + by_class[5], key=lambda c: c.params["midline_shift_mm"])
    shift = case.params["midline_shift_mm"]
    assert shift > 2
    normal = generate_case(case.seed, normal=True, **SMALL)
    # the falx and the sagittal sinus (the midline, above the ventricles) move away from the lesion
    def falx_x(c):
        n = c.labels.array.shape[0]
        ks = slice(int(n * 0.6), int(n * 0.85))
        zs, ys, xs = np.nonzero(np.isin(c.tissue[ks], (T.DURA, T.VENOUS_SINUS)))
        return np.median(xs) * c.volume.spacing[2]
    assert abs(falx_x(case) - falx_x(normal)) > 1.0


def test_same_seed_same_bytes_and_seeds_differ():
    a = generate_case(7, shape_yx=(96, 96), n_slices=12)
    b = generate_case(7, shape_yx=(96, 96), n_slices=12)
    c = generate_case(8, shape_yx=(96, 96), n_slices=12)
    assert a.volume.array.tobytes() == b.volume.array.tobytes()
    assert a.labels.array.tobytes() == b.labels.array.tobytes()
    assert a.lesions == b.lesions
    assert a.volume.array.tobytes() != c.volume.array.tobytes()


def test_forced_classes_and_normal():
    n = generate_case(3, normal=True, shape_yx=(96, 96))
    assert n.lesions == [] and not n.labels.array.any()
    f = generate_case(3, lesion_classes=[6, 7], shape_yx=(128, 128))
    assert {les["cls"] for les in f.lesions} == {6, 7}
    assert set(np.unique(f.labels.array)) <= {0, 6, 7}
    with pytest.raises(ValueError):
        generate_case(3, lesion_classes=[9], shape_yx=(64, 64))


def test_geometry_defaults_and_options():
    case = generate_case(21)
    g = case.volume.geometry
    assert g.shape[1:] == (512, 512) and 0.40 <= g.spacing[1] <= 0.50 and g.spacing[1] == g.spacing[2]
    assert g.spacing[0] == 5.0 and 24 <= g.shape[0] <= 40
    assert case.volume.array.dtype == np.float32 and case.labels.array.dtype == np.uint8
    assert np.all(np.mod(case.volume.array, 1) == 0)  # whole HU: stored as int16 without loss
    assert case.labels.geometry == g and case.tissue.shape == g.shape
    thin = generate_case(21, thin=True, shape_yx=(96, 96), pixel_spacing=2.2)
    assert thin.volume.spacing == (1.0, 2.2, 2.2) and thin.volume.shape[0] > 100
    small = generate_case(22, shape_yx=(256, 256), pixel_spacing=0.9, n_slices=10)
    assert small.volume.shape == (10, 256, 256) and small.volume.spacing[1:] == (0.9, 0.9)
    import json

    json.dumps(case.lesions)
    json.dumps(case.params)
