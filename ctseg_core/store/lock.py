"""Who may write a case: a lock file in the case folder naming its owner (pid, host, user, reader).

One process edits a case at a time; a second opener gets ``CaseLockedError`` (naming the owner) and opens
the case read-only. A lock is *stale* when its owner is certainly gone (a dead pid on this host) or has
not refreshed it for ``STALE_AFTER_S`` (an owner on another host, or a hung one): a dead owner's lock is
taken over on acquiring, an old one only by an explicit ``take_over`` (the user decides).

Locks are per case and reader: ``lock_path(folder, reader)`` is ``edit.lock`` for the default reader and
``edit-<reader>.lock`` for a named one, so several readers of one case can each hold their own.
Ownership is decided by a random token in the file, not by the pid: two ``Case`` objects in one process
are two owners. The file is created with O_EXCL (no two acquirers both win); the holder refreshes its
modification time (``refresh``), which is also how it notices that someone took the lock over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import CaseLockedError, StoreError
from ctseg_core.store.identity import os_account, reader_slug

STALE_AFTER_S = 10 * 60  # an owner that has not refreshed its lock for this long may be taken over
REFRESH_EVERY_S = 60  # how often an owner should call ``refresh`` (the app does it on a timer)


def lock_path(folder: Path, reader: str = "") -> Path:
    if not reader:
        return Path(folder) / "edit.lock"
    return Path(folder) / f"edit-{reader_slug(reader)}.lock"


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    user: str
    reader: str
    since: str  # ISO time the lock was taken
    token: str

    @classmethod
    def me(cls, reader: str = "") -> LockOwner:
        from ctseg_core.store.journal import now_iso

        return cls(os.getpid(), socket.gethostname(), os_account(), reader, now_iso(), uuid.uuid4().hex)

    def describe(self) -> str:
        reader = f", reader {self.reader}" if self.reader else ""
        return f"{self.user} on {self.host} (process {self.pid}{reader}) since {self.since[:19].replace('T', ' ')}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_file(cls, path: Path) -> LockOwner | None:
        """The owner in ``path``; None when there is no lock. A damaged lock file is an owner nobody is."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(obj["pid"]), str(obj["host"]), str(obj["user"]), str(obj.get("reader", "")),
                       str(obj["since"]), str(obj["token"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return cls(-1, "?", "?", "", "", "damaged")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def lock_age_s(path: Path) -> float:
    try:
        return max(time.time() - path.stat().st_mtime, 0.0)
    except FileNotFoundError:
        return 0.0


def owner_gone(owner: LockOwner) -> bool:
    """The owner is certainly not running: a dead process on this host, or a damaged lock file."""
    if owner.token == "damaged":
        return True
    return owner.host == socket.gethostname() and not _pid_alive(owner.pid)


def is_stale(path: Path, owner: LockOwner, stale_after_s: float = STALE_AFTER_S) -> bool:
    return owner_gone(owner) or lock_age_s(path) > stale_after_s


class CaseLock:
    """This process's hold on one case (and reader). ``acquire`` raises ``CaseLockedError`` when held."""

    def __init__(self, folder: Path, reader: str = ""):
        self.path = lock_path(folder, reader)
        self.reader = reader
        self.me = LockOwner.me(reader)
        self.held = False
        self.notes: list[str] = []  # what acquiring did (a dead owner's lock taken over)

    def owner(self) -> LockOwner | None:
        return LockOwner.from_file(self.path)

    def acquire(self) -> CaseLock:
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            other = self.owner()
            if other is None:
                continue  # released in between: try again
            if other.token == self.me.token:
                self.held = True
                return self
            if owner_gone(other):
                self.notes.append(f"the case was locked by {other.describe()}, which is no longer running: "
                                  "the lock was taken over")
                self._replace_if_still(other)
                continue
            stale = lock_age_s(self.path) > STALE_AFTER_S
            hint = (f"; the lock has not been refreshed for {lock_age_s(self.path) / 60:.0f} min and looks "
                    "stale: take it over if that program is gone") if stale else ""
            raise CaseLockedError(f"the case is being edited by {other.describe()}{hint}", self.path.parent,
                                  owner=other, stale=stale)
        raise StoreError("could not take the case lock (it changed hands repeatedly)", self.path)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create the case lock ({exc.strerror})", self.path) from exc
        try:
            data = self.me.to_json().encode()
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise StoreError(f"cannot write the case lock ({exc.strerror})", self.path) from exc
        os.close(fd)
        return True

    def _replace_if_still(self, other: LockOwner) -> None:
        """Remove ``other``'s lock unless it changed meanwhile (then the loop looks again)."""
        if self.owner() == other:
            self.path.unlink(missing_ok=True)

    def take_over(self) -> CaseLock:
        """Make this process the owner whoever holds the lock now (the user's explicit decision)."""
        previous = self.owner()
        atomic_write_text(self.path, self.me.to_json())
        self.held = True
        if previous is not None and previous.token != self.me.token:
            self.notes.append(f"took the case lock over from {previous.describe()}")
        return self

    def still_mine(self) -> bool:
        """Whether the lock file still names this owner (False after another process took it over)."""
        owner = self.owner()
        return self.held and owner is not None and owner.token == self.me.token

    def refresh(self) -> bool:
        """Touch the lock (it is not stale while refreshed); False when it is no longer ours."""
        if not self.still_mine():
            self.held = False
            return False
        with contextlib.suppress(OSError):
            os.utime(self.path)
        return True

    def release(self) -> None:
        if self.held and self.still_mine():
            self.path.unlink(missing_ok=True)
        self.held = False


def others_editing(folder: Path, mine: CaseLock | None = None) -> bool:
    """Whether a live process other than ``mine`` holds a lock of the case (any reader's, or the case's)."""
    for path in Path(folder).glob("edit*.lock"):
        owner = LockOwner.from_file(path)
        if owner is not None and not is_stale(path, owner) and (mine is None or owner.token != mine.me.token):
            return True
    return False


MUTEX_STALE_S = 30.0  # a short-lived update lock older than this was left by a crash: broken


@contextlib.contextmanager
def update_mutex(path: Path, timeout_s: float = 15.0):
    """Hold ``path`` (an O_EXCL lock file naming its process and host) for a read-modify-write of a shared
    file (``case.json``) that several processes, on several hosts, may update; one left behind by a crash is
    broken at once when its process on this host is gone, else after ``MUTEX_STALE_S``. StoreError when it
    cannot be taken within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            if lock_age_s(path) > MUTEX_STALE_S or _mutex_holder_gone(path):
                path.unlink(missing_ok=True)
                continue
            if time.monotonic() > deadline:
                raise StoreError("another program is updating this file and does not finish", path) from None
            time.sleep(0.01)
        except OSError as exc:
            raise StoreError(f"cannot create the update lock ({exc.strerror})", path) from exc
    try:
        os.write(fd, f"{os.getpid()} {socket.gethostname()}".encode())
    finally:
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _mutex_holder_gone(path: Path) -> bool:
    """True when the update lock was left by a process of this host that no longer runs (killed while
    holding it); False when its holder runs, is on another host, or is not yet written in the file."""
    try:
        pid, host = path.read_text(encoding="utf-8").split(maxsplit=1)
        return host.strip() == socket.gethostname() and not _pid_alive(int(pid))
    except (OSError, ValueError):
        return False
