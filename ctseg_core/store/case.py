"""One case of the workspace: its folder, record, label maps ("prediction" and "final") and journal.

Folder ``<workspace>/cases/<case id>/``:
  case.json         the record (source reference, geometry, status, annotator, times, findings summary)
  prediction.nii.gz the model's label map, prediction.json its model (version, weights hash)
  uncertainty.npz   the model's uncertainty (1 - top class probability) in 1/255 steps, when known
  triage.json       a triage model's (RADnet's) per-slice probabilities and the scan's call, when one ran
  final.nii.gz      the corrected label map (written atomically)
  journal.jsonl     edits committed since the last save of final (see ``journal``)
  edit.lock         who is editing the case now (see ``lock``): ``lock_for_editing`` takes it, and every
                    write is refused while another live process holds it (that opener is read-only)
  case.json.lock    held for a moment while a process updates case.json (several may: readers, adjudicator)
  readers/<name>/   one reader's own label map, journal and state (see ``readers``; lock edit-<name>.lock)
  journal.rejected.jsonl, case.json.damaged-*: records that were damaged, kept aside (see ``notes``)
Every edit, save, prediction and status change is also appended to the workspace's audit log (``audit``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctseg_core.atomic import atomic_write_bytes, atomic_write_text
from ctseg_core.errors import CaseLockedError, CtsegError, LabelMismatchError, StoreError
from ctseg_core.io.images import read_labels, write_labels
from ctseg_core.labels import label_table_json
from ctseg_core.edit.delta import Delta
from ctseg_core.store.audit import FINAL_MAP, PREDICTION_MAP, array_hash, audit_for
from ctseg_core.store.identity import default_reader
from ctseg_core.store.journal import Journal, now_iso
from ctseg_core.store.lock import CaseLock, LockOwner, is_stale, lock_path, others_editing, update_mutex
from ctseg_core.store.source import SourceRef, content_hash, source_files
from ctseg_core.volume import Geometry, LabelMap, Volume

# new (unread) -> in_review (in progress) -> corrected (one reader) | read (by N readers) -> adjudicated -> approved
STATUSES = ("new", "in_review", "read", "adjudicated", "corrected", "approved")
TRAINING_STATUSES = ("corrected", "adjudicated", "approved")

CASE_JSON = "case.json"
PREDICTION = "prediction.nii.gz"
PREDICTION_JSON = "prediction.json"
TRIAGE_JSON = "triage.json"
UNCERTAINTY = "uncertainty.npz"
UNCERTAINTY_STEPS = 255  # uint8 quantisation of the [0, 1] uncertainty
FINAL = "final.nii.gz"
JOURNAL = "journal.jsonl"


@dataclass
class CaseRecord:
    id: str
    source: SourceRef
    geometry: dict  # Geometry fields as lists
    description: str = ""
    status: str = "new"
    annotator: str = ""
    created: str = ""
    modified: str = ""
    status_history: list[dict] = field(default_factory=list)  # {status, annotator, time}
    model_version: str = ""  # of the stored prediction
    prediction_saved: str = ""
    final_saved: str = ""
    findings: dict = field(default_factory=dict)  # summary of the last saved final: key -> volume_ml, positive
    model_findings: dict | None = None  # the same summary of the stored prediction (None: stored before it was kept)
    triage: dict = field(default_factory=dict)  # the last triage: probability, positive, model_version, saved

    def to_json(self) -> dict:
        d = asdict(self)
        d["source"] = self.source.to_json()
        return d

    @classmethod
    def from_json(cls, obj: dict) -> "CaseRecord":
        obj = dict(obj)
        obj["source"] = SourceRef.from_json(obj["source"])
        return cls(**obj)

    def geometry_obj(self) -> Geometry:
        g = self.geometry
        return Geometry(tuple(g["shape"]), tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]))


def read_record(folder: Path) -> CaseRecord:
    path = Path(folder) / CASE_JSON
    try:
        rec = CaseRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        rec.geometry_obj()
        if rec.status not in STATUSES:
            raise ValueError(f"unknown status {rec.status!r}")
        if rec.id != path.parent.name:
            raise ValueError(f"case id {rec.id!r} differs from its folder's name")
    except FileNotFoundError as exc:
        raise StoreError("no such case (case.json missing)", path) from exc
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise StoreError(f"case record is damaged ({type(exc).__name__}: {exc})", path) from exc
    except OSError as exc:
        raise StoreError(f"case record cannot be read ({exc.strerror})", path) from exc
    return rec


def quarantine_record(folder: Path) -> Path:
    """Move a damaged ``case.json`` aside (``case.json.damaged-<time>``); the label files stay."""
    path = Path(folder) / CASE_JSON
    aside = path.with_name(f"{CASE_JSON}.damaged-{now_iso().replace(':', '')[:17]}")
    path.replace(aside)
    return aside


def geometry_json(g: Geometry) -> dict:
    return {"shape": list(g.shape), "spacing": list(g.spacing), "origin": list(g.origin),
            "direction": list(g.direction)}


class Case:
    """Use from one thread; ``journal_append`` and ``save_final`` are safe against each other."""

    reader = ""  # whose map this object edits: "" the case's final map, a name that reader's (``readers``)
    map_name = FINAL_MAP  # the edited map's name in the audit log

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.record = read_record(self.folder)
        self.map_path = self.folder / FINAL  # the map this object edits and saves
        self.journal = Journal(self.folder / JOURNAL)
        self.who = default_reader()  # recorded with every edit, save and status change (the app sets it)
        self.audit = audit_for(self.folder)
        self._saved: tuple[tuple, np.ndarray] | None = None  # (file stat, array) of the map as last saved
        self._lock = threading.Lock()
        self.edit_lock: CaseLock | None = None  # held while this object edits the case
        self.notes: list[str] = []  # what opening found and did (damaged records set aside, a lock taken over)

    # --- who may write ---------------------------------------------------------------------------
    def lock_for_editing(self, reader: str | None = None, take_over: bool = False) -> None:
        """Become the only writer of this object's map; ``CaseLockedError`` (naming the owner) when another
        process is. A lock whose owner is gone (dead process on this host) is taken over; ``take_over``
        takes any (logged in the audit trail)."""
        lock = CaseLock(self.folder, self.reader if reader is None else reader)
        if take_over:
            lock.take_over()
        else:
            lock.acquire()
        self.edit_lock = lock
        self.notes.extend(lock.notes)
        if lock.notes:
            self._audit("take_over", notes=list(lock.notes))
        self.journal.reload()  # continue after whatever the previous owner journaled

    def release_lock(self) -> None:
        if self.edit_lock is not None:
            self.edit_lock.release()
            self.edit_lock = None

    def lock_owner(self, reader: str | None = None) -> LockOwner | None:
        """Who holds the lock of this object's map (or ``reader``'s) (None: nobody)."""
        return LockOwner.from_file(lock_path(self.folder, self.reader if reader is None else reader))

    @property
    def read_only(self) -> bool:
        """Another live process holds the lock (and this object does not): nothing may be written."""
        try:
            self._check_writable()
        except CaseLockedError:
            return True
        return False

    def _check_writable(self) -> None:
        lock = self.edit_lock
        if lock is not None:
            if not lock.still_mine():
                owner = lock.owner()
                who = owner.describe() if owner is not None else "nobody (the lock file was removed)"
                raise CaseLockedError(f"the case lock was taken over by {who}; this copy is read-only now",
                                      self.folder, owner=owner)
            return
        path = lock_path(self.folder, self.reader)
        owner = LockOwner.from_file(path)
        if owner is not None and not is_stale(path, owner):
            raise CaseLockedError(f"the case is being edited by {owner.describe()}; it is open read-only",
                                  self.folder, owner=owner)

    @classmethod
    def create(cls, folder: Path, case_id: str, volume: Volume, source: SourceRef) -> "Case":
        t = now_iso()
        rec = CaseRecord(case_id, source, geometry_json(volume.geometry),
                         description=volume.meta.description or Path(source.path).name, created=t, modified=t,
                         status_history=[{"status": "new", "annotator": "", "time": t}])
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CASE_JSON, json.dumps(rec.to_json(), indent=1))
        return cls(folder)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def geometry(self) -> Geometry:
        return self.record.geometry_obj()

    def _update_record(self, change) -> None:
        """Apply ``change(record)`` to the record on disk and save it: read, change and write under the
        record's update lock, so that what other processes (other readers) wrote meanwhile is kept."""
        self._check_writable()
        with update_mutex(self.folder / (CASE_JSON + ".lock")):
            try:
                self.record = read_record(self.folder)
            except StoreError:
                pass  # damaged or gone: this object's copy is written
            change(self.record)
            self.record.modified = now_iso()
            atomic_write_text(self.folder / CASE_JSON, json.dumps(self.record.to_json(), indent=1))

    def set_description(self, text: str) -> None:
        """What the case list shows for the case (the record is re-read and written under its update lock:
        change it through methods like this one, never by assigning to ``record``)."""
        self._update_record(lambda rec: setattr(rec, "description", text))

    def reload_record(self) -> CaseRecord:
        """Read the record again (other processes change the status)."""
        self.record = read_record(self.folder)
        return self.record

    def _audit(self, op: str, map: str = "", deltas=(), model: str = "", who: str | None = None, **details) -> None:
        if self.audit is not None:
            self.audit.append(op, case=self.id, who=self.who if who is None else who, map=map, deltas=deltas,
                              model=model, **details)

    # --- the scan ------------------------------------------------------------------------------
    def load_volume(self, verify: bool = True, progress=None) -> Volume:
        """Load the scan again from the source reference; checks its geometry (and content hash)."""
        from ctseg_core.io import load_volume

        src = self.record.source
        if not Path(src.path).exists():
            raise StoreError("the case's source scan is gone", src.path)
        volume = load_volume(src.path, series_uid=src.series_uid or None, progress=progress)
        if not volume.geometry.matches(self.geometry):
            raise StoreError("the source scan no longer matches the case: "
                             + self.geometry.describe_mismatch(volume.geometry), src.path)
        if verify and content_hash(source_files(volume, Path(src.path)), src.kind) != src.content_hash:
            raise StoreError("the source files changed since the case was created (content hash differs)",
                             src.path)
        return volume

    # --- label maps ----------------------------------------------------------------------------
    def _check(self, labels: LabelMap, path=None) -> None:
        if not self.geometry.matches(labels.geometry):
            raise LabelMismatchError("label map does not belong to this case's scan: "
                                     + self.geometry.describe_mismatch(labels.geometry), path)

    def _read(self, name: str | Path, volume: Volume | None) -> LabelMap | None:
        path = self.folder / name
        if not path.exists():
            return None
        labels = read_labels(path, like=volume)
        self._check(labels, path)
        return labels

    def save_prediction(self, labels: LabelMap, model_version: str, model=None,
                        uncertainty: np.ndarray | None = None, guard: dict | None = None) -> None:
        """Store the model's output; ``model`` (a ``ModelIdentity``) tells later sessions which weights
        made it, ``uncertainty`` (float (z, y, x) in [0, 1]) its per-voxel uncertainty, ``guard`` what the
        anatomical guard removed and retyped (``GuardReport`` fields; None: no guard ran)."""
        self._check(labels)
        self._check_writable()
        if uncertainty is not None and uncertainty.shape != labels.array.shape:
            raise StoreError(f"uncertainty shape {uncertainty.shape} != label map shape {labels.array.shape}")
        previous = _readable(self.folder / PREDICTION)
        write_labels(labels, self.folder / PREDICTION)
        self._audit("prediction", PREDICTION_MAP, model=model_version, hash=array_hash(labels.array),
                    deltas=[_change(previous, labels.array)])
        if uncertainty is not None:
            q = np.round(np.nan_to_num(np.clip(uncertainty, 0, 1), nan=1.0) * UNCERTAINTY_STEPS).astype(np.uint8)
            atomic_write_bytes(self.folder / UNCERTAINTY, _npz_bytes(q))
        else:
            (self.folder / UNCERTAINTY).unlink(missing_ok=True)
        t = now_iso()
        atomic_write_text(self.folder / PREDICTION_JSON, json.dumps(
            {"model_version": model_version, "model": model.to_json() if model is not None else None,
             "guard": guard, "saved": t, "classes": label_table_json()}, indent=1))

        findings = _findings_summary(labels)

        def change(rec: CaseRecord) -> None:
            rec.model_version, rec.prediction_saved, rec.model_findings = model_version, t, findings

        self._update_record(change)

    def load_prediction(self, volume: Volume | None = None) -> LabelMap | None:
        return self._read(PREDICTION, volume)

    def _prediction_record(self) -> dict:
        """``prediction.json`` as a dict ({} when absent, unreadable or not a record)."""
        try:
            data = json.loads((self.folder / PREDICTION_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def prediction_model(self):
        """The ``ModelIdentity`` of the stored prediction (None when not recorded or unreadable)."""
        from ctseg_core.model_identity import ModelIdentity

        return ModelIdentity.from_json(self._prediction_record().get("model"))

    def prediction_guard(self):
        """The ``GuardReport`` stored with the prediction (None: no guard ran, not recorded, or unreadable)."""
        from ctseg_core.guard import GuardReport

        guard = self._prediction_record().get("guard")
        try:
            return GuardReport(**guard) if isinstance(guard, dict) else None
        except TypeError:  # fields missing or unknown
            return None

    def load_uncertainty(self) -> np.ndarray | None:
        """The stored uncertainty of the prediction as float32 (z, y, x), or None."""
        path = self.folder / UNCERTAINTY
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                q = data["uncertainty"]
        except (ValueError, KeyError, OSError) as exc:
            raise StoreError(f"stored uncertainty is unreadable ({exc})", path) from exc
        if q.shape != self.geometry.shape or q.dtype != np.uint8:
            raise StoreError(f"stored uncertainty has shape {q.shape} {q.dtype}, the case {self.geometry.shape}",
                             path)
        return q.astype(np.float32) / UNCERTAINTY_STEPS

    def save_triage(self, slice_probabilities, model_version: str) -> None:
        """Store a triage model's per-slice probabilities (``triage.json``) and the scan's probability and
        call in the record (the case list sorts by it)."""
        from ctseg_core.triage import Triage

        triage = Triage(np.asarray(slice_probabilities, np.float32))
        if triage.slice_probabilities.shape != (self.geometry.shape[0],):
            raise StoreError(f"{triage.slice_probabilities.shape[0]} slice probabilities for a scan of "
                             f"{self.geometry.shape[0]} slices")
        self._check_writable()
        t = now_iso()
        atomic_write_text(self.folder / TRIAGE_JSON, json.dumps(
            {"model_version": model_version, "saved": t, **triage.to_json()}, indent=1))
        summary = {"probability": round(triage.probability, 4), "positive": triage.positive,
                   "model_version": model_version, "saved": t}
        self._update_record(lambda rec: setattr(rec, "triage", summary))

    def load_triage(self) -> np.ndarray | None:
        """The stored per-slice probabilities (float32 (z,)), or None when no triage model ran."""
        path = self.folder / TRIAGE_JSON
        if not path.is_file():
            return None
        try:
            p = np.asarray(json.loads(path.read_text(encoding="utf-8"))["slice_probabilities"], np.float32)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"stored triage is unreadable ({exc})", path) from exc
        if p.shape != (self.geometry.shape[0],):
            raise StoreError(f"stored triage has {p.size} slice probabilities, the case {self.geometry.shape[0]} "
                             "slices", path)
        return p

    def save_final(self, labels: LabelMap, journal_upto: int | None = None) -> None:
        """Write the corrected map atomically, then drop the journal entries it holds.

        ``journal_upto``: the journal's ``last_seq`` when ``labels`` was copied (default: now) — pass
        it when saving a copy from another thread. A case still "new" becomes "in_review".
        """
        self._check(labels)
        self._check_writable()
        with self._lock:
            upto = self.journal.last_seq if journal_upto is None else journal_upto
        previous = self._previous_saved()
        write_labels(labels, self.map_path)
        self._remember_saved(labels.array)
        with self._lock:
            self.journal.trim(upto)
        self._audit("save", self.map_name, deltas=[_change(previous, labels.array)], hash=array_hash(labels.array))
        self._after_save(labels)

    def _after_save(self, labels: LabelMap) -> None:
        """The case record follows a save of the final map (a reader's map keeps its own record)."""
        t, findings, who = now_iso(), _findings_summary(labels), self.who

        def change(rec: CaseRecord) -> None:
            rec.final_saved, rec.findings = t, findings
            if rec.status == "new":
                _set_status(rec, "in_review", rec.annotator or who)

        self._update_record(change)

    def _previous_saved(self) -> np.ndarray | None:
        """The map as last saved (kept from the last save when the file is unchanged since, else read)."""
        stat = _stat(self.map_path)
        if stat is None:
            return None
        if self._saved is not None and self._saved[0] == stat:
            return self._saved[1]
        return _readable(self.map_path)

    def _remember_saved(self, array: np.ndarray) -> None:
        stat = _stat(self.map_path)
        self._saved = (stat, array.copy()) if stat is not None else None

    def load_final(self, volume: Volume | None = None) -> LabelMap | None:
        """The map this object edits as last saved (the case's final map; a reader's own, see ``readers``)."""
        return self._read(self.map_path, volume)

    def import_labels(self, path: str | Path, volume: Volume) -> LabelMap:
        """Make an existing label map file (NIfTI/NRRD/MHA) the case's final map; it must lie on the scan's grid."""
        labels = read_labels(path, like=volume)
        self.save_final(labels)
        return labels

    @property
    def final_path(self) -> Path:
        return self.map_path

    # --- journal and recovery ------------------------------------------------------------------
    def journal_append(self, deltas) -> int:
        """Log one committed step (a Delta or a list of them), fsync'd; History(journal=...) calls it."""
        self._check_writable()
        deltas = [deltas] if isinstance(deltas, Delta) else list(deltas)
        with self._lock:
            seq = self.journal.append(deltas)
        if seq:
            self._audit("edit", self.map_name, deltas=deltas, model=self.record.model_version, seq=seq)
        return seq

    def _base(self, volume: Volume | None) -> LabelMap:
        base = self.load_final(volume)
        if base is None:
            base = self.load_prediction(volume)
        return base if base is not None else LabelMap(np.zeros(self.geometry.shape, np.uint8), self.geometry)

    def recover(self, volume: Volume | None = None) -> LabelMap | None:
        """The unsaved edits restored: final (else prediction, else empty) plus the journal replayed.

        None when the journal holds nothing newer than the last save. Entries that do not fit the map are
        left out; when this object may write they are moved to ``journal.rejected.jsonl`` (``notes`` says so).
        """
        writable = not self.read_only
        if writable:
            self._remove_stale_temp_files()
        if not len(self.journal):
            return None
        labels = self._base(volume)
        applied = self.journal.replay(labels.array)
        if self.journal.rejected:
            reasons = "; ".join(f"entry {q}: {p}" if q >= 0 else p for q, p in self.journal.rejected[:3])
            aside = self.journal.quarantine(q for q, _ in self.journal.rejected) if writable else None
            self.notes.append(f"{len(self.journal.rejected)} damaged edit journal record(s) were not replayed "
                              f"({reasons})" + (f"; kept aside in {aside.name}" if aside else ""))
        return labels if applied else None

    def load_for_editing(self, volume: Volume | None = None) -> tuple[LabelMap, str]:
        """The map to edit and where it came from: "recovered", "final", "prediction" or "empty"."""
        rec = self.recover(volume)
        if rec is not None:
            return rec, "recovered"
        for name, loader in (("final", self.load_final), ("prediction", self.load_prediction)):
            labels = loader(volume)
            if labels is not None:
                return labels, name
        return LabelMap(np.zeros(self.geometry.shape, np.uint8), self.geometry), "empty"

    def _remove_stale_temp_files(self) -> None:
        """Leftovers of a write cut short by a crash; while another program edits the case (another reader)
        those of the shared files (case.json, the prediction) may be its writes in progress: kept then."""
        shared = others_editing(self.folder, self.edit_lock)
        mine = (f".{FINAL}.", f".{JOURNAL}.") if not self.reader else ()
        for p in self.folder.glob(".*.tmp*"):
            if not shared or p.name.startswith(mine):
                p.unlink(missing_ok=True)

    # --- status --------------------------------------------------------------------------------
    def set_status(self, status: str, annotator: str | None = None, **details) -> None:
        """The case's review status, with who set it (``annotator``, default this object's reader); logged."""
        if status not in STATUSES:
            raise StoreError(f"unknown review status {status!r} (one of {', '.join(STATUSES)})")
        who = annotator if annotator is not None else self.who
        previous = self.record.status
        self._update_record(lambda rec: _set_status(rec, status, who))
        self._audit("status", who=who, status=status, previous=previous, **details)


def _set_status(rec: CaseRecord, status: str, annotator: str) -> None:
    rec.status, rec.annotator = status, annotator or ""
    rec.status_history.append({"status": status, "annotator": annotator or "", "time": now_iso()})


def _change(old: np.ndarray | None, new: np.ndarray) -> Delta:
    """The voxels that differ from the previous state (None, or a map of another shape: an empty map)."""
    return Delta.between(np.zeros_like(new) if old is None or old.shape != new.shape else old, new)


def _readable(path: Path) -> np.ndarray | None:
    """The label array in ``path`` as it is before being replaced (None: none, or unreadable; the audit
    log's replay then reports that it cannot reproduce that save)."""
    try:
        return read_labels(path).array if path.is_file() else None
    except (CtsegError, OSError):
        return None


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _npz_bytes(q: np.ndarray) -> bytes:
    """The quantised uncertainty as a compressed .npz (written with a size check, never pickled)."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, uncertainty=q)
    return buf.getvalue()


def _findings_summary(labels: LabelMap) -> dict:
    """Cheap per-class summary for the case list (volume in mL, scan-positive by the findings rule);
    the full findings (ABC/2 ...) come from ``ctseg_core.findings.compute_findings``."""
    from ctseg_core.findings import SliceCounts, findings_from_counts

    found = findings_from_counts(SliceCounts(labels.array), labels.geometry)
    return {c.key: {"volume_ml": round(c.volume_ml, 3), "positive": c.positive} for c in found.classes if c.voxels}
