"""The normal structures a model takes for blood on real scans exist in generated cases and are never
labelled: inner-table partial volume, old heads, dura and venous sinuses, calcifications, craniotomy and
burr holes, scalp haematoma and swelling, postoperative air outside the dura, metal; the hard-negative
masks find them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ctseg_core.synth import generate_case
from ctseg_core.synth import tissues as T
from ctseg_core.synth.acquisition import Acquisition
from ctseg_core.synth.hard_negatives import hard_negative_categories

SMALL = dict(shape_yx=(192, 192), pixel_spacing_mm=1.25)
ALL = [1, 2, 3, 4, 5, 6, 7]
WANTED = {  # structure -> test on a case's params (what the seed holds)
    "shunt": lambda p: p["surgery"]["shunt"] and p["atrophy"] > 0.6,
    "craniotomy": lambda p: p["surgery"]["flap"] == "craniotomy" and p["surgery"]["fresh"],
    "burr": lambda p: p["surgery"]["burr_holes"] > 0 and p["surgery"]["fresh"] and not p["surgery"]["flap"],
    "haematoma": lambda p: p["surgery"]["scalp"] == "haematoma",
    "swelling": lambda p: p["surgery"]["scalp"] == "swelling",
    "clip": lambda p: p["surgery"]["clips"] > 0,
    "craniectomy": lambda p: p["surgery"]["flap"] == "craniectomy",
}


def find_seeds(wanted: dict, limit: int = 600) -> dict[str, int]:
    """The first seed holding each structure (the anatomy does not depend on the scan: a 1-slice 32 px scan
    tells)."""
    tiny = Acquisition(shape_yx=(32, 32), pixel_spacing_mm=8.0, max_slices=1, head_scale=1.0)
    found = {}
    for seed in range(limit):
        params = generate_case(seed, normal=True, acquisition=tiny).params
        for name, test in wanted.items():
            if name not in found and test(params):
                found[name] = seed
        if len(found) == len(wanted):
            return found
    raise AssertionError(f"no seed below {limit} holds {set(wanted) - set(found)}")


@pytest.fixture(scope="module")
def cases():
    """Every structure with every lesion class forced beside it (the worst case for label leaks)."""
    acq = Acquisition(**SMALL, slice_thickness_mm=5.0)
    return {name: generate_case(seed, acquisition=acq, lesion_classes=ALL) for name, seed in find_seeds(WANTED).items()}


def test_structures_exist_where_the_seed_says(cases):
    has = lambda name, code: bool((cases[name].tissue == code).any())  # noqa: E731
    assert cases["shunt"].params["surgery"]["shunt"] and has("shunt", T.CATHETER)
    assert cases["clip"].params["surgery"]["clips"] and has("clip", T.METAL)
    assert cases["craniotomy"].params["surgery"]["flap"] == "craniotomy"
    assert cases["craniectomy"].params["surgery"]["flap"] == "craniectomy"
    assert cases["burr"].params["surgery"]["burr_holes"] >= 1
    assert has("haematoma", T.SCALP_HAEMATOMA) and cases["haematoma"].params["surgery"]["scalp"] == "haematoma"
    assert has("swelling", T.SCALP_HAEMATOMA) and cases["swelling"].params["surgery"]["scalp"] == "swelling"
    assert any(has(name, T.WM_HYPODENSITY) for name in cases)
    for c in cases.values():
        assert (c.tissue == T.VENOUS_SINUS).sum() > 50 and (c.tissue == T.DURA).any()
        assert (c.tissue == T.SKULL_BASE).any()


def test_never_labelled(cases):
    for name, c in cases.items():
        lab, tis = c.labels.array, c.tissue
        assert lab.any()
        assert not np.isin(tis[lab > 0], T.NEVER_LABELLED).any(), name


def test_scalp_findings_lie_outside_the_skull(cases):
    for name in ("haematoma", "swelling"):
        c = cases[name]
        scalp = c.tissue == T.SCALP_HAEMATOMA
        brain = np.isin(c.tissue, (T.GREY, T.WHITE, T.CSF, T.EXTRA_AXIAL))
        near_brain = ndi.binary_dilation(brain, np.ones((1, 3, 3), bool))
        assert not (scalp & near_brain).any()  # the bone lies between them
        hu = c.volume.array[ndi.binary_erosion(scalp, np.ones((1, 3, 3), bool))]
        lo, hi = (40, 90) if name == "haematoma" else (10, 60)
        assert lo < np.median(hu) < hi, np.median(hu)


def test_postoperative_air_is_never_inside_the_dura(cases):
    """Air surrounded by brain would be pneumocephalus (class 6); the generator's postoperative air lies in
    the scalp, the saw kerf and the burr holes."""
    for name in ("craniotomy", "burr", "shunt"):
        c = cases[name]
        air = c.tissue == T.POSTOP_AIR
        if not air.any():
            continue
        inner = np.isin(c.tissue, T.INTRACRANIAL)
        surrounded = ndi.binary_erosion(inner | air, np.ones((1, 5, 5), bool)) & air
        assert not surrounded.any(), name
        assert not (c.labels.array[air] > 0).any()


def test_inner_table_rim_is_bright_and_unlabelled():
    """A thick slice shows a bright rim beside the inner table (bone within the slice and the bone's glare):
    the look-alike of a thin subdural. With the GE series' scan (0.49 mm, 7 mm) the voxels that hold only
    brain or CSF within 1.5 mm of the vault average ~100 HU above the grey matter (GE: 60-200 HU there;
    the generator before the analytic partial volume: ~30 HU above); none carries a label."""
    c = generate_case(12, normal=True, acquisition=Acquisition(pixel_spacing_mm=0.49, slice_thickness_mm=7.0,
                                                               head_scale=1.0, max_slices=6, z_range_mm=(20.0, 70.0)))
    masks = hard_negative_categories(c, rim_mm=1.5)
    rim, hu = masks["inner_table_rim"], c.volume.array
    pure = rim & np.isin(c.tissue, T.INTRACRANIAL)  # brain or CSF in every plane of the slice
    grey = (c.tissue == T.GREY) & ~ndi.binary_dilation(rim, np.ones((1, 31, 31), bool))
    assert pure.sum() > 1000
    assert hu[pure].mean() > hu[grey].mean() + 60, (hu[pure].mean(), hu[grey].mean())
    assert not c.labels.array.any()


def test_slice_profile_tail_widens_the_rim_near_the_vertex():
    """Real slice profiles have a long tail: near the vertex, where slices cut the vault at a glancing angle,
    the GE series shows bone's partial volume 2-4 mm inside the inner table (60-175 HU there; the flat profile
    gave ~35). With a tail (share 0.3, sigma 0.6 slice thicknesses) the brain 2-5 mm inside the table is
    brighter, the same voxels hold the same tissue, and nothing is labelled; without it nothing changes."""
    def shell_hu(tail):
        acq = Acquisition(pixel_spacing_mm=0.98, shape_yx=(256, 256), slice_thickness_mm=5.0, head_scale=1.0,
                          z_range_mm=(40.0, 62.0), ssp_tail=tail)
        c = generate_case(12, normal=True, acquisition=acq)
        wide, narrow = (hard_negative_categories(c, rim_mm=r)["inner_table_rim"] for r in (5.0, 2.0))
        shell = wide & ~narrow & np.isin(c.tissue, T.INTRACRANIAL)
        assert shell.sum() > 1000 and not c.labels.array.any()
        return c.volume.array[shell].mean(), shell
    flat, shell_flat = shell_hu(0.0)
    tailed, shell_tailed = shell_hu(0.3)
    assert np.array_equal(shell_flat, shell_tailed)
    assert flat < 45 and tailed > flat + 25, (flat, tailed)


def test_skull_shading_brightens_the_brain_next_to_the_table_and_fades_inward():
    """Residual beam hardening: the real GE series reads 15 HU brighter 3-5 mm inside the skull than 20 mm in
    (41 vs 26 HU), the generated brain without shading 6. The shading adds strength x exp(-d / length) inside
    the cranial cavity only; the same seed with and without it differs by nothing else (labels included)."""
    acq = Acquisition(pixel_spacing_mm=0.98, shape_yx=(256, 256), slice_thickness_mm=5.0, head_scale=1.0,
                      z_range_mm=(20.0, 40.0))
    plain = generate_case(12, acquisition=acq)
    shaded = generate_case(12, acquisition=acq.with_(skull_shading_hu=12.0, skull_shading_mm=8.0))
    added = shaded.volume.array.astype(np.float64) - plain.volume.array
    inside = (shaded.structures & np.uint16(T.STRUCTURE_BIT["intracranial"])) > 0
    depth = np.stack([ndi.distance_transform_edt(m) for m in inside]) * 0.98
    near, middle, deep = (inside & (depth >= lo) & (depth < hi) for lo, hi in ((2, 4), (6, 10), (30, 90)))
    assert near.sum() > 1000 and deep.sum() > 1000
    assert 6.5 < added[near].mean() < 9.5 and 3.0 < added[middle].mean() < 6.0 and added[deep].mean() < 0.5
    assert not added[~inside].any()  # scalp, bone and air untouched
    assert np.array_equal(plain.labels.array, shaded.labels.array) and plain.labels.array.any()
    with pytest.raises(ValueError, match="skull shading"):
        Acquisition(skull_shading_hu=-1.0)


def test_hard_negative_masks(cases):
    c = cases["shunt"]
    masks = hard_negative_categories(c)
    for name in ("inner_table_rim", "ventricles_csf", "falx_tentorium_sinus", "skull_base", "scalp_soft_tissue",
                 "metal_devices"):
        assert masks[name].any(), name
        assert masks[name].shape == c.labels.array.shape
        assert not (masks[name] & (c.labels.array > 0)).any(), name
    assert masks["postop_air"].sum() >= (c.tissue == T.POSTOP_AIR).sum()
    assert masks["calcification"].sum() >= (c.tissue == T.CALCIFICATION).sum()  # small ones mixed by thick slices too
    some = {name: any(hard_negative_categories(x)[name].any() for x in cases.values())
            for name in ("calcification", "white_matter_hypodensity")}
    assert all(some.values()), some
    hm = hard_negative_categories(cases["haematoma"])
    assert hm["scalp_haematoma"].any() and not (hm["scalp_haematoma"] & ~hm["scalp_soft_tissue"]).any()
    from_tissue = hard_negative_categories(type(c)(c.volume, c.labels, [], 0, c.tissue))  # no structure bits
    assert from_tissue["metal_devices"].sum() <= masks["metal_devices"].sum() and from_tissue["metal_devices"].any()
    with pytest.raises(ValueError):
        hard_negative_categories(type(c)(c.volume, c.labels, [], 0))
