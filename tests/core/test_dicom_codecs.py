"""Compressed transfer syntaxes and enhanced (multi-frame) CT, made from copies of the real GE slices."""

from __future__ import annotations

import io
import shutil
import types

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless,
                         generate_uid)

from ctseg_core.errors import UnsupportedTransferSyntaxError
from ctseg_core.io.dicom import load_dicom_series

N_SLICES = 5  # the first five GE slices: 4 mm apart, tilted 18.5 degrees (so the shear path runs too)
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


@pytest.fixture(scope="module")
def plain(ge_tilt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    for f in sorted(ge_tilt.glob("*.dcm"))[:N_SLICES]:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def reference(plain):
    return load_dicom_series(plain)


def compressed_copy(plain, folder, syntax):
    folder.mkdir()
    for f in sorted(plain.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.compress(syntax)
        ds.save_as(folder / f.name)
    return folder


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda u: u.name)
def test_lossless_syntaxes_load_to_the_same_hu(plain, reference, tmp_path, syntax):
    folder = compressed_copy(plain, tmp_path / "c", syntax)
    assert pydicom.dcmread(folder / "01.dcm").file_meta.TransferSyntaxUID == syntax
    v = load_dicom_series(folder)
    assert v.geometry.matches(reference.geometry)
    assert np.array_equal(v.array, reference.array)
    assert not any("lossy" in n for n in v.meta.notes)


def test_jpeg_lossless_sv1_through_gdcm(plain, reference, tmp_path):
    """JPEG Lossless, first-order prediction (common in CT archives); pydicom has no encoder, gdcm has."""
    import gdcm

    folder = tmp_path / "jl"
    folder.mkdir()
    for f in sorted(plain.glob("*.dcm")):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(f))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(folder / f.name))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
    assert pydicom.dcmread(folder / "01.dcm").file_meta.TransferSyntaxUID == JPEGLosslessSV1
    v = load_dicom_series(folder)
    assert np.array_equal(v.array, reference.array)


