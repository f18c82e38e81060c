"""The DICOM exchange with a real PACS (Orthanc, started here on loopback ports; skipped where it is not
installed): the real GE series stored into Orthanc, found (C-FIND), pulled into ctseg (C-MOVE to ctseg's
listener, and C-GET), segmented in the background with a tiny model, approved, its DICOM SEG and SR sent
back through the outbox, and read from Orthanc again (REST, independent of ctseg's DICOM code) and checked
with highdicom."""

from __future__ import annotations

import io
import time

import numpy as np
import pydicom
import pytest

from orthanc_server import OrthancServer, free_port, orthanc_unavailable

pytestmark = pytest.mark.skipif(bool(orthanc_unavailable()), reason=orthanc_unavailable() or "ok")

GE_PATIENT_ID = "QMNx85rKkkg"
WAIT_S = 120


@pytest.fixture(scope="module")
def ctseg_port():
    return free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, ctseg_port):
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"), {"ctseg": ("CTSEG", "127.0.0.1", ctseg_port)})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def config(orthanc, ctseg_port):
    from ctseg_core.pacs.config import LocalNode, Node, PacsConfig

    return PacsConfig(local=LocalNode("CTSEG", "127.0.0.1", ctseg_port, settle_s=30.0),
                      nodes={"pacs": Node("pacs", "ORTHANC", "127.0.0.1", orthanc.dicom_port)},
                      query_node="pacs", send_node="pacs").check()


