"""Geometry helpers of the DICOM loader against independent computations (scipy, plain trigonometry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from ctseg_core.io.dicom_geometry import orientation_axes, shift_into, signed_tilt_deg, tilt_tag_note


@pytest.mark.parametrize("oy, ox", [(0.0, 0.0), (2.3, 0.0), (0.0, 1.7), (3.25, 4.5), (1.0, 2.0)])
def test_shift_into_matches_scipy_bilinear(oy, ox):
    src = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    h, w = 20 + math.ceil(oy) + 1, 30 + math.ceil(ox) + 1
    dst = np.full((h, w), -5, np.float32)
    shift_into(dst, src, oy, ox, -5.0)
    ref = ndi.affine_transform(src, np.eye(2), offset=(-oy, -ox), output_shape=(h, w), order=1,
                               mode="constant", cval=-5)
    inner = (slice(math.ceil(oy) + 1, math.floor(oy) + 19), slice(math.ceil(ox) + 1, math.floor(ox) + 29))
    assert np.allclose(dst[inner], ref[inner], atol=1e-5)
    assert np.all(dst[: math.floor(oy)] == -5) and np.all(dst[:, : math.floor(ox)] == -5)


@pytest.mark.parametrize("deg", [-25.0, -16.5, 0.0, 7.0, 18.5])
def test_signed_tilt_of_a_stack_moving_along_z(deg):
    a = math.radians(deg)
    # GE convention: the column axis leans as (0, cos, -sin); the table moves along z
    r, c, n = orientation_axes([1, 0, 0, 0, math.cos(a), -math.sin(a)])
    assert signed_tilt_deg(r, c, n, np.array([0.0, 0.0, 1.0])) == pytest.approx(deg, abs=1e-9)
    # the stack line's direction (up or down the table) does not change the sign
    assert signed_tilt_deg(r, c, n, np.array([0.0, 0.0, -1.0])) == pytest.approx(deg, abs=1e-9)


def test_tilt_tag_notes():
    assert tilt_tag_note(18.5, [18.5, 18.5]) is None
    assert "opposite sign" in tilt_tag_note(18.5, [-18.5])
    assert "says +18.5°" in tilt_tag_note(0.0, [18.5])
    assert tilt_tag_note(0.0, [None]) is None
    assert "varies" in tilt_tag_note(3.0, [3.0, 0.0])
