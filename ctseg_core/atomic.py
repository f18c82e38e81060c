"""Atomic, verified file writes: write a temporary file beside the target, check it, fsync, rename.

Every writer of ctseg goes through ``atomic_path`` (or the helpers below), so a failed write never
replaces a good file: some libraries do not raise when the disk is full (SimpleITK prints "wrote only 0
of N bytes" and returns), so what was written is checked before the rename: never an empty file, the
expected size for bytes, and the caller's ``verify`` (e.g. the image read back and compared). Any
``OSError`` on the way (disk full, permission, ...) becomes a ``WriteError`` naming the target; the
target is then left exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ctseg_core.errors import WriteError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_error(exc: OSError, target: str | Path, kept: bool = True) -> WriteError:
    """The ``WriteError`` for an ``OSError`` while writing ``target`` ("disk full" said plainly)."""
    what = "the disk is full" if exc.errno in DISK_FULL else (exc.strerror or str(exc))
    tail = "; the previous file is kept unchanged" if kept else ""
    return WriteError(f"could not be written: {what}{tail}", target, disk_full=exc.errno in DISK_FULL)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None,
                verify: Callable[[Path], None] | None = None, allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces the target atomically.

    The writer (e.g. SimpleITK, safetensors) writes the temporary path; if it raises, or leaves an empty
    file, or ``verify(tmp)`` raises, the target is left as it was and the temporary file is removed.
    ``suffix`` keeps the extension writers sniff; ``allow_empty`` accepts an empty result.
    """
    target = Path(target)
    if target.is_dir():
        raise WriteError("is a folder; give a file name", target)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = suffix if suffix is not None else "".join(target.suffixes)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file gets the usual permissions
        yield tmp_path
        if not allow_empty and tmp_path.stat().st_size == 0:
            raise WriteError("could not be written: the writer produced an empty file (is the disk full?); "
                             "the previous file is kept unchanged", target, disk_full=True)
        if verify is not None:
            verify(tmp_path)
        _fsync_file(tmp_path)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise write_error(exc, target) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    def same_size(tmp: Path) -> None:
        if tmp.stat().st_size != len(data):
            raise WriteError(f"could not be written: {tmp.stat().st_size} of {len(data)} bytes reached the disk "
                             "(is the disk full?); the previous file is kept unchanged", target, disk_full=True)

    with atomic_path(target, verify=same_size, allow_empty=not data) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_with(target: str | Path, write: Callable[[Path], None],
                      verify: Callable[[Path], None] | None = None) -> None:
    """Call ``write(tmp_path)``, check it with ``verify(tmp_path)``, and move it onto ``target`` atomically."""
    with atomic_path(target, verify=verify) as tmp:
        write(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
