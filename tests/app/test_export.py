"""File > Export from the app: a DICOM SEG of the real GE series that highdicom reads back, NIfTI and the
findings (1-based slices, confidence, review state), written through the menu with a chosen destination."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gui_helpers import open_and_wait
from ctseg_core.io.images import read_labels


def _menu_action(win, text):
    return next(a for a in win.exporter.menu.actions() if a.text().startswith(text))


def _export_via_menu(qtbot, win, monkeypatch, text, path):
    monkeypatch.setattr(win, "ask_save_path", lambda title, suggested, filt: str(path))
    action = _menu_action(win, text)
    assert action.isEnabled()
    with qtbot.waitSignal(win.exporter.exported, timeout=60000) as done:
        action.trigger()
    return done.args


def test_export_menu_writes_a_dicom_seg_that_highdicom_reads(qtbot, window, ge_tilt, tmp_path, monkeypatch):
    import highdicom as hd

    assert open_and_wait(qtbot, window, ge_tilt) == "no model"
    s = window.session
    s.final.array[10:14, 250:300, 200:260] = 2  # an SDH drawn by the annotator on slices 11-14
    s.notify_labels_edited((10, 14, 250, 300, 200, 260))
    out = tmp_path / "ge.seg.dcm"
    assert _export_via_menu(qtbot, window, monkeypatch, "Labels as DICOM SEG", out) == ["dicom-seg", str(out)]
    seg = hd.seg.segread(out)
    assert seg.SeriesDescription.startswith("ctseg")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == s.volume.meta.series_uid
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Acute subdural hematoma (SDH)"]
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"  # no model drew anything here
    from ctseg_core.io.seg import read_dicom_seg

    assert seg.pixel_array.any() and {f.ReferencedSOPInstanceUID for f in seg.ReferencedSeriesSequence[0]
                                      .ReferencedInstanceSequence} <= set(s.volume.meta.extra["sop_instance_uids"])
    back = read_dicom_seg(out, s.volume)  # the source slices (4-7 mm) mapped back onto the 37 resampled ones
    assert (back.array[10:14, 250:300, 200:260] == 2).mean() > 0.9
    z = np.flatnonzero((back.array == 2).any(axis=(1, 2)))
    assert z.min() >= 8 and z.max() <= 15 and set(np.unique(back.array)) == {0, 2}
    assert any("Exported the corrected labels as DICOM SEG" in t for t in window.log_panel.text_lines())

    out_nii = tmp_path / "ge.nii.gz"
    _export_via_menu(qtbot, window, monkeypatch, "Labels as NIfTI", out_nii)
    assert np.array_equal(read_labels(out_nii, like=s.volume).array, s.final.array)

    out_csv = tmp_path / "ge.csv"
    _export_via_menu(qtbot, window, monkeypatch, "Findings as CSV", out_csv)
    rows = {r["key"]: r for r in csv.DictReader(open(out_csv))}
    assert rows["sdh"]["slices"] == "11-14" and rows["sdh"]["origin"] == "person"
    assert rows["sdh"]["review"] == "not reviewed" and rows["sdh"]["model_mean_probability"] == ""


def test_export_findings_json_carries_the_model_confidence(qtbot, window, tmp_path, monkeypatch):
    from gui_helpers import ThresholdPredictor, phantom_volume
    from ctseg_core.io.images import write_volume

    write_volume(phantom_volume(), tmp_path / "p.nii.gz")
    with qtbot.waitSignal(window.inference.model_loaded, timeout=30000):
        window.load_predictor(ThresholdPredictor())
    assert open_and_wait(qtbot, window, tmp_path / "p.nii.gz") == "inferred"
    assert not _menu_action(window, "Labels as DICOM SEG").isEnabled()  # not a DICOM scan: NIfTI instead
    out = tmp_path / "f.json"
    _export_via_menu(qtbot, window, monkeypatch, "Findings as JSON", out)
    data = json.loads(out.read_text())
    ich = data["classes"][0]
    assert data["model"].startswith("stub-threshold v0") and data["review"] == "not reviewed"
    assert ich["slices"] == [4, 5, 6, 7, 8, 9] and ich["origin"] == "model"
    assert ich["confidence"]["mean_probability"] == pytest.approx(0.7, abs=0.01)


def test_an_export_that_cannot_be_written_is_an_error_dialog(qtbot, window, tmp_path, monkeypatch):
    from gui_helpers import phantom_volume
    from ctseg_core.io.images import write_volume

    write_volume(phantom_volume(), tmp_path / "p.nii.gz")
    assert open_and_wait(qtbot, window, tmp_path / "p.nii.gz") == "no model"
    folder = tmp_path / "a_folder"
    folder.mkdir()
    monkeypatch.setattr(window, "ask_save_path", lambda *a: str(folder))
    with qtbot.waitSignal(window.exporter.failed, timeout=30000) as failed:
        _menu_action(window, "Findings as CSV").trigger()
    assert failed.args[0] == "csv" and "folder" in window.error_boxes[-1].text()
    assert not window.exporter.busy and _menu_action(window, "Findings as CSV").isEnabled()
