"""The one error family of ctseg. Every message names the file (where there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class CtsegError(Exception):
    """Base of every error ctseg raises on purpose."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class LoadError(CtsegError):
    """A file or folder could not be read as an image (no pixel data, corrupt, unknown format)."""


class GeometryError(LoadError):
    """The slices do not form a consistent volume (mixed orientation, gaps too large, ...)."""


class UnsupportedTransferSyntaxError(LoadError):
    """Pixel data is compressed in a syntax no installed plugin decodes."""


class NotCTError(LoadError):
    """The series is not a CT image series."""


class LabelMismatchError(CtsegError):
    """A label map does not belong to the scan (shape or geometry differ)."""


class CheckpointError(CtsegError):
    """A model checkpoint is missing, corrupt, or does not match what is asked of it."""


class DeviceError(CtsegError):
    """The compute device asked for does not exist on this machine (or its name is not a device)."""


class StoreError(CtsegError):
    """The annotation workspace is damaged or used wrongly."""


class WriteError(CtsegError):
    """A file could not be written (disk full, no permission, ...); the previous file is left as it was."""

    def __init__(self, problem: str, path: str | Path | None = None, disk_full: bool = False):
        super().__init__(problem, path)
        self.disk_full = disk_full


class CaseLockedError(StoreError):
    """The case is being edited by another process (its lock names who); it can be opened read-only."""

    def __init__(self, problem: str, path: str | Path | None = None, owner=None, stale: bool = False):
        super().__init__(problem, path)
        self.owner = owner  # ctseg_core.store.lock.LockOwner
        self.stale = stale  # the lock looks abandoned (not refreshed for long): it may be taken over


class Cancelled(CtsegError):
    """A long operation was cancelled through its token."""

    def __init__(self, problem: str = "cancelled"):
        super().__init__(problem)


class PacsError(CtsegError):
    """A DICOM network operation failed (the node is unreachable, refused the association or the request)."""

    def __init__(self, problem: str, path: str | Path | None = None, transient: bool = False):
        super().__init__(problem, path)
        self.transient = transient  # worth retrying later (no connection, aborted) rather than a refusal
