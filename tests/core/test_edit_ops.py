"""Edit operations change exactly the expected voxels on known inputs."""

import numpy as np
import pytest

from ctseg_core.edit import HU_PRESETS, PaintMode, PaintPolicy, ops


def _dist_to_segment_mm(shape, spacing, a, b, plane_z=None):
    """Brute force over the whole array: distance (mm) of each voxel centre to segment a-b (indices)."""
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    p = np.stack([zz, yy, xx], -1) * np.asarray(spacing)
    a, b = np.asarray(a, float) * spacing, np.asarray(b, float) * spacing
    ab = b - a
    t = 0.0 if not ab.any() else np.clip(((p - a) @ ab) / (ab @ ab), 0, 1)[..., None]
    d = np.linalg.norm(p - (a + t * ab), axis=-1)
    if plane_z is not None:
        d[np.arange(shape[0]) != plane_z] = np.inf
    return d


def _changed(labels, delta):
    after = labels.copy()
    delta.apply(after)
    return after != labels, after


@pytest.mark.parametrize("spacing", [(5.0, 0.5, 0.8), (1.0, 1.0, 1.0), (2.5, 0.49, 0.49)])
def test_brush_2d_paints_exactly_voxels_within_radius(spacing):
    labels = np.zeros((5, 60, 50), np.uint8)
    centre = (2, 30.3, 24.6)
    delta = ops.brush(labels, [centre], spacing, 6.0, 3)
    changed, after = _changed(labels, delta)
    expect = _dist_to_segment_mm(labels.shape, spacing, (2, 30.3, 24.6), (2, 30.3, 24.6), plane_z=2) <= 6.0
    assert changed.sum() > 20
    np.testing.assert_array_equal(changed, expect)
    assert set(np.unique(after[changed])) == {3}
    if spacing[1] != spacing[2]:  # an ellipse in pixels: wider along the finer axis
        rows, cols = np.nonzero(changed[2])
        assert (rows.max() - rows.min()) > (cols.max() - cols.min())


def test_brush_segment_leaves_no_gap_and_matches_capsule():
    spacing = (3.0, 0.6, 0.6)
    labels = np.zeros((3, 80, 80), np.uint8)
    a, b = (1, 5.2, 4.9), (1, 70.1, 66.3)  # a fast drag: one mouse move far away
    delta = ops.brush(labels, [a, b], spacing, 2.0, 1)
    changed, _ = _changed(labels, delta)
    np.testing.assert_array_equal(changed, _dist_to_segment_mm(labels.shape, spacing, a, b, plane_z=1) <= 2.0)
    # connected along the whole drag
    from scipy import ndimage
    assert ndimage.label(changed[1])[1] == 1


def test_brush_3d_sphere_in_mm():
    spacing = (2.0, 0.7, 0.7)
    labels = np.zeros((12, 40, 40), np.uint8)
    c = (5.4, 20.2, 19.7)
    delta = ops.brush(labels, [c], spacing, 5.0, 2, sphere=True)
    changed, _ = _changed(labels, delta)
    np.testing.assert_array_equal(changed, _dist_to_segment_mm(labels.shape, spacing, c, c) <= 5.0)
    assert len(np.unique(np.nonzero(changed)[0])) == 5  # |dz| <= 5 mm at 2 mm: slices 3..7


def test_brush_2d_refuses_points_on_two_slices():
    with pytest.raises(ValueError):
        ops.brush(np.zeros((3, 10, 10), np.uint8), [(0, 1, 1), (1, 1, 1)], (1, 1, 1), 1.0, 1)


def test_eraser_is_brush_with_value_zero_and_clips_at_border():
    labels = np.full((2, 20, 20), 4, np.uint8)
    delta = ops.brush(labels, [(0, 0.0, 0.0)], (1, 1, 1), 3.0, 0)
    changed, after = _changed(labels, delta)
    assert changed.sum() == np.sum(_dist_to_segment_mm(labels.shape, (1, 1, 1), (0, 0, 0), (0, 0, 0), 0) <= 3)
    assert np.all(after[changed] == 0) and np.all(after[~changed] == 4)
    assert delta.bbox[0] == 0 and delta.bbox[2] == 0 and delta.bbox[4] == 0


def test_threshold_limited_brush_skips_out_of_range_voxels():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-50, 150, size=(1, 50, 50)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    lo, hi = HU_PRESETS["fresh_blood"]
    delta = ops.brush(labels, [(0, 25, 25)], (1, 1, 1), 10.0, 1, hu=hu, hu_range=(lo, hi))
    changed, _ = _changed(labels, delta)
    disc = _dist_to_segment_mm(labels.shape, (1, 1, 1), (0, 25, 25), (0, 25, 25), 0) <= 10
    np.testing.assert_array_equal(changed, disc & (hu >= 40) & (hu <= 90))
    assert (disc & ~changed).sum() > 50  # some voxels were really skipped
    assert HU_PRESETS["chronic_collection"] == (0.0, 30.0) and HU_PRESETS["air"][1] == -200.0


