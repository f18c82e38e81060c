"""The PACS pieces that need no network: settings file, inbox filing rules, series completion, outbox
persistence and back-off (against a port where nothing listens)."""

from __future__ import annotations

import copy
import io
import time

import pydicom
import pytest

from ctseg_core.errors import PacsError
from ctseg_core.pacs.config import LocalNode, Node, PacsConfig, load_config, save_config
from ctseg_core.pacs.inbox import Inbox
from ctseg_core.pacs.outbox import MAX_ATTEMPTS, Outbox, backoff_s, send_item


def dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ge_first(ge_tilt):
    return pydicom.dcmread(sorted(ge_tilt.glob("*.dcm"))[0])


def test_settings_round_trip_through_toml(tmp_path):
    cfg = PacsConfig(local=LocalNode("CTSEG_1", "127.0.0.1", 11113, settle_s=2.5, segment=False),
                     nodes={"pacs": Node("pacs", "ORTHANC", "pacs.example.org", 4242, tls=True),
                            "ws2": Node("ws2", "WS2", "10.0.0.2", 104)},
                     query_node="pacs", send_node="ws2", retrieve="get", send_on_approval=False, include_sr=False)
    path = save_config(cfg, tmp_path / "pacs.toml")
    back = load_config(path)
    assert back == cfg
    assert load_config(tmp_path / "missing.toml") == PacsConfig()  # defaults when there is no file


@pytest.mark.parametrize("text, problem", [
    ('[local]\nport = 70000\n', "outside 1..65535"),
    ('[local]\nae_title = "WAY_TOO_LONG_AE_TITLE"\n', "not a DICOM AE title"),
    ('[query]\nnode = "nowhere"\n', "not among the configured nodes"),
    ('[local]\nprot = 1\n', "unknown setting"),
    ('[local\n', "not valid TOML"),
    ('[query]\nretrieve = "fax"\n', "retrieve must be one of"),
])
def test_bad_settings_are_refused_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "pacs.toml"
    path.write_text(text)
    with pytest.raises(PacsError, match=problem) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_inbox_files_ct_by_study_and_series_and_keeps_the_rest_aside(tmp_path, ge_first):
    inbox = Inbox(tmp_path)
    got = inbox.file_instance(dicom_bytes(ge_first), "SCANNER")
    assert got.entry is not None and got.path == (tmp_path / "inbox" / ge_first.StudyInstanceUID
                                                   / ge_first.SeriesInstanceUID / f"{ge_first.SOPInstanceUID}.dcm")
    assert pydicom.dcmread(got.path).SOPInstanceUID == ge_first.SOPInstanceUID
    again = inbox.file_instance(dicom_bytes(ge_first), "SCANNER")  # a re-sent instance is not counted twice
    assert again.entry.instances == 1 and again.entry.state == "receiving"

    mr = copy.deepcopy(ge_first)
    mr.Modality = "MR"
    not_ct = inbox.file_instance(dicom_bytes(mr), "SCANNER")
    no_pixels = copy.deepcopy(ge_first)
    del no_pixels.PixelData
    bad_uid = copy.deepcopy(ge_first)
    bad_uid.SeriesInstanceUID = "../../etc"
    truncated = dicom_bytes(ge_first)[:400] + b"\xff" * 64
    results = [not_ct, inbox.file_instance(dicom_bytes(no_pixels)), inbox.file_instance(dicom_bytes(bad_uid)),
               inbox.file_instance(truncated), inbox.file_instance(b"not DICOM at all" * 20)]
    assert [r.entry for r in results] == [None] * 5
    assert [r.malformed for r in results] == [False, True, True, True, True]
    notes = [n for _, n in inbox.set_aside_notes()]
    assert len(notes) == 5 and all(p.is_file() for p, _ in inbox.set_aside_notes())
    assert any("not CT (modality MR" in n for n in notes)
    assert any("without pixel data" in n for n in notes)
    assert any("series UID missing or invalid" in n for n in notes)
    assert any("could not be decoded" in n for n in notes)
    assert not (tmp_path / "etc").exists()
    assert [e.series_uid for e in inbox.entries()] == [ge_first.SeriesInstanceUID]


def test_a_series_is_complete_after_the_settle_time(tmp_path, ge_tilt):
    from ctseg_core.pacs.receiver import Listener

    cfg = PacsConfig(local=LocalNode(settle_s=5.0))
    queued = []
    listener = Listener(tmp_path, cfg, on_complete=queued.append)
    files = sorted(ge_tilt.glob("*.dcm"))[:3]
    t0 = time.monotonic()
    for f in files:  # as the SCP's handler files them
        received = listener.inbox.file_instance(f.read_bytes(), "SCANNER")
        listener._last_seen[received.entry.key] = t0
    assert listener.check_complete(now=t0 + 4.9) == [] and queued == []
    done = listener.check_complete(now=t0 + 5.0)
    assert [e.state for e in done] == ["queued"] and done[0].instances == 3 and queued == done
    assert listener.inbox.entries()[0].state == "queued"
    assert listener.check_complete(now=t0 + 60) == []  # queued once


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff_s(50) == 600


