"""The workspace folder: one sub-folder per case under ``<root>/cases``."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ctseg_core.errors import StoreError
from ctseg_core.store.case import CASE_JSON, FINAL, STATUSES, TRAINING_STATUSES, Case, CaseRecord, read_record
from ctseg_core.store.source import SourceRef, describe_source
from ctseg_core.volume import LabelMap, Volume

DEFAULT_ROOT = Path.home() / "ctseg-workspace"


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

    def load_volume(self) -> Volume:
        return Case(self._folder).load_volume()

    def load_labels(self, volume: Volume | None = None) -> LabelMap:
        labels = Case(self._folder).load_final(volume)
        if labels is None:
            raise StoreError("the case has no final label map", self.final_path)
        return labels


class Workspace:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.cases_dir = self.root / "cases"
        try:
            self.cases_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the workspace ({exc.strerror})", self.root) from exc

    def _case_folders(self) -> list[Path]:
        return sorted(p for p in self.cases_dir.iterdir() if (p / CASE_JSON).is_file())

    def cases(self) -> list[CaseRecord]:
        """Every case's record, oldest first."""
        return sorted((read_record(p) for p in self._case_folders()), key=lambda r: (r.created, r.id))

    def case(self, case_id: str) -> Case:
        folder = self.cases_dir / case_id
        if not (folder / CASE_JSON).is_file():
            raise StoreError(f"no case {case_id!r} in the workspace", self.root)
        return Case(folder)

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
        return Case.create(self.cases_dir / case_id, case_id, volume, source)

    def next_unreviewed(self) -> CaseRecord | None:
        """The oldest case still "new"."""
        return next((r for r in self.cases() if r.status == "new"), None)

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
