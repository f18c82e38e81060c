"""The workspace's inbox: DICOM instances received over the network, filed by study and series.

Layout under ``<workspace>/inbox/``::

    <StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   the received instances, as received
    <StudyInstanceUID>/<SeriesInstanceUID>.json                   the series' record (``SeriesEntry``)
    set-aside/<time>-<n>.dcm and .txt                              what was not filed, with a note why

A series folder is the source of the case made from it (cases reference their scan, never copy it), so
it stays where it is. A series' record says where it stands: ``receiving`` (instances arriving),
``queued`` (complete: nothing arrived for the settle time), ``segmenting``, ``segmented`` (its case id),
``failed`` (the error). Records are written atomically; ``recover`` re-queues series a stopped listener
left receiving or segmenting.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctseg_core.atomic import atomic_write_bytes, atomic_write_text
from ctseg_core.errors import PacsError

STATES = ("receiving", "queued", "segmenting", "segmented", "failed")
SET_ASIDE = "set-aside"
_UID = re.compile(r"[0-9A-Za-z.\-]{1,64}")
CT_MODALITY = "CT"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


@dataclass
class SeriesEntry:
    study_uid: str
    series_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    series_number: str = ""
    calling_ae: str = ""
    instances: int = 0
    first_received: str = ""
    last_received: str = ""
    state: str = "receiving"
    case_id: str = ""
    error: str = ""
    segmented_at: str = ""
    history: list[dict] = field(default_factory=list)  # {state, time, note}

    @property
    def key(self) -> tuple[str, str]:
        return self.study_uid, self.series_uid

    def describe(self) -> str:
        what = self.series_description or self.study_description or self.series_uid
        who = self.patient_name or self.patient_id or "unknown patient"
        return f"{who}: {what} ({self.instances} instance{'s' if self.instances != 1 else ''})"

    def title(self) -> str:
        """A case name for people: "DOE^JOHN HEAD / series 2" (patient, study, series)."""
        series = self.series_description or (f"series {self.series_number}" if self.series_number else "")
        what = " / ".join(x for x in (self.study_description, series) if x)
        return " ".join(x for x in (self.patient_name or self.patient_id, what) if x) or self.series_uid

    @property
    def status_text(self) -> str:
        """What the inbox shows: "receiving", "queued", "segmenting", "new, segmented", "failed: ..."."""
        if self.state == "segmented":
            return "new, segmented"
        if self.state == "failed":
            return f"failed: {self.error}"
        return self.state


@dataclass
class Received:
    """What filing one instance did: ``entry`` is its series (None when set aside), ``note`` why it was."""

    entry: SeriesEntry | None
    path: Path
    note: str = ""
    malformed: bool = False


class Inbox:
    """Thread-safe: the listener files from its association threads, the segmenter updates states."""

    def __init__(self, workspace_root: str | Path):
        self.root = Path(workspace_root).expanduser() / "inbox"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._aside_n = 0

    # ---- paths ----
    def series_dir(self, entry: SeriesEntry) -> Path:
        return self.root / entry.study_uid / entry.series_uid

    def record_path(self, study_uid: str, series_uid: str) -> Path:
        return self.root / study_uid / f"{series_uid}.json"

    @property
    def aside_dir(self) -> Path:
        return self.root / SET_ASIDE

    # ---- filing ----
    def file_instance(self, data: bytes, calling_ae: str = "") -> Received:
        """File one received instance (``data``: the DICOM file bytes, preamble and meta included).

        A CT image is written into its series folder; anything else (another modality, no pixel data,
        bytes that do not decode, UIDs that cannot name a file) is kept in ``set-aside`` with a note.
        Never raises for bad input."""
        try:
            ds = _decode(data)
        except Exception as exc:  # noqa: BLE001 - whatever pydicom raises, the instance is kept aside
            return self.set_aside(data, f"malformed: the instance could not be decoded ({type(exc).__name__}: "
                                  f"{exc})", calling_ae, malformed=True)
        uids = [str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        bad = [k for k, u in zip(("study", "series", "SOP instance"), uids) if not _UID.fullmatch(u) or u in (".", "..")]
        if bad:
            return self.set_aside(data, f"malformed: {', '.join(bad)} UID missing or invalid", calling_ae,
                                  malformed=True)
        modality = str(ds.get("Modality", "") or "")
        if modality != CT_MODALITY:
            return self.set_aside(data, f"not CT (modality {modality or 'missing'}, SOP class "
                                  f"{ds.get('SOPClassUID', '?')}): ctseg segments head CT only", calling_ae)
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            return self.set_aside(data, "malformed: a CT instance without pixel data", calling_ae, malformed=True)
        study, series, sop = uids
        with self._lock:
            entry = self.entry(study, series) or _new_entry(ds, calling_ae)
            path = self.series_dir(entry) / f"{sop}.dcm"
            is_new = not path.exists()
            atomic_write_bytes(path, data)
            entry.instances += int(is_new)
            entry.last_received = now_iso()
            entry.first_received = entry.first_received or entry.last_received
            if entry.state != "receiving":  # more instances after it was queued or segmented: again
                _set_state(entry, "receiving", f"new instance after the series was {entry.state}")
            self.save(entry)
        return Received(entry, path)

    def set_aside(self, data: bytes, note: str, calling_ae: str = "", malformed: bool = False) -> Received:
        with self._lock:
            self._aside_n += 1
            stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{self._aside_n:04d}-{time.time_ns() % 10**6:06d}"
            path = self.aside_dir / f"{stem}.dcm"
            atomic_write_bytes(path, data)
            atomic_write_text(path.with_suffix(".txt"), f"received {now_iso()} from {calling_ae or '?'}\n{note}\n")
        return Received(None, path, note, malformed)

    # ---- records ----
    def entry(self, study_uid: str, series_uid: str) -> SeriesEntry | None:
        path = self.record_path(study_uid, series_uid)
        try:
            return SeriesEntry(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise PacsError(f"the inbox record of a series is damaged ({exc})", path) from exc

    def entry_of_folder(self, series_folder: str | Path) -> SeriesEntry | None:
        """The record of the series filed in ``series_folder`` (None for a folder outside the inbox)."""
        folder = Path(series_folder)
        try:
            inside = folder.resolve().parent.parent == self.root.resolve()
            return self.entry(folder.parent.name, folder.name) if inside else None
        except PacsError:
            return None

    def save(self, entry: SeriesEntry) -> None:
        with self._lock:
            atomic_write_text(self.record_path(*entry.key), json.dumps(asdict(entry), indent=1))

    def set_state(self, entry: SeriesEntry, state: str, note: str = "", **values) -> SeriesEntry:
        """Change the state of ``entry``'s series (re-read first: the listener may have added instances)."""
        with self._lock:
            current = self.entry(*entry.key) or entry
            for k, v in values.items():
                setattr(current, k, v)
            _set_state(current, state, note)
            self.save(current)
            return current

    def entries(self) -> list[SeriesEntry]:
        """Every series' record, newest received first; damaged records are skipped."""
        out = []
        for path in self.root.glob("*/*.json"):
            try:
                out.append(SeriesEntry(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda e: e.last_received, reverse=True)

    def set_aside_notes(self) -> list[tuple[Path, str]]:
        """(file, note) of every instance kept aside, newest first."""
        notes = []
        for txt in sorted(self.aside_dir.glob("*.txt"), reverse=True):
            try:
                notes.append((txt.with_suffix(".dcm"), txt.read_text(encoding="utf-8").strip()))
            except OSError:
                continue
        return notes

    def recover(self) -> list[SeriesEntry]:
        """After a restart: series left ``segmenting`` (interrupted) are queued again; ``receiving`` ones
        stay receiving (the tracker queues them after the settle time). Returns the queued ones."""
        queued = []
        for entry in self.entries():
            if entry.state == "segmenting":
                entry = self.set_state(entry, "queued", "the listener stopped while segmenting: queued again")
            if entry.state == "queued":
                queued.append(entry)
        return sorted(queued, key=lambda e: e.last_received)


def _decode(data: bytes):
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=False)
    for elem in ds:  # parse every element now: a garbled header fails here, not later in the loader
        _ = elem.value
    return ds


def _new_entry(ds, calling_ae: str) -> SeriesEntry:
    def text(keyword: str) -> str:
        value = ds.get(keyword, "")
        return "" if value is None else str(value)

    return SeriesEntry(study_uid=text("StudyInstanceUID"), series_uid=text("SeriesInstanceUID"),
                       patient_id=text("PatientID"), patient_name=text("PatientName"), study_date=text("StudyDate"),
                       study_description=text("StudyDescription"), series_description=text("SeriesDescription"),
                       series_number=text("SeriesNumber"), calling_ae=calling_ae,
                       history=[{"state": "receiving", "time": now_iso(), "note": f"from {calling_ae or '?'}"}])


def _set_state(entry: SeriesEntry, state: str, note: str = "") -> None:
    if state not in STATES:
        raise PacsError(f"unknown inbox state {state!r}")
    entry.state = state
    entry.history.append({"state": state, "time": now_iso(), "note": note})