def _outbox_item(tmp_path, ge_tilt):
    outbox = Outbox(tmp_path)
    src = sorted(ge_tilt.glob("*.dcm"))[0]
    item = outbox.add("case-1", "down", lambda folder: [_copy(src, folder / "seg.dcm")], "test")
    return outbox, item


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_unreachable_destination_is_retried_with_backoff_and_the_item_survives(tmp_path, ge_tilt):
    from ctseg_core.pacs.sender import store_files
    from orthanc_server import free_port

    cfg = PacsConfig(nodes={"down": Node("down", "NOBODY", "127.0.0.1", free_port())}, send_node="down").check()
    outbox, item = _outbox_item(tmp_path, ge_tilt)
    assert outbox.due() == [item]
    t0 = time.time()
    item = send_item(outbox, item, cfg)
    assert item.state == "pending" and item.attempts == 1 and "could not be reached" in item.last_error
    assert t0 + backoff_s(1) - 1 <= item.next_try <= time.time() + backoff_s(1)
    assert outbox.due() == []  # not before its next try
    reopened = Outbox(tmp_path).get(item.id)  # what a restarted app finds
    assert reopened == item and (outbox.folder(item) / "seg.dcm").is_file()
    assert "retrying in" in reopened.status_text()
    item = outbox.retry_now(item.id)
    assert outbox.due() == [item]
    item.attempts = MAX_ATTEMPTS - 1
    outbox.update(item)
    item = send_item(outbox, item, cfg, store=store_files)
    assert item.state == "failed" and item.attempts == MAX_ATTEMPTS


def test_a_refusing_destination_fails_without_retry(tmp_path, ge_tilt):
    outbox, item = _outbox_item(tmp_path, ge_tilt)
    cfg = PacsConfig(nodes={"down": Node("down", "X", "127.0.0.1", 1)}).check()

    def refuse(node, config, paths):
        raise PacsError("C-STORE of seg.dcm: refused with status 0xA900")

    item = send_item(outbox, item, cfg, store=refuse)
    assert item.state == "failed" and "0xA900" in item.last_error and outbox.due() == []


def test_an_item_is_never_half_queued(tmp_path):
    outbox = Outbox(tmp_path)

    def fail(folder):
        (folder / "seg.dcm").write_bytes(b"x")
        raise PacsError("the SEG could not be written")

    with pytest.raises(PacsError):
        outbox.add("case-1", "pacs", fail)
    assert outbox.items() == [] and list(outbox.root.iterdir()) == []


def test_a_series_segmented_in_the_background_records_the_model_the_app_compares(tmp_path):
    """The app does not run the model again on a case whose stored prediction comes from the same model
    (weights and post-processing): the background segmenter stores that identity and the uncertainty."""
    import numpy as np

    from ctseg_core.io.images import write_volume
    from ctseg_core.model_identity import ModelIdentity
    from ctseg_core.pacs.segmenter import SeriesSegmenter
    from ctseg_core.store import Workspace
    from ctseg_core.volume import Volume
    from tiny_models import save_tiny_checkpoint, tiny_predictor

    arr = np.full((4, 64, 64), 30.0, np.float32)
    write_volume(Volume.from_array(arr, spacing=(5.0, 1.0, 1.0)), tmp_path / "scan.nii.gz")
    predictor = tiny_predictor()
    segmenter = SeriesSegmenter(tmp_path / "ws", model=save_tiny_checkpoint(tmp_path),
                                predictor_factory=lambda path: predictor)
    case = Workspace(tmp_path / "ws").case(segmenter(tmp_path / "scan.nii.gz"))
    assert case.prediction_model() == ModelIdentity.of_predictor(predictor)
    assert case.prediction_model().same_model(ModelIdentity.of_predictor(predictor))
    unc = case.load_uncertainty()
    assert unc is not None and unc.shape == (4, 64, 64) and 0.0 <= unc.min() <= unc.max() <= 1.0


def test_a_triage_model_in_the_background_stores_the_scan_probability_for_the_worklist(tmp_path):
    """A received series segmented by a triage model (a tiny RADnet): its per-slice probabilities and the
    scan's call are stored with the case, as the app stores them, so the case list can sort by them."""
    import numpy as np
    import torch

    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.io.images import read_volume, write_volume
    from ctseg_core.models import create_model
    from ctseg_core.pacs.segmenter import SeriesSegmenter
    from ctseg_core.predictor import Predictor
    from ctseg_core.preprocess import Plan
    from ctseg_core.store import Workspace
    from ctseg_core.triage import Triage
    from ctseg_core.volume import Volume
    from tiny_models import save_tiny_checkpoint, tiny_config

    rng = np.random.default_rng(0)
    write_volume(Volume.from_array(rng.normal(30, 20, (5, 64, 64)).astype(np.float32), spacing=(5.0, 1.0, 1.0)),
                 tmp_path / "scan.nii.gz")
    torch.manual_seed(0)
    radnet = create_model("radnet", **tiny_config("radnet"))
    predictor = Predictor(radnet, ModelCard.for_model(radnet, plan=Plan(spacing_mm=None).to_dict()), device="cpu")
    segmenter = SeriesSegmenter(tmp_path / "ws", model=save_tiny_checkpoint(tmp_path),
                                predictor_factory=lambda path: predictor)
    case = Workspace(tmp_path / "ws").case(segmenter(tmp_path / "scan.nii.gz"))
    expected = predictor.predict(read_volume(tmp_path / "scan.nii.gz")).slice_probabilities
    stored = case.load_triage()
    assert stored is not None and np.allclose(stored, expected, atol=1e-4)
    assert case.record.triage["probability"] == round(Triage(expected).probability, 4)
    assert case.record.triage["model_version"].startswith("radnet v")
    assert not case.load_prediction().array.any()  # no outlines
