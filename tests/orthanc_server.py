"""A real Orthanc PACS for the DICOM network tests: the Debian package's server started with a test
configuration (loopback HTTP, a free DICOM port, storage in a temporary folder, ctseg's listener declared
as a modality so that C-MOVE can send to it), and stopped at the end.

``orthanc_unavailable()`` says why it cannot run here (tests skip with that reason). Its REST API (on the
loopback port) is used by tests only to check what arrived, independently of ctseg's own DICOM code."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ORTHANC_AET = "ORTHANC"
START_TIMEOUT_S = 30


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (shutil.which("Orthanc", path="/usr/sbin:/usr/bin"))


def orthanc_unavailable() -> str:
    """'' when Orthanc can be started, else why not."""
    if orthanc_binary() is None:
        return ("Orthanc is not installed (Debian package 'orthanc': apt-get install orthanc; .ci/run installs "
                "it when it runs as root)")
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancServer:
    def __init__(self, folder: Path, modalities: dict[str, tuple[str, str, int]]):
        self.folder = Path(folder)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.modalities = modalities
        self.proc: subprocess.Popen | None = None
        self.log_path = self.folder / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict:
        db = self.folder / "db"
        return {
            "Name": "ctseg-test", "StorageDirectory": str(db), "IndexDirectory": str(db), "Plugins": [],
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "OrthancExplorerEnabled": False, "WebDavEnabled": False,
            "DicomServerEnabled": True, "DicomAet": ORTHANC_AET, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True, "DicomAlwaysAllowEcho": True, "UnknownSopClassAccepted": True,
            "DicomModalities": {name: list(m) for name, m in self.modalities.items()},
            "ConcurrentJobs": 1, "SaveJobs": False, "StableAge": 2, "HttpThreadsCount": 4,
            "DicomScuTimeout": 10, "DicomScpTimeout": 30,
        }

    def start(self) -> "OrthancServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        self.proc = subprocess.Popen([orthanc_binary(), str(cfg)], stdout=open(self.log_path, "wb"),
                                     stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start ({self.proc.returncode}): {self.log_tail()}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ---- REST (for checking only) ----
    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data

    def post(self, path: str, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read())

    def instances_of_series(self, series_uid: str) -> list[str]:
        found = self.post("/tools/find", {"Level": "Instance", "Query": {"SeriesInstanceUID": series_uid}})
        return list(found)

    def instance_file(self, orthanc_id: str) -> bytes:
        return self.get(f"/instances/{orthanc_id}/file")