def test_locked_classes_untouched_and_background_only_mode():
    labels = np.zeros((1, 30, 30), np.uint8)
    labels[0, 10:20, 10:15] = 2
    labels[0, 10:20, 15:20] = 5
    everything = ops.brush(labels, [(0, 15, 15)], (1, 1, 1), 8.0, 1)
    disc, _ = _changed(labels, everything)
    assert (disc & (labels == 2)).any() and (disc & (labels == 5)).any()

    locked = PaintPolicy(PaintMode.PROTECT_LOCKED, locked={5})
    changed, after = _changed(labels, ops.brush(labels, [(0, 15, 15)], (1, 1, 1), 8.0, 1, policy=locked))
    np.testing.assert_array_equal(changed, disc & (labels != 5))
    assert np.all(after[labels == 5] == 5)

    bg = PaintPolicy(PaintMode.BACKGROUND_ONLY)
    changed, _ = _changed(labels, ops.brush(labels, [(0, 15, 15)], (1, 1, 1), 8.0, 1, policy=bg))
    np.testing.assert_array_equal(changed, disc & (labels == 0))

    # erasing in background-only mode clears classes but never a locked one
    erase = ops.brush(labels, [(0, 15, 15)], (1, 1, 1), 8.0, 0, policy=PaintPolicy("background_only", {2}))
    changed, after = _changed(labels, erase)
    np.testing.assert_array_equal(changed, disc & (labels == 5))


def test_polygon_fill_rectangle_and_triangle():
    labels = np.zeros((3, 40, 40), np.uint8)
    rect = [(4.5, 6.5), (4.5, 20.5), (12.5, 20.5), (12.5, 6.5)]
    changed, _ = _changed(labels, ops.polygon_fill(labels, 1, rect, 7))
    expect = np.zeros_like(changed)
    expect[1, 5:13, 7:21] = True
    np.testing.assert_array_equal(changed, expect)

    tri = [(2.3, 3.1), (35.7, 3.1), (35.7, 30.9)]  # lower-left triangle: x - 3.1 < (y - 2.3) * slope
    changed, _ = _changed(labels, ops.polygon_fill(labels, 0, tri, 1))
    yy, xx = np.mgrid[0:40, 0:40].astype(float)
    slope = (30.9 - 3.1) / (35.7 - 2.3)
    inside = (yy > 2.3) & (yy < 35.7) & (xx > 3.1) & (xx - 3.1 < (yy - 2.3) * slope)
    np.testing.assert_array_equal(changed[0], inside)
    assert not changed[1:].any()


def test_polygon_fill_concave_lasso_even_odd():
    labels = np.zeros((1, 30, 30), np.uint8)
    # a U shape: the notch (rows 5..14, cols 10..19) stays empty
    u = [(2.5, 2.5), (2.5, 9.5), (14.5, 9.5), (14.5, 19.5), (2.5, 19.5), (2.5, 26.5), (24.5, 26.5), (24.5, 2.5)]
    changed, _ = _changed(labels, ops.polygon_fill(labels, 0, u, 1))
    expect = np.zeros((30, 30), bool)
    expect[3:25, 3:27] = True
    expect[3:15, 10:20] = False
    np.testing.assert_array_equal(changed[0], expect)


def _ring_phantom():
    hu = np.full((4, 40, 40), 30.0, np.float32)  # brain
    yy, xx = np.mgrid[0:40, 0:40]
    r = np.hypot(yy - 20, xx - 20)
    for z in range(4):
        hu[z][r < 8] = 65.0  # blood
        hu[z][(r >= 8) & (r < 10)] = 300.0  # a bright rim: a HU boundary
        hu[z][(r >= 10) & (r < 12)] = 60.0  # more blood-like HU outside the rim
    return hu, r


def test_flood_fill_stops_at_hu_boundary_2d_and_3d():
    hu, r = _ring_phantom()
    labels = np.zeros(hu.shape, np.uint8)
    changed, _ = _changed(labels, ops.flood_fill(labels, hu, (1, 20, 20), (40, 90), 1))
    expect = np.zeros_like(changed)
    expect[1] = r < 8
    np.testing.assert_array_equal(changed, expect)

    changed3, _ = _changed(labels, ops.flood_fill(labels, hu, (1, 20, 20), (40, 90), 1, three_d=True))
    np.testing.assert_array_equal(changed3, np.broadcast_to(r < 8, hu.shape))

    # a click on a voxel out of range changes nothing
    assert not ops.flood_fill(labels, hu, (1, 20, 29), (40, 90), 1)


