"""Next case / next slice by the model's uncertainty, on generated cases stored in a real workspace."""

from __future__ import annotations

import numpy as np

from ctseg_core.io import load_volume
from ctseg_core.io.images import write_volume
from ctseg_core.review_order import case_expected_error_ml, cases_to_review, next_slice, slice_expected_error_mm2
from ctseg_core.store import Workspace
from ctseg_core.synth import generate_case
from ctseg_core.volume import LabelMap


def test_next_slice_is_the_most_uncertain_unreviewed_one():
    u = np.zeros((5, 4, 4), np.float32)
    u[1, :2] = 0.5  # 8 voxels * 0.5 = 4 expected errors
    u[3] = 0.3  # 16 * 0.3 = 4.8
    u[4] = 0.04  # below the floor: nothing
    assert np.allclose(slice_expected_error_mm2(u, (5.0, 0.5, 0.5)), [0, 1.0, 0, 1.2, 0])
    assert next_slice(u, (5, 1, 1)) == 3
    assert next_slice(u, (5, 1, 1), current=3) == 1
    assert next_slice(u, (5, 1, 1), reviewed=np.array([0, 0, 0, 1, 0], bool)) == 1
    assert next_slice(u, (5, 1, 1), reviewed=np.array([0, 1, 0, 1, 0], bool)) is None


def test_next_case_is_the_most_uncertain_one_to_review(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ids = []
    for seed, doubt in ((501, 0.2), (502, 0.6), (503, None), (504, 0.9)):
        case = generate_case(seed, shape_yx=(48, 48), n_slices=4)
        path = tmp_path / f"s{seed}.nii.gz"
        write_volume(case.volume, path)
        volume = load_volume(path)
        c = ws.open_case(volume, path)
        if doubt is not None:
            u = np.zeros(volume.shape, np.float32)
            u[:, 10:20, 10:20] = doubt
            c.save_prediction(LabelMap(np.zeros(volume.shape, np.uint8), volume.geometry), "v1", uncertainty=u)
        ids.append(c.id)
    ws.case(ids[3]).set_status("corrected")  # reviewed already: not proposed
    order = cases_to_review(ws)
    assert [i for i, _ in order] == [ids[1], ids[0], ids[2]]
    assert order[2][1] is None and order[0][1] > order[1][1] > 0
    expected = 4 * 100 * 0.6 * float(np.prod(ws.case(ids[1]).geometry.spacing)) / 1000
    assert abs(case_expected_error_ml(ws.case(ids[1])) - expected) < 0.01 * expected  # uint8-stored uncertainty
    assert [i for i, _ in cases_to_review(ws, exclude=[ids[1]])][0] == ids[0]
