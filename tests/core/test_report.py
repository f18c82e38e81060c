"""The DICOM SR round trip (every value read back with highdicom), the one-page report and ``ctseg report``."""

import base64
import json
import re

import pytest

from ctseg_core.cli import main
from ctseg_core.io.sr import read_dicom_sr, write_dicom_sr
from ctseg_core.measure import measure_scan
from ctseg_core.synth import generate_case, write_case


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """A generated DICOM series with an ICH, an SDH and IVH, a 6 mm midline shift, and its labels."""
    from ctseg_core.io import load_volume
    from ctseg_core.io.images import read_labels

    out = tmp_path_factory.mktemp("case")
    case = generate_case(5, shape_yx=(192, 192), lesion_classes=[1, 2, 7], midline_shift_mm=6.0)
    paths = write_case(case, out, fmt="dicom")
    volume = load_volume(paths["ct"])
    labels = read_labels(paths["labels"], like=volume)
    return case, paths, volume, labels, measure_scan(volume, labels)


def truth_side(case) -> str:
    """The side the generator pushed the midline to (its signed truth: positive = the patient's left)."""
    return "left" if case.params["deep_midline_shift_mm"] > 0 else "right"


def test_sr_round_trip_every_value(dicom_case, tmp_path):
    import highdicom as hd
    import pydicom

    from ctseg_core.io.seg import write_dicom_seg

    case, _, volume, labels, m = dicom_case
    seg_path = write_dicom_seg(labels, volume, tmp_path / "seg.dcm", model_version="v7")
    sr_path = write_dicom_sr(m, volume, seg_path, tmp_path / "sr.dcm", model_version="v7")
    sr = hd.sr.srread(sr_path)
    seg = pydicom.dcmread(seg_path)
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == volume.meta.study_uid
    segment_of = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    groups = {g.tracking: g for g in read_dicom_sr(sr_path)}
    present = [c for c in m.findings.classes if c.voxels]
    assert set(groups) == {f"{c.key.upper()} total" for c in present} | \
        {f"{les.key.upper()} {les.number}" for les in m.lesions.lesions} | {"midline shift"}
    for c in present:
        g = groups[f"{c.key.upper()} total"]
        assert g.values == {"volume_ml": pytest.approx(c.volume_ml, abs=5e-4)}
        assert (g.class_key, g.segment_number) == (c.key, segment_of[c.name])
        assert g.referenced_seg == seg.SOPInstanceUID and g.source_series == volume.meta.series_uid
        assert g.algorithm == "ctseg v7"
    for les in m.lesions.lesions:
        g = groups[f"{les.key.upper()} {les.number}"]
        expected = {"volume_ml": les.volume_ml, "diameter_mm": les.diameter_mm}
        if les.abc2 is not None:
            expected["abc2_ml"] = les.abc2.volume_ml
        if les.thickness is not None:
            expected["thickness_mm"] = les.thickness.mm
        assert g.values == {k: pytest.approx(v, abs=5e-4) for k, v in expected.items()}
        assert g.class_key == les.key and g.segment_number == segment_of[les.name]
        assert g.regions == les.regions and g.laterality == les.side
        assert g.referenced_seg == seg.SOPInstanceUID and g.source_series == volume.meta.series_uid
    assert any(les.thickness for les in m.lesions.lesions) and any(les.abc2 for les in m.lesions.lesions)
    mls = groups["midline shift"]
    assert m.midline.found and mls.values == {"midline_shift_mm": pytest.approx(m.midline.shift_mm, abs=5e-4)}
    assert mls.laterality == m.midline.side == truth_side(case)


def test_sr_needs_a_seg(dicom_case, tmp_path):
    from ctseg_core.errors import LoadError

    _, paths, volume, _, m = dicom_case
    not_seg = next(p for p in paths["ct"].iterdir() if p.suffix == ".dcm")
    with pytest.raises(LoadError, match="not a DICOM SEG"):
        write_dicom_sr(m, volume, not_seg, tmp_path / "sr.dcm")


def test_ctseg_report_writes_the_folder(dicom_case, tmp_path, capsys):
    case, paths, volume, _, m = dicom_case
    out = tmp_path / "report"
    assert main(["report", str(paths["ct"]), "--labels", str(paths["labels"]), "-o", str(out),
                 "--model-version", "aa_unet v3"]) == 0
    text = capsys.readouterr().out
    assert "midline shift" in text and "SDH" in text
    page = (out / "report.html").read_text()
    assert page.count("NOT FOR CLINICAL USE") == 2 and "aa_unet v3" in page
    side = truth_side(case)
    assert f"{m.midline.shift_mm:.1f} mm to the patient&#x27;s {side}" in page or \
        f"{m.midline.shift_mm:.1f} mm to the patient's {side}" in page
    for les in m.lesions.lesions:
        assert f"<td>{les.number}</td><td>{les.key.upper()}</td>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 + min(3, len(m.lesions.lesions))
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    data = json.loads((out / "measurements.json").read_text())
    assert data["midline_shift"]["shift_mm"] == pytest.approx(m.midline.shift_mm)
    assert len(data["lesions"]["lesions"]) == len(m.lesions.lesions) and data["model"] == "aa_unet v3"
    assert (out / "lesions.csv").read_text().count("\n") == len(m.lesions.lesions) + 1
    assert {g.tracking for g in read_dicom_sr(out / "sr.dcm")} >= {"midline shift"}


def test_ctseg_report_with_a_prior_and_on_nifti(dicom_case, tmp_path, capsys):
    from ctseg_core.io.images import write_labels, write_volume

    case, paths, _, _, _ = dicom_case
    prior = generate_case(5, shape_yx=(192, 192), lesion_classes=[1, 2, 7], lesion_scale=0.7)
    write_volume(prior.volume, tmp_path / "prior.nii.gz")
    write_labels(prior.labels, tmp_path / "prior_labels.nii.gz")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "prior.nii.gz"), "--labels", str(tmp_path / "prior_labels.nii.gz"),
                 "-o", str(out / "prior")]) == 0
    assert not (out / "prior" / "sr.dcm").exists()  # no DICOM source: no SR (said on stderr)
    assert "no DICOM SR" in capsys.readouterr().err
    assert main(["report", str(paths["ct"]), "--labels", str(paths["labels"]), "-o", str(out / "follow"),
                 "--prior", str(tmp_path / "prior.nii.gz"), "--prior-labels", str(tmp_path / "prior_labels.nii.gz"),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ich = next(c for c in data["growth"]["classes"] if c["key"] == "ich")
    assert ich["follow_up_ml"] > ich["prior_ml"] and ich["expansion"]  # radius x 1/0.7: about 3 times the volume
    assert "Change since the prior scan" in (out / "follow" / "report.html").read_text()


def test_ctseg_report_on_the_real_ge_series_without_labels(ge_tilt, tmp_path, capsys):
    out = tmp_path / "ge"
    assert main(["report", str(ge_tilt), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["midline_shift"]["found"] and data["midline_shift"]["shift_mm"] < 3.0
    assert data["lesions"]["lesions"] == []
    assert "empty label map" in captured.err and "nothing is labelled" in captured.err
    page = (out / "report.html").read_text()
    assert "Midline shift" in page and "No hemorrhage labelled" in page and not (out / "sr.dcm").exists()