def test_flood_fill_spreads_through_own_class_and_stops_at_locked():
    hu, r = _ring_phantom()
    labels = np.zeros(hu.shape, np.uint8)
    labels[0, 18:23, :] = np.where(r[18:23] < 8, 1, 0)  # part of the blob already class 1
    labels[0, 10:13, :][r[10:13] < 8] = 3  # a locked strip across the top of the blob
    policy = PaintPolicy(PaintMode.PROTECT_LOCKED, {3})
    changed, after = _changed(labels, ops.flood_fill(labels, hu, (0, 20, 20), (40, 90), 1, policy=policy))
    below = (r < 8) & (np.arange(40)[:, None] >= 13)
    assert np.all(after[0][below] == 1)
    assert not changed[0][labels[0] == 3].any()
    assert not changed[0][labels[0] == 1].any()  # already class 1: passed through, not recorded
    above = (r < 8) & (np.arange(40)[:, None] < 10)  # cut off by the locked strip
    assert not changed[0][above].any()
    assert changed[0][(r < 8) & (np.arange(40)[:, None] > 23)].all()


def test_relabel_component_removes_or_reassigns_one_blob():
    labels = np.zeros((3, 30, 30), np.uint8)
    labels[0:2, 2:8, 2:8] = 1
    labels[1:3, 15:25, 15:25] = 1
    changed, after = _changed(labels, ops.relabel_component(labels, (1, 20, 20), 0))
    np.testing.assert_array_equal(changed, np.isin(np.arange(3), [1, 2])[:, None, None]
                                  & (np.mgrid[0:30, 0:30][0] >= 15)[None] & (np.mgrid[0:30, 0:30][0] < 25)[None]
                                  & (np.mgrid[0:30, 0:30][1] >= 15)[None] & (np.mgrid[0:30, 0:30][1] < 25)[None])
    assert np.all(after[0:2, 2:8, 2:8] == 1)
    _, after2 = _changed(labels, ops.relabel_component(labels, (0, 3, 3), 4))
    assert np.all(after2[0:2, 2:8, 2:8] == 4) and np.all(after2[1:3, 15:25, 15:25] == 1)
    _, after2d = _changed(labels, ops.relabel_component(labels, (0, 3, 3), 4, three_d=False))
    assert np.all(after2d[0, 2:8, 2:8] == 4) and np.all(after2d[1, 2:8, 2:8] == 1)
    assert not ops.relabel_component(labels, (0, 20, 20), 0)  # background click: nothing


def test_interpolate_slices_shape_based():
    spacing = (2.0, 0.5, 0.5)
    labels = np.zeros((11, 80, 80), np.uint8)
    yy, xx = np.mgrid[0:80, 0:80]
    labels[0][np.hypot((yy - 40) * 0.5, (xx - 40) * 0.5) <= 5] = 2  # radius 5 mm
    labels[10][np.hypot((yy - 40) * 0.5, (xx - 40) * 0.5) <= 10] = 2  # concentric, radius 10 mm
    labels[5, 0:3, 0:3] = 6  # unrelated class elsewhere
    delta = ops.interpolate_slices(labels, 2, 10, 0, spacing)
    changed, after = _changed(labels, delta)
    assert not changed[0].any() and not changed[10].any()
    for z in range(1, 10):  # concentric discs: the blended distance map is exactly a disc of the blended radius
        radius = 5 + 5 * z / 10
        dist = np.hypot((yy - 40) * 0.5, (xx - 40) * 0.5)
        wrong = (dist < radius) != (after[z] == 2)
        assert wrong.sum() < 0.06 * (dist < radius).sum()
        assert np.all(np.abs(dist[wrong] - radius) <= 0.75)  # errors only on the rim, within 1.5 px
    assert np.all(after[5, 0:3, 0:3] == 6)
    with pytest.raises(ValueError):
        ops.interpolate_slices(labels, 3, 0, 10, spacing)


def test_interpolate_slices_moves_a_shifted_shape_between_slices():
    labels = np.zeros((7, 60, 60), np.uint8)
    yy, xx = np.mgrid[0:60, 0:60]
    labels[0][np.hypot(yy - 30, xx - 22) <= 9] = 1
    labels[6][np.hypot(yy - 30, xx - 38) <= 9] = 1
    _, after = _changed(labels, ops.interpolate_slices(labels, 1, 0, 6, (3.0, 1.0, 1.0)))
    cx = [xx[after[z] == 1].mean() for z in range(7)]
    assert all(a < b for a, b in zip(cx, cx[1:]))  # the blob travels from x=22 to x=38
    assert abs(cx[3] - 30) < 0.5
    assert all((after[z] == 1).sum() > 0.4 * (labels[0] == 1).sum() for z in range(7))
