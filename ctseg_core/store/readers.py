"""Several readers per case: each reader's own label map beside the model's prediction and the final map.

Folder ``<case>/readers/<reader slug>/``:
  labels.nii.gz   the reader's map (written atomically, only by that reader)
  journal.jsonl   the reader's edits since the last save (crash recovery, as the case's own journal)
  reader.json     the reader's name, what the map started from, status (in_progress / done), times, findings
The reader's lock is ``<case>/edit-<reader slug>.lock`` (``lock``): one writer per case and reader; every
other process (another reader, the adjudicator) opens that map read-only. A reader never writes another
reader's map; a map is started from the prediction, from another reader's map (a copy) or empty.

    rc = Workspace(root).reader_case(case_id, "alice")   # a ReaderCase: a Case whose map is alice's
    rc.lock_for_editing()
    labels, origin = rc.load_for_editing(volume)          # alice's map; a new reading starts from the prediction
    rc.start(volume, "reader:bob")                        # or begin from bob's map
    history = History(labels.array, journal=rc.journal_append)
    rc.save_final(labels); rc.set_status("done")          # the case becomes "read" (by N readers)

When the case's status moves on, the case record (``case.json``) is updated under its update lock, so two
readers finishing at once both count.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import StoreError
from ctseg_core.store.audit import array_hash, reader_map
from ctseg_core.store.case import JOURNAL, Case, CaseRecord, _change, _findings_summary, _set_status
from ctseg_core.store.identity import check_reader, reader_slug
from ctseg_core.store.journal import Journal, now_iso
from ctseg_core.volume import LabelMap, Volume

READERS_DIR = "readers"
READER_MAP = "labels.nii.gz"
READER_JSON = "reader.json"
READER_STATUSES = ("in_progress", "done")
EARLY_STATUSES = ("new", "in_review", "read")  # the case statuses a reader's progress may move on


@dataclass
class ReaderRecord:
    reader: str
    started_from: str = ""  # "prediction", "empty" or "reader:<name>"
    started: str = ""
    status: str = "in_progress"
    saved: str = ""
    findings: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # {status, time}

    @classmethod
    def read(cls, folder: Path) -> ReaderRecord | None:
        path = Path(folder) / READER_JSON
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: obj[k] for k in obj if k in cls.__dataclass_fields__})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"reader record is damaged ({exc})", path) from exc

    def write(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / READER_JSON, json.dumps(asdict(self), indent=1))


def reader_folder(case_folder: Path, reader: str) -> Path:
    return Path(case_folder) / READERS_DIR / reader_slug(reader)


def readers_of(case_folder: Path) -> list[ReaderRecord]:
    """Every reader who has a saved map of the case (damaged reader records are left out), by start time."""
    root = Path(case_folder) / READERS_DIR
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        try:
            rec = ReaderRecord.read(folder)
        except StoreError:
            continue
        if rec is not None and (folder / READER_MAP).is_file():
            out.append(rec)
    return sorted(out, key=lambda r: (r.started, r.reader))


def load_reader_map(case: Case, reader: str, volume: Volume | None = None) -> LabelMap | None:
    """``reader``'s saved map of ``case`` (None when that reader has none); read-only for everyone else."""
    return case._read(reader_folder(case.folder, reader) / READER_MAP, volume)


