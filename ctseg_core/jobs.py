"""Plain objects for long operations: a cancel token and a progress callback type (no Qt)."""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from ctseg_core.errors import Cancelled


class CancelToken:
    """Set from any thread; long operations check it between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


class PauseToken:
    """Asks a long job to give its device up between two units of work (set from any thread or a signal
    handler) and lets it continue (``resume``)."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def requested(self) -> bool:
        return not self._running.is_set()

    def wait(self, cancel: CancelToken | None = None, poll_s: float = 0.2) -> None:
        """Block while paused; returns at once when resumed or ``cancel`` is set."""
        while not self._running.wait(poll_s):
            if cancel is not None and cancel.cancelled:
                return


class Progress(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


ProgressCallback = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str = "") -> None:
    """A progress callback that ignores its calls."""