@pytest.fixture(scope="module")
def ge_in_orthanc(orthanc, config, ge_tilt):
    """The real GE series stored into Orthanc with ctseg's C-STORE SCU."""
    from ctseg_core.pacs.sender import store_files

    files = sorted(ge_tilt.glob("*.dcm"))
    statuses = store_files(config.nodes["pacs"], config, files)
    assert statuses == [0] * len(files)
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def wait_for(condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_find_move_segment_send_back_and_read_from_orthanc(tmp_path, orthanc, config, ge_in_orthanc):
    import highdicom as hd

    from ctseg_core.io.seg import SourceGrid, labels_on_source_grid
    from ctseg_core.pacs.query import find_series, find_studies
    from ctseg_core.pacs.segmenter import SeriesSegmenter
    from ctseg_core.pacs.service import PacsService
    from ctseg_core.predictor import Predictor
    from ctseg_core.store import Workspace
    from tiny_models import save_tiny_checkpoint

    ge = ge_in_orthanc
    studies = find_studies(config, patient_id=GE_PATIENT_ID)
    assert [s.study_uid for s in studies] == [ge[0].StudyInstanceUID]
    assert "CT" in studies[0].modalities and studies[0].n_instances == str(len(ge))
    assert find_studies(config, patient_id="nobody-has-this-id") == []
    series = find_series(config, studies[0].study_uid)
    assert [(s.series_uid, s.modality, s.n_instances) for s in series] == [(ge[0].SeriesInstanceUID, "CT", str(len(ge)))]

    root = tmp_path / "ws"
    checkpoint = save_tiny_checkpoint(tmp_path, spacing_mm=2.0)  # the tiny model at 2 mm: seconds per series
    segmenter = SeriesSegmenter(root, model=checkpoint,
                                predictor_factory=lambda p: Predictor.from_checkpoint(p, device="cpu", guard=None))
    service = PacsService(root, config, segment=segmenter, outbox_poll_s=0.2).start()
    try:
        progress = []
        result = service.retrieve(studies[0].study_uid, progress=lambda d, n, m: progress.append((d, n)))
        assert (result.completed, result.failed) == (len(ge), 0)
        assert progress[-1] == (len(ge), len(ge)) and len(progress) >= 2
        # the C-MOVE's end completes the series at once (the settle time, 30 s here, is not waited for)
        entry = wait_for(lambda: next((e for e in service.inbox.entries() if e.state in ("segmented", "failed")),
                                      None), "the background segmentation")
        assert entry.state == "segmented", entry.error
        assert entry.instances == len(ge) and entry.calling_ae == "ORTHANC"
        files = sorted(service.inbox.series_dir(entry).glob("*.dcm"))
        assert sorted(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files) == \
            sorted(d.SOPInstanceUID for d in ge)

        ws = Workspace(root)
        case = ws.case(entry.case_id)
        assert case.record.status == "new" and case.record.prediction_saved  # "new, segmented"
        volume = case.load_volume()
        prediction = case.load_prediction(volume)
        assert prediction is not None and prediction.array.any()

        case.set_status("approved", "dr_test")
        from ctseg_core.pacs.outbox import queue_case

        item = queue_case(root, case.id, config)
        assert item.files == ["seg.dcm", "sr.dcm"]
        service.sender.wake()
        sent = wait_for(lambda: (lambda i: i if i.state in ("sent", "failed") else None)(service.outbox.get(item.id)),
                        "the outbox to send")
        assert sent.state == "sent", sent.last_error
    finally:
        service.stop()

    # read the SEG back from Orthanc (REST) and check it with highdicom against the stored prediction
    seg_ids = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"Modality": "SEG"}})
    sr_ids = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}})
    assert len(seg_ids) == 1 and len(sr_ids) == 1
    seg = hd.seg.segread(io.BytesIO(orthanc.instance_file(seg_ids[0])))
    assert seg.StudyInstanceUID == ge[0].StudyInstanceUID
    assert {uid for _, _, uid in seg.get_source_image_uids()} == {d.SOPInstanceUID for d in ge}
    grid = SourceGrid(volume.meta.extra)
    expected = labels_on_source_grid(prediction, grid)
    present = [int(c) for c in np.unique(expected) if c]
    from ctseg_core.labels import CLASSES

    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == \
        [CLASSES[c].name for c in present]
    got = seg.get_pixels_by_source_instance(grid.uids, combine_segments=True, relabel=False,
                                            ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
    to_class = np.zeros(max(seg.segment_numbers) + 1, np.uint8)
    to_class[seg.segment_numbers] = present
    assert np.array_equal(to_class[got], expected)
    sr = hd.sr.srread(io.BytesIO(orthanc.instance_file(sr_ids[0])))
    evidence = {str(s.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                for study in sr.CurrentRequestedProcedureEvidenceSequence for s in study.ReferencedSeriesSequence}
    assert str(seg.SOPInstanceUID) in evidence


def test_c_get_files_the_study_into_the_inbox_and_queues_it(tmp_path, config, ge_in_orthanc):
    from ctseg_core.pacs.query import retrieve

    root = tmp_path / "ws"
    progress = []
    result = retrieve(config, ge_in_orthanc[0].StudyInstanceUID, ge_in_orthanc[0].SeriesInstanceUID,
                      workspace_root=root, mode="get", progress=lambda d, n, m: progress.append(d))
    assert (result.completed, result.failed) == (len(ge_in_orthanc), 0)
    assert [(e.state, e.instances) for e in result.series] == [("queued", len(ge_in_orthanc))]
    assert progress[-1] == len(ge_in_orthanc)


def test_outbox_retries_until_the_destination_is_up(tmp_path, orthanc, config, ge_tilt, ge_in_orthanc):
    """A destination that is down: the item waits (back-off); once it is reachable, a retry sends it."""
    from ctseg_core.pacs.config import Node, PacsConfig
    from ctseg_core.pacs.outbox import Outbox, send_item

    down = PacsConfig(local=config.local, nodes={"pacs": Node("pacs", "ORTHANC", "127.0.0.1", free_port())},
                      send_node="pacs").check()
    outbox = Outbox(tmp_path / "ws")
    src = sorted(ge_tilt.glob("*.dcm"))[0]
    item = outbox.add("case-x", "pacs", lambda folder: [_copy(src, folder / "one.dcm")])
    item = send_item(outbox, item, down)
    assert item.state == "pending" and item.attempts == 1 and item.next_try > time.time()
    item = send_item(Outbox(tmp_path / "ws"), Outbox(tmp_path / "ws").retry_now(item.id), config)  # up again
    assert item.state == "sent" and item.attempts == 1
    assert [h["state"] for h in item.history] == ["pending", "sending", "pending", "pending", "sending", "sent"]


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst
