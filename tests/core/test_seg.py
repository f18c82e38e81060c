"""DICOM SEG for the real tilted GE series: written with highdicom, read back with highdicom and pydicom."""

import hashlib

import numpy as np
import pydicom
import pytest

from ctseg_core.errors import CtsegError
from ctseg_core.io import load_volume
from ctseg_core.io.seg import read_dicom_seg, write_dicom_seg
from ctseg_core.labels import CLASSES
from ctseg_core.volume import LabelMap, Volume


@pytest.fixture(scope="module")
def ge_volume(ge_tilt):
    return load_volume(ge_tilt)


def _dir_hash(folder):
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def _labels(volume):
    labels = LabelMap.empty_like(volume)
    labels.array[5, 200:260, 150:250] = 1  # ICH on volume slice 5, which is source slice 5 (06.dcm)
    labels.array[27:34, 300:340, 260:300] = 5  # CSDH in the 7 mm part of the stack
    return labels


def test_dicom_seg_references_source_slices_and_frames(ge_volume, ge_tilt, tmp_path):
    before = _dir_hash(ge_tilt)
    labels = _labels(ge_volume)
    out = write_dicom_seg(labels, ge_volume, tmp_path / "seg.dcm", model_version="aa_unet-1.0")
    uids = ge_volume.meta.extra["sop_instance_uids"]
    src5 = pydicom.dcmread(ge_tilt / "06.dcm", stop_before_pixels=True)
    assert uids[5] == src5.SOPInstanceUID

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert ds.SeriesInstanceUID != src5.SeriesInstanceUID and ds.StudyInstanceUID == src5.StudyInstanceUID
    assert ds.FrameOfReferenceUID == src5.FrameOfReferenceUID
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src5.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == set(uids)
    segs = {s.SegmentNumber: s for s in ds.SegmentSequence}
    assert [segs[n].TrackingID for n in sorted(segs)] == ["ich", "csdh"]
    assert segs[1].SegmentLabel == CLASSES[1].name and segs[1].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert segs[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"  # Hemorrhage
    assert segs[2].SegmentedPropertyTypeCodeSequence[0].CodeValue == "35566002"  # Hematoma
    import highdicom as hd
    rgb = hd.color.CIELabColor.from_dicom_value(tuple(segs[1].RecommendedDisplayCIELabValue)).to_rgb()
    assert np.abs(np.subtract(rgb, CLASSES[1].colour)).max() <= 2

    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    refs, seg_nums = [], []
    for fg in ds.PerFrameFunctionalGroupsSequence:
        refs.append(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        seg_nums.append(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
    ich = [f for f, n in enumerate(seg_nums) if n == 1]
    assert [refs[f] for f in ich] == [src5.SOPInstanceUID]  # one frame, on the slice it was drawn on
    rows, cols = np.nonzero(frames[ich[0]])
    # volume row j = source row + 85.03 (the loader's shear shift on this slice); columns are unchanged
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (115, 174, 150, 249)
    assert frames[ich[0]].sum() == 60 * 100
    # the frame's plane position is the source slice's
    pos = ds.PerFrameFunctionalGroupsSequence[ich[0]].PlanePositionSequence[0].ImagePositionPatient
    np.testing.assert_allclose([float(v) for v in pos], [float(v) for v in src5.ImagePositionPatient], atol=1e-3)
    csdh_refs = {refs[f] for f, n in enumerate(seg_nums) if n == 2}
    assert csdh_refs and csdh_refs <= set(uids[14:])  # in the 7 mm part of the source stack

    seg = hd.seg.segread(out)
    assert {u for _, _, u in seg.get_source_image_uids()} == set(uids)
    px = seg.get_pixels_by_source_instance([uids[5]], segment_numbers=[1], combine_segments=True)
    assert px[0].sum() == 6000
    assert _dir_hash(ge_tilt) == before


def test_dicom_seg_round_trip(ge_volume, tmp_path):
    labels = _labels(ge_volume)
    out = write_dicom_seg(labels, ge_volume, tmp_path / "seg.dcm")
    assert pydicom.dcmread(out).SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    back = read_dicom_seg(out, ge_volume)
    assert back.geometry == ge_volume.geometry
    np.testing.assert_array_equal(back.array[:14] == 1, labels.array[:14] == 1)  # 4 mm part: exact
    a, b = labels.array == 5, back.array == 5
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.7  # 7 mm source slices: thinner volume slices take the nearest source slice
    assert set(np.unique(back.array)) == {0, 1, 5}


def test_dicom_seg_refuses_non_dicom_scan_and_empty_labels(ge_volume, tmp_path):
    plain = Volume.from_array(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(CtsegError, match="not loaded from a DICOM series"):
        write_dicom_seg(LabelMap(np.ones((4, 8, 8), np.uint8), plain.geometry), plain, tmp_path / "x.dcm")
    with pytest.raises(CtsegError, match="nothing to export"):
        write_dicom_seg(LabelMap.empty_like(ge_volume), ge_volume, tmp_path / "y.dcm")
    assert not (tmp_path / "y.dcm").exists()


def test_dicom_seg_for_multiframe_source_references_frames(ge_tilt, tmp_path):
    import shutil

    from test_dicom_codecs import make_enhanced  # the enhanced-CT maker of the loader's tests

    plain = tmp_path / "plain"
    plain.mkdir()
    for f in sorted(ge_tilt.glob("*.dcm"))[:5]:
        shutil.copy(f, plain / f.name)
    (tmp_path / "mf").mkdir()
    make_enhanced(plain, tmp_path / "mf" / "enhanced.dcm")  # frames stored in the order 3, 1, 5, 2, 4
    vol = load_volume(tmp_path / "mf")
    frames = vol.meta.extra["source_frames"]
    assert frames == [2, 4, 1, 5, 3]
    labels = LabelMap.empty_like(vol)
    labels.array[1, 100:140, 200:230] = 7  # slice 1 in position order is the 4th frame of the object
    labels.array[3, 300:310, 300:330] = 3
    out = write_dicom_seg(labels, vol, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(out)
    src = pydicom.dcmread(tmp_path / "mf" / "enhanced.dcm", stop_before_pixels=True)
    refs = {}
    for fg in ds.PerFrameFunctionalGroupsSequence:
        item = fg.DerivationImageSequence[0].SourceImageSequence[0]
        assert item.ReferencedSOPInstanceUID == src.SOPInstanceUID
        refs[fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber] = int(item.ReferencedFrameNumber)
    seg_of = {s.TrackingID: s.SegmentNumber for s in ds.SegmentSequence}
    assert refs == {seg_of["ivh"]: frames[1], seg_of["sah"]: frames[3]}
    back = read_dicom_seg(out, vol)
    np.testing.assert_array_equal(back.array, labels.array)


def test_review_labels_export_as_their_own_segments_and_read_back(ge_volume, tmp_path):
    """BLAST-CT's unassigned extra-axial blood and oedema: segments with their own label, tracking id and
    code (Hemorrhage; Edema), marked as drawn by the model version, and read back to the same values."""
    from ctseg_core.labels import EXTRA_AXIAL, OEDEMA

    labels = LabelMap.empty_like(ge_volume)
    labels.array[5, 200:260, 150:250] = EXTRA_AXIAL.id
    labels.array[5, 270:290, 150:250] = OEDEMA.id
    out = write_dicom_seg(labels, ge_volume, tmp_path / "seg.dcm", model_version="blast_ct v1")
    ds = pydicom.dcmread(out)
    segs = {s.TrackingID: s for s in ds.SegmentSequence}
    assert set(segs) == {"extra_axial", "oedema"}
    assert segs["extra_axial"].SegmentLabel == EXTRA_AXIAL.name
    assert segs["extra_axial"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"  # Hemorrhage
    assert segs["oedema"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "79654002"  # Edema
    assert segs["oedema"].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "blast_ct v1"
    back = read_dicom_seg(out, ge_volume)
    assert np.array_equal(back.array[5] == EXTRA_AXIAL.id, labels.array[5] == EXTRA_AXIAL.id)
    assert np.array_equal(back.array[5] == OEDEMA.id, labels.array[5] == OEDEMA.id)
