"""A full disk never loses saved labels: on a real full file system (a small tmpfs, where root may mount
one) and with writers that fail the ways real ones do (SimpleITK writes 0 bytes or a cut-short file and
returns without an error)."""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest

from ctseg_core.atomic import atomic_path, atomic_write_text
from ctseg_core.edit import Delta
from ctseg_core.errors import WriteError
from ctseg_core.io.images import read_labels, write_labels
from ctseg_core.store import Workspace
from ctseg_core.volume import Geometry, LabelMap


def _box(vol, value, z=2):
    a = np.zeros(vol.shape, bool)
    a[z, 10:30, 12:40] = True
    labels = np.zeros(vol.shape, np.uint8)
    return Delta.write(labels, (0, 0, 0), a, value)


def _fill(folder):
    """Fill the file system of ``folder`` until it is full; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 64, 1):  # down to the last byte
            try:
                while True:
                    f.write(os.urandom(size))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "small_fs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("no permission to mount a tmpfs here (the failing-writer tests cover the same code)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _edited_case(root, scan):
    vol, path = scan
    case = Workspace(root).open_case(vol, path)
    case.lock_for_editing()
    labels, _ = case.load_for_editing(vol)
    first = _box(vol, 1)
    first.apply(labels.array)
    case.journal_append(first)
    case.save_final(labels)
    return vol, case, labels


def test_full_tmpfs_keeps_final_and_journal(small_tmpfs, make_scan, tmp_path):
    vol, case, labels = _edited_case(small_tmpfs / "ws", make_scan(tmp_path))
    saved = case.final_path.read_bytes()
    second = _box(vol, 2, z=4)
    second.apply(labels.array)
    case.journal_append(second)
    filler = _fill(small_tmpfs)
    with pytest.raises(WriteError, match="disk is full|empty file|read back") as err:
        case.save_final(labels)
    assert err.value.disk_full
    assert case.final_path.read_bytes() == saved  # the good file was not replaced
    assert len(case.journal) == 1  # and the journal was not trimmed
    noise = np.random.default_rng(0).random(vol.shape) < 0.5  # incompressible: more than the last page holds
    third = Delta.write(labels.array, (0, 0, 0), noise, 3)
    with pytest.raises(WriteError, match="disk is full"):
        case.journal_append(third)  # an append that does not fit leaves no torn line
    assert len(case.journal) == 1
    filler.unlink()
    case.release_lock()
    reopened = Workspace(small_tmpfs / "ws").case(case.id)
    recovered, origin = reopened.load_for_editing(vol)
    assert origin == "recovered"
    np.testing.assert_array_equal(recovered.array, labels.array)


def _silent_writer(monkeypatch, keep_fraction):
    """SimpleITK's writer on a full disk: prints an error, returns, leaves a short file."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def write(img, path, *a, **kw):
        real(img, path, *a, **kw)
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:int(len(data) * keep_fraction)])

    monkeypatch.setattr(sitk, "WriteImage", write)


@pytest.mark.parametrize("keep_fraction", [0.0, 0.5])
def test_silently_failing_image_writer_never_replaces_the_saved_map(monkeypatch, make_scan, tmp_path,
                                                                    keep_fraction):
    vol, case, labels = _edited_case(tmp_path / "ws", make_scan(tmp_path))
    saved = case.final_path.read_bytes()
    second = _box(vol, 2, z=4)
    second.apply(labels.array)
    case.journal_append(second)
    _silent_writer(monkeypatch, keep_fraction)
    with pytest.raises(WriteError) as err:
        case.save_final(labels)
    assert err.value.disk_full and str(case.final_path) in str(err.value)
    assert case.final_path.read_bytes() == saved and len(case.journal) == 1
    assert not list(case.folder.glob(".*.tmp*"))  # no temporary file left behind
    monkeypatch.undo()
    case.release_lock()
    recovered, origin = Workspace(tmp_path / "ws").case(case.id).load_for_editing(vol)
    assert origin == "recovered" and np.array_equal(recovered.array, labels.array)


def test_atomic_writers_refuse_empty_short_and_folder_results(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "good")
    with pytest.raises(WriteError, match="empty file"), atomic_path(target):
        pass  # a writer that wrote nothing
    with pytest.raises(WriteError, match="disk is full"), atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "good"
    atomic_write_text(target, "")  # an empty text is a legitimate result
    assert target.read_text() == ""
    with pytest.raises(WriteError, match="folder"):
        write_labels(LabelMap(np.zeros((2, 3, 4), np.uint8), Geometry((2, 3, 4), (1.0, 1.0, 1.0))), tmp_path)
    assert not list(tmp_path.glob(".*.tmp*"))


def test_label_write_round_trips_when_the_disk_is_fine(tmp_path):
    arr = np.random.default_rng(0).integers(0, 8, (3, 5, 7)).astype(np.uint8)
    labels = LabelMap(arr, Geometry((3, 5, 7), (2.0, 1.0, 0.5)))
    write_labels(labels, tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(read_labels(tmp_path / "x.nii.gz").array, arr)


def test_checkpoint_cut_short_never_replaces_the_saved_one(tmp_path, monkeypatch):
    import safetensors.torch

    from ctseg_core.checkpoint import load_checkpoint, save_checkpoint
    from tiny_models import save_tiny_checkpoint, tiny_card, tiny_model

    path = save_tiny_checkpoint(tmp_path, "model")
    before = path.read_bytes()
    real = safetensors.torch.save_file

    def short_writer(tensors, filename, metadata=None):  # a writer that lost its tail on a full disk
        real(tensors, filename, metadata=metadata)
        data = open(filename, "rb").read()
        open(filename, "wb").write(data[: len(data) // 2])

    monkeypatch.setattr(safetensors.torch, "save_file", short_writer)
    model = tiny_model(seed=1)
    with pytest.raises(WriteError, match="incomplete"):
        save_checkpoint(model, tiny_card(model), tmp_path / "model")
    assert path.read_bytes() == before
    monkeypatch.undo()
    load_checkpoint(path)  # the saved checkpoint still loads (its card was not replaced either)
