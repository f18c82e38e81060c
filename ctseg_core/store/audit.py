"""The workspace's audit trail: an append-only, fsync'd log of who did what to which case, and its replay.

``<workspace>/audit.jsonl``: one JSON line per operation, appended under an exclusive ``flock`` (several
processes, also on other hosts of a shared drive, append to one file) and fsync'd before the operation
counts as done. Lines are never rewritten. Each line::

    {"time": ISO, "op": "edit", "case": id, "who": reader, "user": OS account, "host": ..., "pid": ...,
     "map": "final" | "prediction" | "reader/<name>", "slices": [first, last] (from 1), "model": version,
     "deltas": [...], ...}

Operations: ``edit`` (one committed step: the edit journal's entry, same delta encoding, see ``journal``),
``save`` (a map written: the delta from its previous saved state and the sha256 of the saved array),
``prediction`` (the model's map stored, with its delta from the previous one), ``start`` (a reader's map
begun from the prediction or another reader's map), ``status``, ``adjudicate``, ``train``, ``take_over``.

The edit journal of a case is trimmed when its map is saved; the audit log keeps every step. ``replay``
rebuilds the saved states of one map of one case from the ``save`` entries alone (each checked against its
hash), and the edits in between from the ``edit`` entries: the whole history of who drew what.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctseg_core.atomic import write_error
from ctseg_core.edit.delta import Delta
from ctseg_core.errors import StoreError
from ctseg_core.store.identity import os_account
from ctseg_core.store.journal import _write_all, decode_delta, encode_delta, now_iso

AUDIT = "audit.jsonl"
FINAL_MAP, PREDICTION_MAP = "final", "prediction"
CSV_FIELDS = ("time", "op", "case", "who", "user", "host", "map", "slices", "model", "voxels", "details")


def reader_map(reader: str) -> str:
    """The audit name of a reader's map."""
    return f"reader/{reader}"


def array_hash(array: np.ndarray) -> str:
    """sha256 of a label array's shape and bytes (what a ``save`` entry is checked against)."""
    h = hashlib.sha256(repr(tuple(array.shape)).encode())
    h.update(np.ascontiguousarray(array, np.uint8).tobytes())
    return h.hexdigest()


def slices_of(deltas: Iterable[Delta]) -> list[int] | None:
    """[first, last] axial slice (numbered from 1) the deltas touch; None when they touch none."""
    boxes = [d.bbox for d in deltas if d]
    if not boxes:
        return None
    return [min(b[0] for b in boxes) + 1, max(b[1] for b in boxes)]


class AuditLog:
    def __init__(self, root: str | Path):
        self.path = Path(root) / AUDIT

    def append(self, op: str, case: str = "", who: str = "", map: str = "", deltas: Iterable[Delta] = (),
               model: str = "", **details) -> dict:
        """Log one operation (fsync'd); returns the entry. ``details`` must be JSON values."""
        deltas = [d for d in deltas if d]
        entry = {"time": now_iso(), "op": op, "case": case, "who": who, "user": os_account(),
                 "host": socket.gethostname(), "pid": os.getpid(), "map": map, "slices": slices_of(deltas),
                 "model": model, "voxels": sum(d.count for d in deltas), **details}
        if deltas:
            entry["deltas"] = [encode_delta(d) for d in deltas]
        self._append_line(json.dumps(entry, separators=(",", ":")))
        return entry

    def _append_line(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise write_error(exc, self.path, kept=False) from exc
        try:
            with _exclusive(fd):
                start = os.lseek(fd, 0, os.SEEK_END)
                if start and os.pread(fd, 1, start - 1) != b"\n":
                    data = b"\n" + data  # after a line torn by a crash
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)  # no half line is left behind (disk full)
                    raise write_error(exc, self.path, kept=False) from exc
        finally:
            os.close(fd)

    def entries(self, case: str | None = None, map: str | None = None) -> Iterator[dict]:
        """The readable entries in order (a line torn by a crash is skipped), optionally of one case / map."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(entry, dict) or "op" not in entry:
                    continue
                if (case is None or entry.get("case") == case) and (map is None or entry.get("map") == map):
                    yield entry

    def export(self, out: str | Path, case: str | None = None) -> int:
        """Write the log (or one case's part) as CSV (``.csv``: no voxel data) or JSON lines; returns the
        number of entries written."""
        from ctseg_core.atomic import atomic_write_text

        out = Path(out)
        entries = list(self.entries(case))
        if out.suffix.lower() == ".csv":
            import io

            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(CSV_FIELDS)
            for e in entries:
                writer.writerow(summary_row(e))
            atomic_write_text(out, buf.getvalue())
        else:
            atomic_write_text(out, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
        return len(entries)


def summary_row(entry: dict) -> list[str]:
    """The CSV / table cells of an entry (``CSV_FIELDS``): details are what the entry holds besides."""
    skip = set(CSV_FIELDS) | {"deltas", "pid"}
    details = {k: v for k, v in entry.items() if k not in skip}
    slices = entry.get("slices")
    return [str(entry.get("time", "")), str(entry.get("op", "")), str(entry.get("case", "")),
            str(entry.get("who", "")), str(entry.get("user", "")), str(entry.get("host", "")),
            str(entry.get("map", "")), f"{slices[0]}-{slices[1]}" if slices else "", str(entry.get("model", "")),
            str(entry.get("voxels", "")), json.dumps(details, separators=(",", ":")) if details else ""]


@contextlib.contextmanager
def _exclusive(fd: int):
    try:
        import fcntl
    except ImportError:  # not POSIX: appends of one write each are not interleaved there either
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def audit_for(case_folder: Path) -> AuditLog | None:
    """The audit log of the workspace a case folder (``<root>/cases/<id>``) belongs to."""
    folder = Path(case_folder)
    return AuditLog(folder.parent.parent) if folder.parent.name == "cases" else None


# ---------------------------------------------------------------- replay

@dataclass
class ReplayStep:
    entry: dict  # the ``save`` entry
    labels: np.ndarray  # the map as it was saved then
    edits: int  # ``edit`` entries between the previous save and this one


def replay(log: AuditLog, case: str, map: str, shape: tuple[int, int, int]) -> list[ReplayStep]:
    """Every saved state of ``map`` of ``case``, rebuilt from the log alone and checked against each save's
    hash. StoreError when the log does not reproduce a saved state (an entry lost or the map written
    outside ctseg)."""
    state = np.zeros(shape, np.uint8)
    steps, edits = [], 0
    for entry in log.entries(case, map):
        if entry["op"] == "edit":
            edits += 1
        if entry["op"] not in ("save", "prediction"):
            continue
        for d in entry.get("deltas", []):
            decode_delta(d).apply(state)
        if entry.get("hash") and array_hash(state) != entry["hash"]:
            raise StoreError(f"the audit log does not reproduce the {map} map of case {case} as saved at "
                             f"{entry['time']} (an entry is missing)", log.path)
        steps.append(ReplayStep(entry, state.copy(), edits))
        edits = 0
    return steps


def replay_edits(log: AuditLog, case: str, map: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The map rebuilt from its first saved state on by its ``edit`` entries only (the journal's steps),
    with later ``start`` / ``prediction`` / adjudication writes: what the fine-grained history says."""
    state = np.zeros(shape, np.uint8)
    first_save = True
    for entry in log.entries(case, map):
        if entry["op"] == "save" and not first_save:
            continue  # later saves hold nothing the edits did not (checked by the tests)
        first_save = first_save and entry["op"] != "save"
        for d in entry.get("deltas", []):
            decode_delta(d).apply(state)
    return state
