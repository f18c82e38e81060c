"""Slice numbering shown to people: 1-based, nearest source image of a resampled scan, plane locations."""

import numpy as np

from ctseg_core.slices import (image_ranges_text, is_resampled, location_text, nearest_source_image,
                               plane_location_mm, slice_label)
from ctseg_core.volume import Volume, VolumeMeta


def _volume(source_z, numbers, depth=7, dz=2.0, origin_z=10.0):
    meta = VolumeMeta(extra={"source_positions": [[0.0, 0.0, z] for z in source_z],
                             "source_instance_numbers": numbers})
    return Volume.from_array(np.zeros((depth, 4, 4), np.float32), spacing=(dz, 1.0, 1.0), origin=(0, 0, origin_z),
                             meta=meta)


def test_resampled_slices_name_the_nearest_source_image():
    # 4 images at z 10, 12, 17, 22 (uneven) became 7 slices at 10, 12, ..., 22
    vol = _volume([10.0, 12.0, 17.0, 22.0], [101, 102, 103, 104])
    assert is_resampled(vol)
    assert nearest_source_image(vol, 0).instance_number == 101 and nearest_source_image(vol, 0).distance_mm == 0
    src = nearest_source_image(vol, 3)  # z 16: image 103 at z 17 is 1 mm away
    assert src.instance_number == 103 and src.distance_mm == -1.0
    assert slice_label(vol, 3) == "slice 4 / 7 ≈ image 103 (1.0 mm away)"
    assert slice_label(vol, 1) == "slice 2 / 7 = image 102"
    assert image_ranges_text(vol, [2, 3, 4]) == "images 102-103" and image_ranges_text(vol, [6]) == "image 104"


def test_a_scan_without_source_images_has_plain_numbers():
    vol = Volume.from_array(np.zeros((5, 4, 4), np.float32), spacing=(3.0, 1.0, 1.0))
    assert nearest_source_image(vol, 2) is None and not is_resampled(vol)
    assert slice_label(vol, 2) == "slice 3 / 5" and image_ranges_text(vol, [1, 2]) == ""


def test_location_text_uses_patient_letters_and_the_normal_of_a_tilted_plane():
    vol = _volume([10.0, 12.0], [1, 2], depth=2)
    assert location_text(vol.geometry, 0, 1) == "S 12.0 mm"
    flipped = Volume.from_array(np.zeros((3, 4, 4)), spacing=(2.0, 1.0, 1.0), origin=(-30.0, 5.0, 0.0))
    assert location_text(flipped.geometry, 2, 10) == "R 20.0 mm" and location_text(flipped.geometry, 1, 1) == "P 6.0 mm"
    t = np.radians(18.5)
    tilted = Volume.from_array(np.zeros((3, 4, 4)), spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                               direction=[[1, 0, 0], [0, np.cos(t), np.sin(t)], [0, -np.sin(t), np.cos(t)]])
    assert location_text(tilted.geometry, 0, 2) == "+4.0 mm along its normal (tilted)"
    assert plane_location_mm(tilted.geometry, 0, 2) == 4.0
