"""Bad input is a clear error naming the file (or a note saying what was done), never a silent wrong scan:
missing paths, non-finite voxels, NIfTI files that ITK would read wrong, pipes and very deep folders."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import threading

import numpy as np
import pytest

from ctseg_core.cli import main
from ctseg_core.errors import LoadError
from ctseg_core.io import load_volume, resolve_scan_path
from ctseg_core.io.dicom import scan_folder
from ctseg_core.io.images import read_volume, write_volume
from ctseg_core.volume import AIR_HU, Volume


# ---------------------------------------------------------------- paths that do not exist
def test_missing_path_is_an_error_never_its_parent_folder(ge_tilt, tmp_path, capsys):
    typo = ge_tilt.parent / "ge_head_tilt_typo"
    with pytest.raises(LoadError, match="no such file or folder") as err:
        load_volume(typo)
    assert str(typo) in str(err.value)
    inside = ge_tilt / "99.dcm"  # a missing file inside a real series folder
    with pytest.raises(LoadError, match="no such file or folder"):
        load_volume(inside)
    for argv in (["convert", str(typo), str(tmp_path / "out.nii.gz")], ["info", str(inside)],
                 ["segment", str(typo), "-o", str(tmp_path / "seg.nii.gz")]):
        assert main(argv) == 2, argv
        assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out.nii.gz").exists() and not (tmp_path / "seg.nii.gz").exists()


def test_a_dicom_file_means_its_own_series(philips_multi):
    scan = scan_folder(philips_multi)
    other = next(s for s in scan.series if s.is_axial_ct and not s.selected)  # 54 slices beside the default 58
    vol = load_volume(other.files[0])  # not the folder's default series: the one the file belongs to
    assert vol.meta.series_uid == other.series_uid and vol.shape[0] == other.n_slices != scan.selected().n_slices
    assert resolve_scan_path(other.files[0]).file == other.files[0]


# ---------------------------------------------------------------- non-finite voxels
def _mha_with_nan(tmp_path, n_bad=1):
    rng = np.random.default_rng(0)
    arr = rng.normal(35, 5, (6, 40, 40)).astype(np.float32)
    arr[2:4, 10:20, 10:20] = 70.0
    bad = arr.copy()
    bad[3, 0, 0] = np.nan
    if n_bad > 1:
        bad[1, 5, 5] = np.inf
        bad[4, 6, 6] = -np.inf
    path = tmp_path / "scan.mha"
    write_volume(Volume.from_array(bad, spacing=(5.0, 0.5, 0.5)), path)
    return path, arr


def test_non_finite_voxels_become_air_with_a_note(tmp_path):
    path, arr = _mha_with_nan(tmp_path, n_bad=3)
    vol = load_volume(path)
    assert np.isfinite(vol.array).all()
    assert vol.array[3, 0, 0] == AIR_HU and vol.array[1, 5, 5] == AIR_HU
    assert any("3 voxel(s)" in n and "NaN" in n for n in vol.meta.notes)


def test_one_nan_voxel_does_not_empty_the_segmentation(tmp_path):
    from tiny_models import tiny_predictor

    predictor = tiny_predictor()
    path, arr = _mha_with_nan(tmp_path)
    clean = predictor.predict(Volume.from_array(arr, spacing=(5.0, 0.5, 0.5))).labels.array
    assert clean.any()  # the random-weight model labels something
    loaded = predictor.predict(load_volume(path)).labels.array
    assert (loaded != clean).mean() < 0.01  # the one voxel changes its neighbourhood at most
    raw = arr.copy()
    raw[3, 0, 0] = np.nan  # a volume that bypassed the loaders: preprocessing treats NaN as air
    direct = predictor.predict(Volume.from_array(raw, spacing=(5.0, 0.5, 0.5))).labels.array
    assert np.array_equal(direct, loaded)


# ---------------------------------------------------------------- NIfTI that ITK would read wrong
def _nifti(tmp_path, name="scan.nii"):
    vol = Volume.from_array(np.full((4, 20, 24), 30, np.float32), spacing=(3.0, 0.7, 0.8))
    path = tmp_path / name
    write_volume(vol, path)
    return path


def _patch_header(path, offset, fmt, value):
    data = bytearray(path.read_bytes())
    data[offset:offset + struct.calcsize(fmt)] = struct.pack("<" + fmt, value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,match", [
    (lambda p: p.write_bytes(p.read_bytes()[:-500]), "truncated"),
    (lambda p: _patch_header(p, 42 + 2, "h", 400), "truncated"),  # header announces more rows than the file holds
    (lambda p: _patch_header(p, 42 + 4, "h", 0), "size 0"),
    (lambda p: _patch_header(p, 80, "f", 0.0), "voxel size"),
    (lambda p: _patch_header(p, 84, "f", float("nan")), "voxel size"),
])
def test_nifti_problems_itk_reads_silently_are_errors(tmp_path, damage, match):
    path = _nifti(tmp_path)
    damage(path)
    with pytest.raises(LoadError, match=match) as err:
        read_volume(path)
    assert str(path) in str(err.value)
    assert main(["convert", str(path), str(tmp_path / "out.nii.gz")]) == 2


def test_cut_short_compressed_nifti_is_an_error(tmp_path):
    path = _nifti(tmp_path, "scan.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(LoadError, match="cut short|truncated"):
        read_volume(path)


# ---------------------------------------------------------------- pipes and deep folders
def test_pipe_in_the_folder_is_skipped_not_read(ge_tilt, tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(ge_tilt, folder)
    os.mkfifo(folder / "00_pipe.dcm")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("scan", scan_folder(folder)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "scanning blocked on the pipe"
    scan = result["scan"]
    assert any(k.path.name == "00_pipe.dcm" and "not a regular file" in k.reason for k in scan.skipped)
    assert scan.selected().n_slices == 28
    with pytest.raises(LoadError, match="not a regular file"):
        load_volume(folder / "00_pipe.dcm")


def test_very_deep_folders_do_not_hit_the_recursion_limit(ge_tilt, tmp_path):
    root = tmp_path / "deep"
    path, made = root, [root]
    root.mkdir()
    for _ in range(1300):  # os.makedirs and shutil.rmtree recurse: make and remove them one by one
        path = path / "d"
        path.mkdir()
        made.append(path)
    shutil.copy(ge_tilt / "01.dcm", path / "01.dcm")
    shutil.copy(ge_tilt / "02.dcm", path / "02.dcm")
    (root / "locked").mkdir()
    (root / "locked" / "x.dcm").write_bytes(b"x")
    os.chmod(root / "locked", 0)
    try:
        scan = scan_folder(root)
    finally:
        os.chmod(root / "locked", 0o755)
        for p in (path / "01.dcm", path / "02.dcm", root / "locked" / "x.dcm"):
            p.unlink()
        (root / "locked").rmdir()
        for folder in reversed(made):
            folder.rmdir()
    assert scan.selected().n_slices == 2
    if os.geteuid() != 0:  # root reads any folder
        assert any("folder cannot be read" in k.reason for k in scan.skipped)
