"""The workspace folder: one sub-folder per case under ``<root>/cases``."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ctseg_core.errors import StoreError
from ctseg_core.store.case import (CASE_JSON, FINAL, STATUSES, TRAINING_STATUSES, Case, CaseRecord, quarantine_record,
                                   read_record)
from ctseg_core.store.source import SourceRef, describe_source
from ctseg_core.volume import LabelMap, Volume

DEFAULT_ROOT = Path.home() / "ctseg-workspace"
SETTINGS = "workspace.json"


def default_root() -> Path:
    """``$CTSEG_WORKSPACE`` if set, else ``~/ctseg-workspace``."""
    env = os.environ.get("CTSEG_WORKSPACE")
    return Path(env).expanduser() if env else DEFAULT_ROOT


@dataclass
class TrainingCase:
    """A reviewed case for training: its final labels and a way to load its scan again."""

    case_id: str
    status: str
    final_path: Path
    source: SourceRef
    _folder: Path

    def case(self) -> Case:
        return Case(self._folder)

    def load_volume(self) -> Volume:
        return Case(self._folder).load_volume()

    def load_labels(self, volume: Volume | None = None) -> LabelMap:
        labels = Case(self._folder).load_final(volume)
        if labels is None:
            raise StoreError("the case has no final label map", self.final_path)
        return labels


CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Workspace:
    """``create=False`` (the command line's ``--workspace``): a folder that is not a workspace is an error
    rather than silently becoming an empty one (a mistyped path)."""

    def __init__(self, root: str | Path | None = None, create: bool = True):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.cases_dir = self.root / "cases"
        self.problems: list[str] = []  # damaged case records found while listing (those cases are skipped)
        if not create and not self.cases_dir.is_dir():
            what = "does not exist" if not self.root.exists() else "is not a ctseg workspace (no cases folder)"
            raise StoreError(f"the workspace folder {what}", self.root)
        try:
            self.cases_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the workspace ({exc.strerror})", self.root) from exc

    def _case_folders(self) -> list[Path]:
        return sorted(p for p in self.cases_dir.iterdir() if (p / CASE_JSON).is_file())

    def cases(self) -> list[CaseRecord]:
        """Every readable case's record, oldest first; damaged records are skipped and named in ``problems``."""
        records, self.problems = [], []
        for folder in self._case_folders():
            try:
                records.append(read_record(folder))
            except StoreError as exc:
                self.problems.append(f"{exc} (the case is left out; opening its scan again rebuilds the record "
                                     "and keeps its labels)")
        return sorted(records, key=lambda r: (r.created, r.id))

    def case(self, case_id: str) -> Case:
        """The case ``case_id`` (a folder name under ``cases``; never a path leading elsewhere)."""
        return Case(self._case_folder(case_id))

    def reader_case(self, case_id: str, reader: str):
        """The case as ``reader`` reads it: their own map (``readers.ReaderCase``)."""
        from ctseg_core.store.readers import ReaderCase

        return ReaderCase(self._case_folder(case_id), reader)

    def _case_folder(self, case_id: str) -> Path:
        if not isinstance(case_id, str) or not CASE_ID.fullmatch(case_id) or case_id in (".", ".."):
            raise StoreError(f"{case_id!r} is not a case id (letters, digits, '.', '_' and '-')", self.root)
        folder = self.cases_dir / case_id
        if not (folder / CASE_JSON).is_file():
            raise StoreError(f"no case {case_id!r} in the workspace", self.root)
        return folder

    @property
    def audit(self):
        """The workspace's audit log (``audit.AuditLog``)."""
        from ctseg_core.store.audit import AuditLog

        return AuditLog(self.root)

    @property
    def double_reading(self) -> bool:
        """Each reader edits their own map of a case (``readers``) and an adjudicator makes the final map;
        off: readers edit the final map in turn (``workspace.json`` ``double_reading``)."""
        return bool(self._settings().get("double_reading", False))

    def set_double_reading(self, on: bool) -> None:
        from ctseg_core.atomic import atomic_write_text

        settings = self._settings()
        settings["double_reading"] = bool(on)
        atomic_write_text(self.root / SETTINGS, json.dumps(settings, indent=1))

    def _settings(self) -> dict:
        try:
            obj = json.loads((self.root / SETTINGS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"the workspace settings are damaged ({exc})", self.root / SETTINGS) from exc
        return obj if isinstance(obj, dict) else {}

    def changed_signature(self) -> tuple:
        """Cheap fingerprint of the case list (record and reader-record times): it changes when any
        process on any host creates a case, saves a map or changes a status (the app polls it)."""
        sig = []
        for folder in self._case_folders():
            for p in (folder / CASE_JSON, *sorted((folder / "readers").glob("*/reader.json"))):
                try:
                    st = p.stat()
                except OSError:
                    continue
                sig.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(sig)

    def find(self, source: SourceRef) -> Case | None:
        for rec in self.cases():
            if rec.source.content_hash == source.content_hash and rec.source.series_uid == source.series_uid:
                return self.case(rec.id)
        return None

    def open_case(self, volume: Volume, source_path: str | Path | None = None) -> Case:
        """The case of this scan (found by series UID + content hash), created on first open."""
        source = describe_source(volume, source_path)
        found = self.find(source)
        if found is not None:
            if not found.geometry.matches(volume.geometry):
                raise StoreError("this scan's geometry differs from the one stored for its case "
                                 f"{found.id}: " + found.geometry.describe_mismatch(volume.geometry), source.path)
            return found
        case_id = _case_id(volume, source)
        folder = self.cases_dir / case_id
        aside = None
        if (folder / CASE_JSON).is_file():  # its record was unreadable (else ``find`` had found it)
            aside = quarantine_record(folder)
        case = Case.create(folder, case_id, volume, source)
        if aside is not None:
            case.notes.append(f"the case record was damaged; it was set aside as {aside.name} and rebuilt "
                              "(label maps and journal kept; review status reset to new)")
        return case

    def next_unreviewed(self) -> CaseRecord | None:
        """The oldest case still "new"."""
        return next((r for r in self.cases() if r.status == "new"), None)

    def reviewed_without_final(self, statuses=TRAINING_STATUSES) -> list[str]:
        """Ids of cases marked with one of ``statuses`` that have no saved final label map (not trainable)."""
        return [r.id for r in self.cases() if r.status in statuses and not (self.cases_dir / r.id / FINAL).is_file()]

    def training_cases(self, statuses=TRAINING_STATUSES) -> list[TrainingCase]:
        """Cases with one of ``statuses`` and a saved final label map, oldest first."""
        bad = set(statuses) - set(STATUSES)
        if bad:
            raise StoreError(f"unknown review status {sorted(bad)} (one of {', '.join(STATUSES)})")
        out = []
        for rec in self.cases():
            folder = self.cases_dir / rec.id
            if rec.status in statuses and (folder / FINAL).is_file():
                out.append(TrainingCase(rec.id, rec.status, folder / FINAL, rec.source, folder))
        return out


def _case_id(volume: Volume, source: SourceRef) -> str:
    name = volume.meta.description or Path(source.path).name
    name = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.mha|\.mhd)$", "", name, flags=re.I)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40] or "case"
    digest = hashlib.sha256(f"{source.series_uid}\0{source.content_hash}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}"
