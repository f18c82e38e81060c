import numpy as np
import pytest

from ctseg_core.errors import LabelMismatchError
from ctseg_core.io import load_volume
from ctseg_core.io.images import read_labels, write_labels, write_volume
from ctseg_core.volume import LabelMap, Volume, volume_from_sitk, volume_to_sitk


def _oblique_volume():
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 2000, size=(5, 7, 9)).astype(np.float32)
    theta = np.deg2rad(20)
    direction = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    return Volume.from_array(arr, spacing=(5.0, 0.5, 0.45), origin=(-10.0, 20.5, 33.0), direction=direction)


def test_sitk_round_trip_keeps_geometry():
    vol = _oblique_volume()
    back = volume_from_sitk(volume_to_sitk(vol))
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.geometry.matches(vol.geometry, tol_mm=1e-6)
    # index (k, j, i) -> physical agrees with SimpleITK's own transform
    img = volume_to_sitk(vol)
    expected = img.TransformContinuousIndexToPhysicalPoint((8.0, 6.0, 4.0))
    np.testing.assert_allclose(vol.geometry.index_to_physical(4, 6, 8), expected, atol=1e-9)
    np.testing.assert_allclose(vol.geometry.physical_to_index(expected), (4, 6, 8), atol=1e-9)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_image_files_round_trip(tmp_path, suffix):
    vol = _oblique_volume()
    path = tmp_path / f"scan{suffix}"
    write_volume(vol, path)
    back = load_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.geometry.matches(vol.geometry)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_label_file_for_another_scan_is_refused(tmp_path):
    vol = _oblique_volume()
    other = Volume.from_array(np.zeros((5, 7, 9), np.float32), spacing=(5.0, 0.5, 0.45), origin=vol.geometry.origin)
    path = tmp_path / "labels.nii.gz"
    write_labels(LabelMap(np.ones(other.shape, np.uint8), other.geometry), path)
    with pytest.raises(LabelMismatchError, match="labels.nii.gz.*direction"):
        read_labels(path, like=vol)
    assert read_labels(path, like=other).array.sum() == other.array.size


def test_atomic_write_gives_usual_permissions(tmp_path):
    import os
    import stat

    from ctseg_core.atomic import atomic_write_text

    target = tmp_path / "card.json"
    atomic_write_text(target, "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
