"""Display orientation from the scan's direction matrix, overlay lookup tables, outlines, uncertainty."""

import numpy as np

from app.viewer.overlay import class_lut, outline, slice_uncertainty
from app.viewer.plane import patient_axes, view_plane
from ctseg_core.labels import CLASSES
from ctseg_core.volume import Geometry


def test_lps_axial_scan_is_shown_radiologically():
    g = Geometry((10, 20, 30), (5.0, 0.5, 0.5))
    ax, cor, sag = (view_plane(n, g) for n in ("axial", "coronal", "sagittal"))
    # axial: rows = y (posterior grows downward, so row 0 = anterior at the top), columns = x (patient left to the right)
    assert (ax.slice_axis, ax.row_axis, ax.col_axis, ax.invert_y, ax.invert_x) == (0, 1, 2, True, False)
    # coronal/sagittal: rows = z, superior up (row 0 = inferior at the bottom)
    assert (cor.slice_axis, cor.row_axis, cor.col_axis, cor.invert_y) == (1, 0, 2, False)
    assert (sag.slice_axis, sag.row_axis, sag.col_axis, sag.invert_y, sag.invert_x) == (2, 0, 1, False, False)
    arr = np.arange(10 * 20 * 30).reshape(10, 20, 30)
    assert ax.slice_of(arr, 3).shape == (20, 30)
    assert cor.slice_of(arr, 4).shape == (10, 30) and np.array_equal(cor.slice_of(arr, 4), arr[:, 4, :])
    assert np.array_equal(sag.slice_of(arr, 5), arr[:, :, 5])
    assert ax.spacing(g) == (0.5, 0.5) and cor.spacing(g) == (5.0, 0.5)


def test_ras_stored_scan_is_flipped_by_the_view_not_the_data():
    # columns run to the patient's right (-x), rows to anterior (-y): as NIfTI RAS data read without reorienting
    g = Geometry((10, 20, 30), (5.0, 0.5, 0.5), direction=np.diag([-1.0, -1.0, 1.0]))
    assert patient_axes(g) == ([2, 1, 0], [1, -1, -1])
    ax = view_plane("axial", g)
    assert ax.invert_y is False and ax.invert_x is True  # anterior still on top, patient right still on the left
    cor = view_plane("coronal", g)
    assert cor.invert_x is True and cor.invert_y is False


def test_class_lut_colours_visibility_and_outline():
    from ctseg_core.labels import EXTRA_AXIAL, NUM_LABEL_VALUES

    visible = [True] * NUM_LABEL_VALUES
    visible[2] = False
    lut = class_lut(visible)
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    assert tuple(lut[1, :3]) == CLASSES[1].colour and lut[1, 3] == 255
    assert tuple(lut[EXTRA_AXIAL.id, :3]) == EXTRA_AXIAL.colour and lut[EXTRA_AXIAL.id, 3] == 255
    assert lut[0, 3] == 0 and lut[2, 3] == 0  # background and hidden class transparent
    lab = np.zeros((10, 10), np.uint8)
    lab[2:8, 2:8] = 3
    edge = outline(lab)
    assert edge[2, 2] == 3 and edge[2, 5] == 3 and edge[5, 5] == 0 and edge[0, 0] == 0
    assert (edge == 3).sum() == 20


def test_slice_uncertainty_matches_the_predictor_measure():
    from ctseg_core.prediction import Prediction
    from ctseg_core.volume import LabelMap

    rng = np.random.default_rng(0)
    p = rng.random((3, 8, 5, 6)).astype(np.float32)
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float16)
    whole = Prediction(LabelMap(np.zeros((3, 5, 6), np.uint8), Geometry((3, 5, 6), (1, 1, 1))), p).uncertainty()
    for z in range(3):
        u = slice_uncertainty(p[z])
        assert u.dtype == np.float32 and np.allclose(u, whole[z])
    certain = np.zeros((8, 2, 2), np.float16)
    certain[0] = 1
    assert slice_uncertainty(certain).max() == 0
