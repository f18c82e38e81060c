"""The append-only edit journal of a case: one JSON line per committed step, fsync'd.

Each line: ``{"seq": n, "time": ISO, "deltas": [{"bbox": [...], "mask": b64(zlib(packed bits)),
"old": b64(zlib(uint8)), "new": b64(zlib(uint8))}, ...]}``. Replay writes the ``new`` values in order,
which is idempotent: replaying entries that a saved label map already holds changes nothing, so a crash
between saving the label map and trimming the journal loses nothing and doubles nothing. A line torn by
a crash while appending is skipped.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ctseg_core.atomic import atomic_write_text
from ctseg_core.edit.delta import Delta


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="ascii") as f:
            if f.tell() > 0 and not self._ends_with_newline():
                f.write("\n")  # a torn line from a crash: start a fresh line after it
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.last_seq = seq
        return seq

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def entries(self) -> Iterator[tuple[int, list[Delta]]]:
        """(seq, deltas) in order; unreadable lines (a write torn by a crash) are skipped."""
        if not self.path.exists():
            return
        with open(self.path, "r", encoding="ascii", errors="replace") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                    yield int(obj["seq"]), [decode_delta(d) for d in obj["deltas"]]
                except (ValueError, KeyError, TypeError, zlib.error):
                    continue

    def __len__(self) -> int:
        """Number of readable entries."""
        return len(self._seqs())

    def replay(self, labels: np.ndarray, after_seq: int = 0) -> int:
        """Apply the entries with seq > ``after_seq`` to ``labels``; returns how many were applied."""
        n = 0
        for seq, deltas in self.entries():
            if seq > after_seq:
                for d in deltas:
                    d.apply(labels)
                n += 1
        return n

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


def _seq_of(line: str) -> int:
    """The entry's sequence number, -1 for a torn or foreign line."""
    try:
        obj = json.loads(line)
        return int(obj["seq"]) if isinstance(obj.get("deltas"), list) else -1
    except (ValueError, KeyError, TypeError, AttributeError):
        return -1
