"""The append-only edit journal of a case: one JSON line per committed step, fsync'd.

Each line: ``{"seq": n, "time": ISO, "deltas": [{"bbox": [...], "mask": b64(zlib(packed bits)),
"old": b64(zlib(uint8)), "new": b64(zlib(uint8))}, ...]}``. Replay writes the ``new`` values in order,
which is idempotent: replaying entries that a saved label map already holds changes nothing, so a crash
between saving the label map and trimming the journal loses nothing and doubles nothing. A line torn by
a crash while appending is skipped. An entry that does not fit the label map (a box outside it, values
that are no class, mask and values of different lengths) is never replayed: ``replay`` leaves it out and
``quarantine`` moves it to ``journal.rejected.jsonl`` with the reason, so the case opens with the rest.
An append that fails (disk full) is cut back off the file and raises ``WriteError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import zlib
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np

from ctseg_core.atomic import atomic_write_text, write_error
from ctseg_core.edit.delta import Delta

REJECTED_SUFFIX = ".rejected.jsonl"


def _pack(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a, np.uint8).tobytes(), 1)).decode("ascii")


def _unpack(s: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=np.uint8)


def encode_delta(d: Delta) -> dict:
    return {"bbox": list(d.bbox), "mask": _pack(d.packed_mask), "old": _pack(d.old), "new": _pack(d.new)}


def decode_delta(obj: dict) -> Delta:
    return Delta(tuple(int(v) for v in obj["bbox"]), _unpack(obj["mask"]), _unpack(obj["old"]), _unpack(obj["new"]))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.reload()

    def reload(self) -> None:
        """Read the last sequence number again (another writer may have appended before a lock changed hands)."""
        self.last_seq = max(self._seqs(), default=0)

    def _seqs(self) -> list[int]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="ascii", errors="replace")
        return [q for q in map(_seq_of, text.splitlines()) if q >= 0]

    def append(self, deltas: Iterable[Delta]) -> int:
        """Append one entry (one step) and fsync it; returns its sequence number (0: nothing to log)."""
        deltas = [d for d in deltas if d]
        if not deltas:
            return 0
        seq = self.last_seq + 1
        line = json.dumps({"seq": seq, "time": now_iso(), "deltas": [encode_delta(d) for d in deltas]},
                          separators=(",", ":"))
        data = (line + "\n").encode("ascii")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                if start > 0 and not self._ends_with_newline():
                    data = b"\n" + data  # a torn line from a crash: start a fresh line after it
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)  # no half line is left behind (disk full)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(exc, self.path, kept=False) from exc
        self.last_seq = seq
        return seq

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def entries(self, shape: tuple[int, ...] | None = None, n_classes: int = 256
                ) -> Iterator[tuple[int, list[Delta] | None, str]]:
        """(seq, deltas, problem) per line in order: deltas None and the problem when the line is unreadable
        or (with ``shape``) does not fit a label map of that shape; torn lines (seq -1) included."""
        if not self.path.exists():
            return
        with open(self.path, encoding="ascii", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                seq, deltas, problem = _parse(line)
                if deltas is not None and shape is not None:
                    problem = next((p for p in (d.problem(shape, n_classes) for d in deltas) if p), "")
                    deltas = None if problem else deltas
                yield seq, deltas, problem

    def __len__(self) -> int:
        """Number of readable entries."""
        return len(self._seqs())

    def replay(self, labels: np.ndarray, after_seq: int = 0, n_classes: int | None = None) -> int:
        """Apply the valid entries with seq > ``after_seq`` to ``labels``; returns how many were applied.

        Entries that do not fit ``labels`` are left out and listed in ``self.rejected`` as (seq, problem)
        (see ``quarantine``)."""
        if n_classes is None:
            from ctseg_core.labels import NUM_CLASSES as n_classes
        self.rejected: list[tuple[int, str]] = []
        n = 0
        for seq, deltas, problem in self.entries(labels.shape, n_classes):
            if deltas is None:
                if seq >= 0 or problem != TORN:
                    self.rejected.append((seq, problem))
                continue
            if seq > after_seq:
                for d in deltas:
                    d.apply(labels)
                n += 1
        return n

    def quarantine(self, seqs: Iterable[int]) -> Path | None:
        """Move the entries ``seqs`` (and unreadable lines, seq -1) to ``journal.rejected.jsonl``; returns it."""
        seqs = set(seqs)
        if not seqs or not self.path.exists():
            return None
        lines = self.path.read_text(encoding="ascii", errors="replace").splitlines(True)
        bad = [ln for ln in lines if ln.strip() and _seq_of(ln) in seqs]
        keep = [ln for ln in lines if ln.strip() and _seq_of(ln) not in seqs]
        rejected = self.path.with_name(self.path.name.removesuffix(".jsonl") + REJECTED_SUFFIX)
        old = rejected.read_text(encoding="ascii", errors="replace") if rejected.exists() else ""
        atomic_write_text(rejected, old + "".join(ln if ln.endswith("\n") else ln + "\n" for ln in bad))
        if keep:
            atomic_write_text(self.path, "".join(keep))
        else:
            self.path.unlink()
        return rejected

    def trim(self, upto_seq: int) -> None:
        """Drop the entries with seq <= ``upto_seq`` (atomically rewrites or removes the file)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text(encoding="ascii", errors="replace").splitlines(True)
                if _seq_of(line) > upto_seq]
        if keep:
            atomic_write_text(self.path, "".join(keep))
        else:
            self.path.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


TORN = "unreadable line (a write cut short by a crash)"


def _parse(line: str) -> tuple[int, list[Delta] | None, str]:
    try:
        obj = json.loads(line)
        seq = int(obj["seq"])
    except (ValueError, KeyError, TypeError):
        return -1, None, TORN
    try:
        return seq, [decode_delta(d) for d in obj["deltas"]], ""
    except (ValueError, KeyError, TypeError, zlib.error, binascii.Error) as exc:
        return seq, None, f"damaged entry ({type(exc).__name__}: {exc})"


def _seq_of(line: str) -> int:
    """The entry's sequence number, -1 for a torn or foreign line."""
    try:
        obj = json.loads(line)
        return int(obj["seq"]) if isinstance(obj.get("deltas"), list) else -1
    except (ValueError, KeyError, TypeError, AttributeError):
        return -1
