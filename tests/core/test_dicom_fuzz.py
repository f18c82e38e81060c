"""Seeded fuzzing of the real GE series: header bytes, value representations, lengths and the fields that
decide the geometry and the HU. Every outcome is either the right volume, a volume whose notes name what
was left out or changed, or a ``CtsegError`` naming a file and the reason; never another exception, a
hang (pytest-timeout) or a silently different volume. About 20 s on two cores."""

from __future__ import annotations

import shutil
import struct
import warnings

import numpy as np
import pydicom
import pytest

from ctseg_core.errors import CtsegError
from ctseg_core.io import load_volume
from ctseg_core.io.dicom_headers import PIXEL_DATA_TAG

SEED = 13
N_RANDOM = 120
VRS = {b"AE", b"AS", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OW", b"PN", b"SH",
       b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"UN", b"US", b"UT"}


@pytest.fixture(scope="module")
def series(ge_tilt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "ge"
    shutil.copytree(ge_tilt, folder)
    reference = load_volume(folder)
    return folder, reference


def pixel_offset(data: bytes) -> int:
    """Where the Pixel Data element starts (the header ends)."""
    tag = struct.pack("<HH", PIXEL_DATA_TAG >> 16, PIXEL_DATA_TAG & 0xFFFF)
    return data.rindex(tag)


def _load(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load_volume(folder), None
        except CtsegError as exc:
            return None, exc


def check_outcome(folder, name, reference, must_name_file: bool):
    """The fuzzing contract; returns "same", "reported" or "refused"."""
    vol, err = _load(folder)
    if err is not None:
        assert err.path and str(err), f"{name}: error without a file: {err!r}"
        if must_name_file:
            assert name in str(err) or str(folder) in str(err), f"{name}: error does not name it: {err}"
        return "refused"
    assert np.isfinite(vol.array).all(), f"{name}: non-finite voxels"
    same = vol.shape == reference.shape and np.array_equal(vol.array, reference.array)
    if same and vol.meta.notes == reference.meta.notes:
        return "same"
    new_notes = [n for n in vol.meta.notes if n not in reference.meta.notes]
    assert new_notes, f"{name}: the volume changed ({vol.shape} vs {reference.shape}) without a note"
    if must_name_file:
        assert any(name in n for n in new_notes), f"{name}: notes do not name it: {new_notes}"
    return "reported"


def _with_dataset(path, change):
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _set_raw(path, keyword, raw: bytes):
    """Write ``raw`` as the value bytes of ``keyword`` (what a broken writer would leave)."""
    data = path.read_bytes()
    ds = pydicom.dcmread(path)
    tag = ds[keyword].tag
    head = struct.pack("<HH", tag.group, tag.elem)
    at = data.index(head, 132)
    vr = data[at + 4:at + 6]
    length = struct.unpack("<H", data[at + 6:at + 8])[0]
    raw = raw + b" " * (len(raw) % 2)
    path.write_bytes(data[:at + 6] + struct.pack("<H", len(raw)) + raw + data[at + 8 + length:])
    assert vr in VRS


def _flip_vr(path, keyword):
    data = bytearray(path.read_bytes())
    tag = pydicom.dcmread(path, stop_before_pixels=True)[keyword].tag
    at = data.index(struct.pack("<HH", tag.group, tag.elem), 132)
    data[at + 4] ^= 0x20  # "DS" -> "dS": an unknown VR
    path.write_bytes(bytes(data))


def _claim_deflate(path):
    """The file meta says "deflated" but the data set is not (the transfer syntax UID bytes replaced)."""
    data = path.read_bytes()
    at = data.index(b"\x02\x00\x10\x00UI", 132)
    length = struct.unpack("<H", data[at + 6:at + 8])[0]
    uid = pydicom.uid.DeflatedExplicitVRLittleEndian.encode() + b"\0"
    uid = uid[:len(uid) // 2 * 2]
    group = data.index(b"\x02\x00\x00\x00UL", 132)
    group_len = struct.unpack("<I", data[group + 8:group + 12])[0] + len(uid) - length
    data = (data[:group + 8] + struct.pack("<I", group_len) + data[group + 12:at + 6] + struct.pack("<H", len(uid))
            + uid + data[at + 8 + length:])
    path.write_bytes(data)
    assert uid.rstrip(b"\0") in path.read_bytes()[:group + group_len + 12]


TARGETED = {
    "rows doubled (half an image)": lambda p: _with_dataset(p, lambda ds: setattr(ds, "Rows", ds.Rows * 2)),
    "columns halved": lambda p: _with_dataset(p, lambda ds: setattr(ds, "Columns", ds.Columns // 2)),
    "bits allocated 8": lambda p: _with_dataset(p, lambda ds: setattr(ds, "BitsAllocated", 8)),
    "slope NaN": lambda p: _set_raw(p, "RescaleSlope", b"NaN"),
    "slope inf": lambda p: _set_raw(p, "RescaleSlope", b"inf"),
    "slope text": lambda p: _set_raw(p, "RescaleSlope", b"one"),
    "slope 0": lambda p: _set_raw(p, "RescaleSlope", b"0"),
    "slope 1e39": lambda p: _set_raw(p, "RescaleSlope", b"1e39"),
    "intercept inf": lambda p: _set_raw(p, "RescaleIntercept", b"-inf"),
    "pixel spacing 0": lambda p: _set_raw(p, "PixelSpacing", b"0\\0"),
    "pixel spacing negative": lambda p: _set_raw(p, "PixelSpacing", b"-0.5\\-0.5"),
    "pixel spacing 1e30": lambda p: _set_raw(p, "PixelSpacing", b"1e30\\1e30"),
    "orientation zero": lambda p: _set_raw(p, "ImageOrientationPatient", b"0\\0\\0\\0\\0\\0"),
    "orientation degenerate": lambda p: _set_raw(p, "ImageOrientationPatient", b"1\\0\\0\\1\\0\\0"),
    "orientation NaN": lambda p: _set_raw(p, "ImageOrientationPatient", b"nan\\0\\0\\0\\1\\0"),
    "position NaN": lambda p: _set_raw(p, "ImagePositionPatient", b"nan\\0\\0"),
    "flipped VR byte": lambda p: _flip_vr(p, "PixelSpacing"),
    "false deflate syntax": lambda p: _claim_deflate(p),
    "truncated in the pixels": lambda p: p.write_bytes(p.read_bytes()[:-1000]),
    "truncated in the header": lambda p: p.write_bytes(p.read_bytes()[:pixel_offset(p.read_bytes()) // 2]),
}


@pytest.mark.parametrize("file_name", ["01.dcm", "09.dcm"])  # an end slice and a middle one
def test_targeted_field_damage_is_skipped_with_a_note_or_refused(series, file_name):
    folder, reference = series
    path = folder / file_name
    original = path.read_bytes()
    outcomes = {}
    try:
        for what, damage in TARGETED.items():
            damage(path)
            outcomes[what] = check_outcome(folder, file_name, reference, must_name_file=True)
            path.write_bytes(original)
    finally:
        path.write_bytes(original)
    assert "same" not in outcomes.values(), outcomes  # each damage is noticed


def _random_mutation(rng, data: bytes) -> tuple[str, bytes]:
    end = pixel_offset(data)
    kind = rng.choice(["byte", "vr", "truncate", "insert", "delete"])
    data = bytearray(data)
    if kind == "byte":
        at = int(rng.integers(128, end))
        data[at] = int(rng.integers(0, 256))
    elif kind == "vr":
        spots = [i for i in range(132, end - 2) if bytes(data[i:i + 2]) in VRS]
        at = spots[int(rng.integers(len(spots)))] + int(rng.integers(2))
        data[at] = int(rng.integers(32, 127))
    elif kind == "truncate":
        data = data[:int(rng.integers(0, len(data)))]
    elif kind == "insert":
        at = int(rng.integers(132, end))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 9))).astype(np.uint8).tobytes()
    else:
        at = int(rng.integers(132, end))
        del data[at:at + int(rng.integers(1, 9))]
    return f"{kind}@{at if kind != 'truncate' else len(data)}", bytes(data)


def test_seeded_random_mutations_never_crash_hang_or_change_the_volume_silently(series):
    folder, reference = series
    rng = np.random.default_rng(SEED)
    names = sorted(p.name for p in folder.glob("*.dcm"))
    seen = {}
    for _ in range(N_RANDOM):
        name = names[int(rng.integers(len(names)))]
        path = folder / name
        original = path.read_bytes()
        what, data = _random_mutation(rng, original)
        path.write_bytes(data)
        try:
            seen[f"{name} {what}"] = check_outcome(folder, name, reference, must_name_file=False)
        finally:
            path.write_bytes(original)
    assert set(seen.values()) - {"same"}, seen  # the mutations did reach the loader's checks
