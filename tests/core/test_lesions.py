"""The lesion list on generated cases with known truth: thickness of extra-axial collections, side, location,
diameters of shapes of known size, grouping and the minimum size, exports."""

import csv
import io
import json

import numpy as np
import pytest

from ctseg_core.measure import measure_scan
from ctseg_core.measure.head_frame import head_frame
from ctseg_core.measure.lesions import (DEEP, FRONTAL, OCCIPITAL, PARIETAL, POSTERIOR_FOSSA, TEMPORAL, VENTRICULAR,
                                        list_lesions, write_lesions_csv, write_lesions_json)
from ctseg_core.synth import generate_case
from ctseg_core.volume import LabelMap, Volume

SIDE = {1: "left", -1: "right"}


@pytest.mark.parametrize("seed, cls", [(5, 4), (13, 4), (9, 5), (17, 5), (12, 2), (3, 2)])
def test_extra_axial_thickness_matches_the_generated_one(seed, cls):
    case = generate_case(seed, shape_yx=(256, 256), lesion_classes=[cls] + ([3] if seed == 3 else []))
    truth = next(les for les in case.lesions if les["cls"] == cls)
    lesions = measure_scan(case.volume, case.labels).lesions
    main = max(lesions.of_class(cls), key=lambda les: les.volume_ml)
    assert main.thickness is not None
    assert main.thickness.mm == pytest.approx(truth["thickness_mm"], abs=1.0)  # voxels of 0.8-0.9 mm x 5 mm
    assert main.side == SIDE[truth["side"]]
    k, j, i = main.thickness.outer
    assert case.labels.array[int(k), int(j), int(i)] == cls  # drawn from inside the collection ...
    k, j, i = main.thickness.inner
    assert case.volume.array[int(k), int(j), int(i)] > 250  # ... to the inner table


def test_ich_ivh_side_location_and_abc2():
    case = generate_case(11, shape_yx=(256, 256), lesion_classes=[1, 7])  # a putaminal ICH, IVH on both sides
    lesions = measure_scan(case.volume, case.labels).lesions
    ich = lesions.of_class(1)
    assert len(ich) == 1
    truth = next(les for les in case.lesions if les["cls"] == 1)
    assert ich[0].side == SIDE[truth["side"]]
    assert ich[0].regions[0] == DEEP  # a putaminal hematoma
    assert ich[0].abc2 is not None and 0.4 < ich[0].abc2.volume_ml / ich[0].volume_ml < 1.6
    assert ich[0].volume_ml == pytest.approx(np.count_nonzero(case.labels.array == 1) * case.volume.geometry.voxel_volume_ml)
    ivh = lesions.of_class(7)
    assert {les.regions[0] for les in ivh} == {VENTRICULAR}
    sides = {les.side for les in ivh}
    assert {"left", "right"} <= sides  # blood layering in both occipital horns (truth: sides [-1, 1])


def test_pneumocephalus_is_frontal():
    # pockets pressed against the frontal inner table lose most of their label to the table's partial volume
    # in 5 mm slices; grown by 1.6 (3-6 mm pockets) they are above the list's minimum size
    case = generate_case(6, shape_yx=(256, 256), lesion_classes=[6], lesion_scale=1.6)
    lesions = measure_scan(case.volume, case.labels).lesions
    assert lesions.lesions and all(les.regions[0] == FRONTAL for les in lesions.lesions)


def test_regions_and_sides_of_lesions_placed_in_the_head_frame():
    case = generate_case(41, shape_yx=(256, 256), normal=True)
    volume = case.volume
    frame = head_frame(volume)
    ref = frame.reference_slice
    half = frame.half_length_mm(ref)
    dz = volume.spacing[0]
    placed = {  # (lateral mm +left, along fraction of the half-length +posterior, height mm): region, side
        (25.0, -0.6, 20.0): (FRONTAL, "left"), (-20.0, 0.8, 10.0): (OCCIPITAL, "right"),
        (-40.0, 0.0, -5.0): (TEMPORAL, "right"), (30.0, 0.3, 40.0): (PARIETAL, "left"),
        (12.0, 0.5, -40.0): (POSTERIOR_FOSSA, "left"), (-14.0, 0.05, 5.0): (DEEP, "right")}
    arr = np.zeros(volume.shape, np.uint8)
    for (lat, a, h), _ in placed.items():
        k = ref + int(round(h / dz))
        r, c = frame.to_pixel(k, lat, a * half)
        arr[k, int(r) - 3:int(r) + 4, int(c) - 3:int(c) + 4] = 1
    lesions = list_lesions(volume, LabelMap(arr, volume.geometry), frame)
    assert len(lesions.lesions) == len(placed)
    for (lat, a, h), (region, side) in placed.items():
        k = ref + int(round(h / dz))
        r, c = frame.to_pixel(k, lat, a * half)
        les = lesions.at(k, int(r), int(c))
        assert les is not None
        assert (les.regions[0], les.side) == (region, side), (lat, a, h)


def test_diameters_of_a_box_of_known_size():
    vol = Volume.from_array(np.zeros((20, 100, 100), np.float32), spacing=(5.0, 0.5, 0.5))
    arr = np.zeros(vol.shape, np.uint8)
    arr[4:8, 20:60, 30:50] = 1  # 20 x 20 x 10 mm (z, y, x)
    les = list_lesions(vol, LabelMap(arr, vol.geometry)).lesions[0]
    assert les.diameter_mm == pytest.approx(np.sqrt(20 ** 2 + 20 ** 2 + 10 ** 2), abs=0.01)
    assert les.axial_diameter_mm == pytest.approx(np.sqrt(20 ** 2 + 10 ** 2), abs=0.01)
    assert les.volume_ml == pytest.approx(4.0)
    assert les.slices == [4, 5, 6, 7]
    assert les.side == ""  # no skull: no side


def test_grouping_fragments_and_exports(tmp_path):
    vol = Volume.from_array(np.zeros((10, 80, 80), np.float32), spacing=(5.0, 0.5, 0.5))
    arr = np.zeros(vol.shape, np.uint8)
    arr[2:5, 10:30, 10:30] = 3
    arr[2:5, 10:30, 32:40] = 3  # 1 mm away in-plane: the same lesion
    arr[2:5, 60:70, 60:70] = 3  # far away: another
    arr[8, 5:7, 70:72] = 3  # 4 voxels: a fragment under the minimum
    lesions = list_lesions(vol, LabelMap(arr, vol.geometry))
    assert [round(les.volume_ml, 3) for les in lesions.lesions] == [2.1, 0.375]
    assert lesions.fragments == {"sah": {"count": 1, "volume_ml": 0.005}}
    assert lesions.id_map[3, 20, 35] == 1 and lesions.id_map[3, 65, 65] == 2 and lesions.id_map[8, 5, 70] == 0
    write_lesions_csv(lesions, tmp_path / "l.csv")
    write_lesions_json(lesions, tmp_path / "l.json")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "l.csv").read_text())))
    assert [r["number"] for r in rows] == ["1", "2"] and rows[0]["class"] == "sah"
    assert float(rows[0]["volume_ml"]) == pytest.approx(2.1) and rows[0]["first_slice"] == "3"  # 1-based
    data = json.loads((tmp_path / "l.json").read_text())
    assert data["lesions"][1]["volume_ml"] == pytest.approx(0.375) and data["fragments"]["sah"]["count"] == 1
