"""Randomised acquisition of the synthetic head CT: the training distribution covers its ranges, each
setting reaches the image, a slab is exactly the same slices of the whole scan, determinism by seed,
labels stay exact under random scanners and poses."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_core.labels import CLASSES
from ctseg_core.synth import generate_case
from ctseg_core.synth import tissues as T
from ctseg_core.synth.acquisition import Acquisition, sample_acquisition
from ctseg_core.synth.anatomy import Head, frame_uvw, head_to_scanner
from ctseg_core.synth.physics import sub_plane_offsets

SMALL = dict(shape_yx=(192, 192), pixel_spacing_mm=1.25)  # fast, still resolves every structure


def test_sample_acquisition_covers_the_training_ranges():
    rng = np.random.default_rng(0)
    acqs = [sample_acquisition(rng) for _ in range(600)]
    t = np.array([a.slice_thickness_mm for a in acqs])
    assert t.min() >= 0.6 and t.max() <= 7.0
    assert 0.5 < np.mean((t >= 2.5) & (t <= 5.0)) < 0.8  # most mass on 2.5-5 mm
    assert np.mean(t < 1.25) > 0.05 and np.mean(t == 7.0) > 0.04  # some thin, some 7 mm
    ps = np.array([a.pixel_spacing_mm for a in acqs])
    assert 0.35 <= ps.min() < 0.37 and 0.58 < ps.max() <= 0.6
    assert {a.kernel for a in acqs} == {"smooth", "standard", "sharp"}
    noise = {k: np.mean([a.noise_hu for a in acqs if a.kernel == k]) for k in ("smooth", "sharp")}
    assert noise["sharp"] > 2 * noise["smooth"]
    pitch = np.array([a.pitch_deg for a in acqs])
    roll = np.array([a.roll_deg for a in acqs])
    yaw = np.array([a.yaw_deg for a in acqs])
    assert pitch.min() < -5 and pitch.max() > 15 and np.abs(roll).max() > 5 and np.abs(yaw).max() > 20
    assert 0.2 < np.mean([a.gantry_tilt_deg > 0 for a in acqs]) < 0.4
    assert 0.05 < np.mean([a.motion_mm > 0 for a in acqs]) < 0.3
    assert 0.3 < np.mean([a.fov_circle for a in acqs]) < 0.7
    scale = np.array([a.head_scale for a in acqs])
    assert scale.min() < 0.9 and scale.max() > 1.08
    assert all(a.spacing_z_mm <= a.slice_thickness_mm for a in acqs)
    assert any(a.spacing_z_mm < a.slice_thickness_mm for a in acqs)  # some overlapping reconstructions
    tail = np.array([a.ssp_tail for a in acqs])  # every drawn scanner's slice profile has a tail
    assert tail.min() >= 0.1 and tail.max() <= 0.45 and Acquisition().ssp_tail == 0.0  # legacy scans: flat


def test_planes_per_slice_follow_the_thickness():
    assert [len(sub_plane_offsets(t)[0]) for t in (0.6, 1.25, 2.5, 4.0, 5.0, 7.0)] == [1, 1, 1, 2, 2, 3]
    offs, wts = sub_plane_offsets(7.0)
    assert wts.sum() == pytest.approx(1.0) and offs.min() > -3.5 and offs.max() < 3.5
    assert np.allclose(np.diff(offs), 7.0 / 3)


def test_acquisition_reaches_the_case():
    acq = Acquisition(shape_yx=(160, 176), pixel_spacing_mm=1.3, slice_thickness_mm=3.0, slice_spacing_mm=2.0,
                      head_scale=1.0, yaw_deg=12.0, pitch_deg=15.0, roll_deg=-5.0, gantry_tilt_deg=12.0)
    case = generate_case(9, acquisition=acq, normal=True)
    g = case.volume.geometry
    assert g.shape[1:] == (160, 176) and g.spacing == (2.0, 1.3, 1.3)
    assert case.params["slice_thickness"] == 3.0 and case.params["tilt_deg"] == 12.0
    assert case.params["acquisition"]["pitch_deg"] == 15.0 and case.volume.meta.extra["synth_tilt_deg"] == 12.0
    import json

    json.dumps(case.params)
    with pytest.raises(ValueError):
        generate_case(9, acquisition=acq, thin=True)  # one way to give the scan
    with pytest.raises(ValueError):
        Acquisition(kernel="bone")


def test_slab_is_the_same_slices_of_the_whole_scan():
    acq = sample_acquisition(np.random.default_rng(3)).with_(shape_yx=(128, 128), pixel_spacing_mm=1.9,
                                                             slice_thickness_mm=3.0, slice_spacing_mm=3.0)
    full = generate_case(5, acquisition=acq, lesion_classes=[2, 7])
    slab = generate_case(5, acquisition=acq.with_(max_slices=3), lesion_classes=[2, 7])
    k = slab.params["first_slice"]
    assert slab.volume.shape[0] == 3 and slab.params["full_slices"] == full.volume.shape[0]
    assert np.array_equal(slab.volume.array, full.volume.array[k:k + 3])
    assert np.array_equal(slab.labels.array, full.labels.array[k:k + 3])
    assert np.array_equal(slab.tissue, full.tissue[k:k + 3])
    assert slab.volume.geometry.origin[2] == pytest.approx(full.volume.geometry.origin[2] + 3.0 * k)
    zs = full.volume.geometry.origin[2] + 3.0 * np.arange(full.volume.shape[0])
    win = generate_case(5, acquisition=acq.with_(z_range_mm=(zs[4] - 0.1, zs[7] + 0.1)), lesion_classes=[2, 7])
    assert np.array_equal(win.volume.array, full.volume.array[4:8])
    with pytest.raises(ValueError):
        generate_case(5, acquisition=acq.with_(z_range_mm=(500.0, 600.0)))
    # another seed's slab is drawn at another height
    starts = {generate_case(s, acquisition=acq.with_(max_slices=3), normal=True).params["first_slice"] for s in range(6)}
    assert len(starts) > 2


def test_same_seed_same_head_whatever_the_scan():
    a = generate_case(11, acquisition=Acquisition(**SMALL, head_scale=1.0, slice_thickness_mm=5.0))
    other = Acquisition(**SMALL, head_scale=1.0, slice_thickness_mm=2.0, pitch_deg=10.0, kernel="sharp",
                        psf_sigma_mm=0.3, noise_hu=10.0, max_slices=8)
    b = generate_case(11, acquisition=other)
    strip = lambda les: [{k: v for k, v in le.items() if k != "centre_lps"} for le in les]  # noqa: E731
    assert strip(a.lesions) == strip(b.lesions) and a.params["surgery"] == b.params["surgery"]
    again = generate_case(11, acquisition=other)
    assert again.volume.array.tobytes() == b.volume.array.tobytes()
    assert again.labels.array.tobytes() == b.labels.array.tobytes()


def test_pose_maps_head_frame_to_scanner_and_back():
    head = Head(centre_xy=(3.0, -7.0), centre_z=0.0, angle=0.3, half_width=65, half_length=80, half_height=70,
                half_depth=85, taper=0.05, skull_mm=5, scalp_mm=5, gap_mm=1, ventricle_scale=1, floor_shift=0,
                roll=np.deg2rad(6), pitch=np.deg2rad(18))
    xx, yy = np.meshgrid(np.linspace(-90, 90, 7), np.linspace(-90, 90, 5))
    u, v, w_in = frame_uvw(head, xx, yy)
    z = 17.0
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            x, y, zz = head_to_scanner(head, float(u[i, j]), float(v[i, j]), float(z + w_in[i, j]))
            assert (x, y, zz) == pytest.approx((xx[i, j], yy[i, j], z), abs=1e-3)


def test_pitched_case_puts_each_lesion_where_it_says():
    acq = Acquisition(**SMALL, slice_thickness_mm=2.5, pitch_deg=20.0, roll_deg=-6.0, yaw_deg=15.0, head_scale=1.0)
    case = generate_case(1011, acquisition=acq, lesion_classes=[1])
    les = case.lesions[0]
    m = case.labels.array == 1
    idx = np.argwhere(m).mean(axis=0)  # (k, row, col) -> LPS
    g = case.volume.geometry
    centre = np.array([g.origin[0] + idx[2] * g.spacing[2], g.origin[1] + idx[1] * g.spacing[1],
                       g.origin[2] + idx[0] * g.spacing[0]])
    assert np.linalg.norm(centre - np.array(les["centre_lps"])) < 0.5 * les["radius_mm"] + 3, (centre, les)


def _white_residual_sd(case):
    from scipy import ndimage as ndi

    hu, tis = case.volume.array, case.tissue
    wm = ndi.binary_erosion(tis == T.WHITE, np.ones((1, 5, 5), bool))
    return (hu - ndi.uniform_filter(hu, (1, 7, 7)))[wm].std()


def test_noise_level_and_kernel_reach_the_image():
    base = dict(SMALL, head_scale=1.0, max_slices=4)
    quiet = generate_case(4, normal=True, acquisition=Acquisition(**base, noise_hu=2.0, kernel="smooth"))
    loud = generate_case(4, normal=True, acquisition=Acquisition(**base, noise_hu=12.0, kernel="sharp", sharpen=0.4,
                                                                  noise_grain_mm=1.25, psf_sigma_mm=0.3))
    assert _white_residual_sd(loud) > 3 * _white_residual_sd(quiet)


def test_field_of_view_circle_and_a_head_cut_by_the_field():
    acq = Acquisition(shape_yx=(128, 128), pixel_spacing_mm=1.4, head_scale=1.1, head_offset_mm=(20.0, 10.0),
                      fov_circle=True, slice_thickness_mm=5.0)
    case = generate_case(2, acquisition=acq, lesion_classes=[2])
    yy, xx = np.mgrid[:128, :128]
    out = (yy - 63.5) ** 2 + (xx - 63.5) ** 2 > 64 ** 2
    assert np.all(case.volume.array[:, out] == -1024) and not case.labels.array[:, out].any()
    body = case.tissue != T.AIR
    assert body[:, :, 0].any() or body[:, :, -1].any() or body[:, 0, :].any() or body[:, -1, :].any()  # cut


@pytest.mark.parametrize("cls", range(1, 8))
def test_labels_stay_exact_under_random_scans(cls):
    """Each class, drawn with a random scanner, pose and artefacts: placed on its own anatomy, with its own
    CT numbers (blood keeps its class's range; everything that varies is what the model must ignore)."""
    rng = np.random.default_rng(100 + cls)
    acq = sample_acquisition(rng).with_(shape_yx=(192, 192), pixel_spacing_mm=1.25, motion_mm=0.0, slice_spacing_mm=None,
                                        slice_thickness_mm=min(sample_acquisition(rng).slice_thickness_mm, 5.0))
    case = generate_case(2000 + cls, acquisition=acq, lesion_classes=[cls])
    lab, hu, tis = case.labels.array, case.volume.array, case.tissue
    m = lab == cls
    assert m.sum() >= (2 if cls == 6 else 10), (acq, case.lesions)
    lo, hi = CLASSES[cls].hu_range
    sd = acq.noise_hu or 4.0
    assert lo - sd <= hu[m].mean() <= hi + sd, (hu[m].mean(), acq)
    under = tis[m & (tis != T.MIXED)]
    allowed = {1: (T.GREY, T.WHITE, T.DEEP_GREY, T.WM_HYPODENSITY), 2: (T.EXTRA_AXIAL,), 3: (T.CSF,),
               4: (T.EXTRA_AXIAL,), 5: (T.EXTRA_AXIAL,), 6: T.INTRACRANIAL, 7: (T.VENTRICLE,)}[cls]
    assert np.mean(np.isin(under, allowed)) > 0.8, np.unique(under, return_counts=True)
    assert not np.isin(tis[m], T.NEVER_LABELLED).any()