class ReaderCase(Case):
    """The case as one reader edits it: the map, journal, lock and status are the reader's own."""

    def __init__(self, folder: Path, reader: str):
        super().__init__(folder)
        self.reader = check_reader(reader)
        self.who = self.reader
        self.map_name = reader_map(self.reader)
        self.dir = reader_folder(self.folder, self.reader)
        self.map_path = self.dir / READER_MAP
        self.journal = Journal(self.dir / JOURNAL)

    def _remove_stale_temp_files(self) -> None:
        super()._remove_stale_temp_files()
        for p in self.dir.glob(".*.tmp*"):
            p.unlink(missing_ok=True)

    def reader_record(self) -> ReaderRecord | None:
        return ReaderRecord.read(self.dir)

    @property
    def started(self) -> bool:
        return self.map_path.is_file()

    # --- beginning a reading ---------------------------------------------------------------------
    def start_map(self, source: str, volume: Volume | None = None) -> LabelMap:
        """The map a new reading begins with: "prediction", "empty" or "reader:<name>" (a copy of theirs)."""
        if source == "empty":
            return LabelMap(np.zeros(self.geometry.shape, np.uint8), self.geometry)
        if source == "prediction":
            labels = self.load_prediction(volume)
            if labels is None:
                raise StoreError("the case has no stored prediction to start from", self.folder)
            return labels
        other = source.removeprefix("reader:")
        if not source.startswith("reader:") or reader_slug(other) == reader_slug(self.reader):
            raise StoreError(f"a reading starts from the prediction, empty or another reader's map, not {source!r}")
        labels = load_reader_map(self, other, volume)
        if labels is None:
            raise StoreError(f"reader {other!r} has no map of this case", self.folder)
        return labels

    def start(self, volume: Volume | None, source: str = "prediction") -> LabelMap:
        """Begin this reader's map from ``source`` (see ``start_map``) and save it; refused when the reader
        already has one (nothing is overwritten)."""
        self._check_writable()
        if self.started:
            raise StoreError(f"{self.reader} has already begun reading this case; their map is kept", self.map_path)
        labels = self.start_map(source, volume)
        self.dir.mkdir(parents=True, exist_ok=True)
        t = now_iso()
        ReaderRecord(self.reader, source, t, history=[{"status": "in_progress", "time": t}]).write(self.dir)
        self._audit("start", self.map_name, deltas=[_change(None, labels.array)], source=source)
        self.save_final(labels)
        return labels

    # --- saving and status -----------------------------------------------------------------------
    def save_final(self, labels: LabelMap, journal_upto: int | None = None) -> None:
        """Save the reader's map (``Case.save_final``: atomic, journal trimmed, audited)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        super().save_final(labels, journal_upto)

    def _after_save(self, labels: LabelMap) -> None:
        rec = self.reader_record() or ReaderRecord(self.reader, "prediction", now_iso(),
                                                   history=[{"status": "in_progress", "time": now_iso()}])
        rec.saved, rec.findings = now_iso(), _findings_summary(labels)
        rec.write(self.dir)
        if self.reload_record().status == "new":
            self._update_record(lambda r: _set_status(r, "in_review", self.reader) if r.status == "new" else None)

    def set_status(self, status: str, annotator: str | None = None, **details) -> None:
        """The reader's own status ("in_progress" / "done"); "done" makes the case "read (by N readers)".
        Case statuses (adjudicated, approved) are set on the case (``Case``), not by a reader's map."""
        if status not in READER_STATUSES:
            raise StoreError(f"a reader's status is one of {', '.join(READER_STATUSES)}, not {status!r}")
        self._check_writable()
        rec = self.reader_record()
        if rec is None or not self.started:
            raise StoreError(f"{self.reader} has no saved map of this case yet", self.map_path)
        previous = rec.status
        rec.status = status
        rec.history.append({"status": status, "time": now_iso()})
        rec.write(self.dir)
        self._update_record(lambda r: _follow_readers(r, self.reader, self.folder))
        self._audit("status", map=self.map_name, status=status, previous=previous,
                    readers_done=self.record.status_history[-1].get("readers_done"), **details)


def _follow_readers(rec: CaseRecord, reader: str, folder: Path) -> None:
    """The case's status after a reader's: "read" when one or more readers are done, "in_review" else
    (a case already adjudicated, corrected or approved keeps its status); each reader's step is in the
    status history."""
    if rec.status not in EARLY_STATUSES:
        return
    done = sum(r.status == "done" for r in readers_of(folder))  # counted under the record's update lock
    _set_status(rec, "read" if done else "in_review", reader)
    rec.status_history[-1]["readers_done"] = done


def save_adjudicated(case: Case, labels: LabelMap, reader_a: str, reader_b: str, decisions: dict | None = None,
                     status: str = "adjudicated") -> None:
    """The adjudicated map becomes the case's final labels (which training uses), status "adjudicated";
    ``case`` must hold the case's own lock (``Case.lock_for_editing()``). Audited with the two readers and
    the decisions (how many components were taken from each, redrawn)."""
    if case.reader:
        raise StoreError("the adjudicated map is the case's final map, not a reader's")
    case.save_final(labels)
    case._audit("adjudicate", case.map_name, readers=[reader_a, reader_b], hash=array_hash(labels.array),
                decisions=decisions or {})
    case.set_status(status, case.who, readers=[reader_a, reader_b])
