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


class Progress(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


ProgressCallback = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str = "") -> None:
    """A progress callback that ignores its calls."""