@pytest.mark.parametrize("syntax", [DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=lambda u: u.name)
def test_other_uncompressed_syntaxes_load_to_the_same_hu(plain, reference, tmp_path, syntax):
    folder = tmp_path / "u"
    folder.mkdir()
    for f in sorted(plain.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(folder / f.name)
    v = load_dicom_series(folder)
    assert v.meta.extra["transfer_syntax_uid"] == syntax
    assert np.array_equal(v.array, reference.array)


def test_jpeg_baseline_lossy_from_8_bit_data(plain, tmp_path):
    folder = tmp_path / "jpeg"
    folder.mkdir()
    from PIL import Image

    expected = []
    for f in sorted(plain.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array.astype(np.float32)
        hu[ds.pixel_array == ds.PixelPaddingValue] = -1024
        v8 = np.clip(np.round((hu + 1024) / 10), 0, 255).astype(np.uint8)  # HU = 10 * v8 - 1024
        buf = io.BytesIO()
        Image.fromarray(v8, mode="L").save(buf, format="JPEG", quality=95)
        del ds.PixelPaddingValue
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.RescaleSlope, ds.RescaleIntercept = 10, -1024
        ds.LossyImageCompression = "01"
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.save_as(folder / f.name)
        expected.append(v8.astype(np.float32) * 10 - 1024)
    v = load_dicom_series(folder)
    assert "JPEG Baseline" in " ".join(v.meta.notes) and "approximate" in " ".join(v.meta.notes)
    # reference: the same 8-bit values stored uncompressed, through the same shear correction
    ref_folder = tmp_path / "ref8"
    ref_folder.mkdir()
    for f, hu8 in zip(sorted(folder.glob("*.dcm")), expected):
        ds = pydicom.dcmread(f)
        ds.PixelData = ((hu8 + 1024) / 10).astype(np.uint8).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds["PixelData"].VR = "OB"
        ds.save_as(ref_folder / f.name, enforce_file_format=True)
    ref = load_dicom_series(ref_folder)
    diff = np.abs(v.array - ref.array)
    assert v.shape == ref.shape
    assert diff.mean() < 10 and np.percentile(diff, 99) < 80  # a few grey levels of 10 HU


def make_enhanced(plain, path, syntax=None, frame_order=(2, 0, 4, 1, 3)):
    """One Enhanced CT Image object holding the slices as frames (shuffled), with per-frame positions
    and per-frame rescale intercepts (stored values shifted to match)."""
    sources = [pydicom.dcmread(f) for f in sorted(plain.glob("*.dcm"))]
    first = sources[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ENHANCED_CT
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "Modality", "Rows", "Columns",
               "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
               "PixelRepresentation"):
        setattr(ds, kw, getattr(first, kw))
    ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(frame_order)
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = first.ImageOrientationPatient
    measures.PixelSpacing, measures.SliceThickness = first.PixelSpacing, first.SliceThickness
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orient]), Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, per_frame = [], []
    for i, k in enumerate(frame_order):
        src = sources[k]
        item, pos, value = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = src.ImagePositionPatient
        value.RescaleIntercept, value.RescaleSlope, value.RescaleType = -100 * i, 1, "HU"
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([pos]), Sequence([value])
        per_frame.append(item)
        frames.append((src.pixel_array.astype(np.int32) + 100 * i).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).tobytes()
    if syntax is not None:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def reference_without_padding(plain, tmp_path_factory):
    """The single-frame slices without PixelPaddingValue (the enhanced object shifts stored values)."""
    folder = tmp_path_factory.mktemp("nopad")
    for f in sorted(plain.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        del ds.PixelPaddingValue
        ds.save_as(folder / f.name)
    return load_dicom_series(folder)


@pytest.mark.parametrize("syntax", [None, RLELossless], ids=["uncompressed", "RLE"])
def test_enhanced_multiframe_ct_matches_single_frame_slices(plain, reference_without_padding, tmp_path, syntax):
    folder = tmp_path / "mf"
    folder.mkdir()
    make_enhanced(plain, folder / "enhanced.dcm", syntax)
    ref = reference_without_padding
    v = load_dicom_series(folder)
    assert v.geometry.matches(ref.geometry)
    assert np.array_equal(v.array, ref.array)
    assert v.meta.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)
    assert v.meta.extra["source_frames"] == [2, 4, 1, 5, 3]  # frames in position order
    assert v.meta.extra["sop_class_uid"] == ENHANCED_CT


@pytest.mark.filterwarnings("ignore:End of file reached")  # pydicom's own, while reading the cut file
def test_undecodable_compressed_slice_is_skipped_by_name(plain, tmp_path):
    folder = compressed_copy(plain, tmp_path / "c", JPEG2000Lossless)
    data = (folder / "05.dcm").read_bytes()
    (folder / "05.dcm").write_bytes(data[: len(data) // 2])  # codestream cut: only decoding can tell
    with pytest.warns(UserWarning, match="05.dcm.*could not be decoded"):
        v = load_dicom_series(folder)
    assert v.meta.extra["source_shape"][0] == N_SLICES - 1
    assert any(n.startswith("skipped 05.dcm: pixel data could not be decoded") for n in v.meta.notes)


def test_unknown_transfer_syntax_names_the_file(plain, tmp_path):
    folder = compressed_copy(plain, tmp_path / "c", RLELossless)
    ds = pydicom.dcmread(folder / "03.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no image decoder
    ds.save_as(folder / "03.dcm")
    with pytest.raises(UnsupportedTransferSyntaxError, match="03.dcm.*MPEG2"):
        load_dicom_series(folder)


def test_missing_plugin_says_what_to_install(plain, tmp_path, monkeypatch):
    folder = compressed_copy(plain, tmp_path / "c", JPEG2000Lossless)
    fake = types.SimpleNamespace(is_available=False, missing_dependencies=["pylibjpeg-openjpeg>=2.0"])
    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: fake)
    with pytest.raises(UnsupportedTransferSyntaxError) as err:
        load_dicom_series(folder)
    message = str(err.value)
    assert ".dcm" in message and "JPEG 2000" in message and "pip install" in message and "openjpeg" in message
