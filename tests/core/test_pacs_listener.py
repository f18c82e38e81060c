"""``ctseg listen`` as a user runs it (a separate process), fed by pynetdicom's own SCU: the real GE
series, a non-CT instance and a malformed one. The series is filed, found complete after the settle
time and segmented in the background (its case "new, segmented"); the other two are kept aside with a
note; the listener keeps answering. Also: the listener over TLS (certificates made with openssl)."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from orthanc_server import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 180


def scu(port: int, contexts, called: str = "CTSEG", tls_args=None):
    from pynetdicom import AE

    from pydicom.uid import ExplicitVRLittleEndian

    ae = AE(ae_title="TESTSCU")
    for cx in contexts:
        ae.add_requested_context(cx)
    ae.add_requested_context(contexts[0], ExplicitVRLittleEndian)  # for a file sent as it is (the malformed one)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args)
    assert assoc.is_established, "the listener did not accept the association"
    return assoc


def wait_until_listening(port: int, proc, timeout: float = 90) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ctseg listen exited: {proc.stderr.read().decode(errors='replace')[-2000:]}"
        assoc = ae.associate("127.0.0.1", port, ae_title="CTSEG")
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            assert status.Status == 0
            return
        time.sleep(0.3)
    raise AssertionError("ctseg listen did not start listening")


def malformed_file(src: Path, out: Path) -> Path:
    """Valid preamble and file meta (CT Image Storage), then a data set whose first element claims more
    bytes than there are."""
    ds = pydicom.dcmread(src)
    head = ds.file_meta
    tmp = pydicom.Dataset()
    tmp.file_meta = head
    tmp.preamble = b"\0" * 128
    tmp.save_as(out, enforce_file_format=True)
    with open(out, "ab") as f:
        f.write(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")  # a good element, then a broken one
        f.write(b"\x08\x00\x16\x00UI\xf0\xff" + b"1.2.3\0" * 3)
    return out


def test_ctseg_listen_files_segments_and_sets_aside(tmp_path, ge_tilt):
    from pynetdicom import _config
    from pynetdicom.sop_class import CTImageStorage, Verification

    from ctseg_core.pacs.inbox import Inbox
    from ctseg_core.store import Workspace
    from tiny_models import save_tiny_checkpoint

    root, port = tmp_path / "ws", free_port()
    checkpoint = save_tiny_checkpoint(tmp_path, spacing_mm=2.0)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "ctseg_core", "listen", "--workspace", str(root), "--ae-title",
                             "CTSEG", "--host", "127.0.0.1", "--port", str(port), "--settle", "3", "--model",
                             str(checkpoint), "--device", "cpu"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        wait_until_listening(port, proc)
        files = sorted(ge_tilt.glob("*.dcm"))
        series = [pydicom.dcmread(f) for f in files]
        non_ct = copy.deepcopy(series[0])
        non_ct.SOPClassUID = non_ct.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        non_ct.SOPInstanceUID = non_ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        non_ct.Modality = "OT"
        bad = malformed_file(files[0], tmp_path / "malformed.dcm")

        assoc = scu(port, [CTImageStorage, SecondaryCaptureImageStorage, Verification])
        statuses = [int(assoc.send_c_store(ds).Status) for ds in series]
        statuses.append(int(assoc.send_c_store(non_ct).Status))
        _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are (no re-encoding)
        try:
            statuses.append(int(assoc.send_c_store(bad).Status))
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = False
        assert int(assoc.send_c_echo().Status) == 0  # still answering on the same association
        assoc.release()
        t_last = time.monotonic()
        assert statuses == [0] * len(series) + [0x0000, 0xC210]

        inbox = Inbox(root)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            entries = inbox.entries()
            if entries and entries[0].state in ("segmented", "failed"):
                break
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
            time.sleep(0.2)
        (entry,) = inbox.entries()
        assert entry.state == "segmented", entry.error
        assert entry.instances == len(series) and entry.calling_ae == "TESTSCU"
        assert [h["state"] for h in entry.history] == ["receiving", "queued", "segmenting", "segmented"]
        assert time.monotonic() - t_last >= 3  # queued only after the settle time
        case = Workspace(root).case(entry.case_id)
        assert case.record.status == "new" and case.record.prediction_saved
        assert case.record.source.n_files == len(series)
        assert case.record.description == "REMOVED HEAD / series 2"  # patient, study, series (not a UID)
        assert case.load_prediction(case.load_volume()) is not None

        notes = inbox.set_aside_notes()
        assert len(notes) == 2 and all(path.is_file() for path, _ in notes)
        text = "\n".join(n for _, n in notes)
        assert "not CT (modality OT" in text and "malformed" in text and "TESTSCU" in text

        wait_until_listening(port, proc, timeout=10)  # a new association is still accepted
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0


def _certificate(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_listener_and_sender_over_tls(tmp_path, ge_tilt):
    from ctseg_core.errors import PacsError
    from ctseg_core.pacs.config import LocalNode, Node, PacsConfig, TlsFiles
    from ctseg_core.pacs.receiver import Listener
    from ctseg_core.pacs.sender import store_files

    cert, key = _certificate(tmp_path)
    port = free_port()
    tls = TlsFiles(str(cert), str(key), str(cert))  # self-signed: it is its own CA; client certificates required
    server_cfg = PacsConfig(local=LocalNode("CTSEG", "127.0.0.1", port, settle_s=60), tls=tls, listener_tls=True)
    client_cfg = PacsConfig(local=LocalNode("SENDER"), tls=tls,
                            nodes={"ctseg": Node("ctseg", "CTSEG", "127.0.0.1", port, tls=True)}).check()
    listener = Listener(tmp_path / "ws", server_cfg.check()).start()
    try:
        files = sorted(ge_tilt.glob("*.dcm"))[:2]
        assert store_files(client_cfg.nodes["ctseg"], client_cfg, files) == [0, 0]
        assert listener.inbox.entries()[0].instances == 2
        plain = PacsConfig(local=LocalNode("SENDER"), nodes={"ctseg": Node("ctseg", "CTSEG", "127.0.0.1", port)})
        with pytest.raises(PacsError):  # without TLS the listener does not talk
            store_files(plain.nodes["ctseg"], plain, files[:1])
        assert listener.inbox.entries()[0].instances == 2
    finally:
        listener.stop()
