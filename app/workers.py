"""Everything that runs off the GUI thread, and the only module in app/ that touches torch.

- ``run_task(fn, ...)``: a one-shot job (loading a scan, scanning a folder, building 3-D surfaces,
  computing findings) on a small thread pool; results and errors come back as queued signals.
- ``InferenceController``: a long-lived QThread whose ``InferenceWorker`` owns the predictor. Each run
  has a request id; slices stream back (``slice_ready``) and the controller drops results of stale
  requests. Cancel goes through a ``CancelToken`` (never QThread.terminate).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from ctseg_core.errors import Cancelled, CtsegError
from ctseg_core.jobs import CancelToken
from ctseg_core.model_identity import ModelIdentity
from ctseg_core.predictor import Predictor

# The model stack (torch, timm -> torchvision -> triton) is imported here, on the GUI thread, when the app
# starts: importing it for the first time in the inference thread while the GUI thread imported other
# extension modules crashed the process (a segmentation fault inside triton's import).
import timm  # noqa: E402,F401


@dataclass
class TaskError:
    """An exception raised in a worker, carried to the GUI thread."""

    exception: BaseException
    traceback: str

    @property
    def expected(self) -> bool:
        return isinstance(self.exception, CtsegError)

    def message(self) -> str:
        if self.expected:
            return str(self.exception)
        return f"Unexpected error: {type(self.exception).__name__}: {self.exception}"


def lower_thread_priority(nice: int = 10) -> None:
    """Make the calling worker thread yield the CPU to the GUI thread (Linux: per-thread nice; else no-op)."""
    import threading

    if hasattr(os, "setpriority") and sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


class _TaskSignals(QObject):
    result = Signal(object)
    error = Signal(object)
    progress = Signal(int, int, str)


class _Task(QRunnable):
    def __init__(self, fn: Callable, signals: _TaskSignals, with_progress: bool):
        super().__init__()
        self.setAutoDelete(True)
        self.fn, self.signals, self.with_progress = fn, signals, with_progress

    def run(self):
        lower_thread_priority()
        try:
            if self.with_progress:
                result = self.fn(lambda done, total, message="": self.signals.progress.emit(done, total, message))
            else:
                result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - every error reaches the GUI as a TaskError
            self._report(self.signals.error, TaskError(exc, traceback.format_exc()))
        else:
            self._report(self.signals.result, result)

    @staticmethod
    def _report(signal, value) -> None:
        """Emit, unless the application has already gone (a task that outlives the window at exit has no
        one to report to; Qt then raises "Signal source has been deleted")."""
        try:
            signal.emit(value)
        except RuntimeError:
            pass


_POOL: QThreadPool | None = None
_LIVE: set[_TaskSignals] = set()  # keep signal objects alive until their task reported


def task_pool() -> QThreadPool:
    global _POOL
    if _POOL is None:
        _POOL = QThreadPool()
        _POOL.setMaxThreadCount(2)
    return _POOL


def run_task(fn: Callable, on_result: Callable | None = None, on_error: Callable[[TaskError], None] | None = None,
             on_progress: Callable[[int, int, str], None] | None = None) -> _TaskSignals:
    """Run ``fn()`` (or ``fn(progress)`` when ``on_progress`` is given) on the pool; callbacks run on the GUI thread."""
    signals = _TaskSignals()
    _LIVE.add(signals)

    def done(*_):
        _LIVE.discard(signals)

    if on_result is not None:
        signals.result.connect(on_result)
    if on_error is not None:
        signals.error.connect(on_error)
    if on_progress is not None:
        signals.progress.connect(on_progress)
    signals.result.connect(done)
    signals.error.connect(done)
    task_pool().start(_Task(fn, signals, on_progress is not None))
    return signals


# ---------------------------------------------------------------- inference
def inference_threads() -> int:
    """Torch threads for the inference worker (CTSEG_INFER_THREADS; default: all but one core, at least 1)."""
    env = os.environ.get("CTSEG_INFER_THREADS")
    if env:
        return max(1, int(env))
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint to load and the Predictor options to run it with (those its model kind takes are used:
    ``members`` applies to ensembles only)."""

    path: str
    options: dict = field(default_factory=dict)


def load_predictor(path: str, options: dict | None = None):
    from ctseg_core.checkpoint import load_checkpoint
    from ctseg_core.predictor import applicable_options

    model, card = load_checkpoint(path, device="cpu")
    return Predictor(model, card, device="auto", **applicable_options(card, options or {}))


class InferenceWorker(QObject):
    """Lives in the inference thread; owns the predictor. Talk to it only through signals and ``cancel``."""

    model_loaded = Signal(object)  # ctseg_core.model_identity.ModelIdentity of the loaded model
    model_failed = Signal(object)  # TaskError
    slice_ready = Signal(int, int, object, object)  # request id, z, labels (y, x) uint8, uncertainty (y, x) float32
    progress = Signal(int, int, int, str)  # request id, done, total, message (e.g. "member 2/4: tile 5/46")
    finished = Signal(int, object)  # request id, labels (z, y, x) uint8
    slice_scores = Signal(int, object)  # request id, float32 (z,) per-slice probabilities (triage models only)
    guard_report = Signal(int, object)  # request id, ctseg_core.guard.GuardReport (slice models with the guard)
    failed = Signal(int, object)  # request id, TaskError
    cancelled = Signal(int)  # request id
    prefetched = Signal(str, str)  # case folder, outcome ("stored", "skipped", "cancelled", "failed: ...")

    def __init__(self):
        super().__init__()
        self.predictor = None
        self._token = CancelToken()
        self._threads_set = False

    def cancel(self) -> None:
        """Thread-safe: stop the running request at its next slice."""
        self._token.cancel()

    def new_token(self) -> CancelToken:
        self._token = CancelToken()
        return self._token

    @Slot(object)
    def load_model(self, source) -> None:
        """``source``: a ``ModelSource``, a checkpoint path, or an already built predictor object (tests)."""
        self._set_threads()
        try:
            if isinstance(source, (str, os.PathLike)):
                source = ModelSource(str(source))
            self.predictor = load_predictor(source.path, source.options) if isinstance(source, ModelSource) \
                else source
        except BaseException as exc:  # noqa: BLE001
            self.predictor = None
            self.model_failed.emit(TaskError(exc, traceback.format_exc()))
            return
        self.model_loaded.emit(ModelIdentity.of_predictor(self.predictor))

    @Slot(int, object, int, object)
    def run(self, request_id: int, volume, start_slice: int, token: CancelToken) -> None:
        if token.cancelled:
            self.cancelled.emit(request_id)
            return
        from ctseg_core.prediction import slice_uncertainty

        def on_slice(z, labels_yx, probs_cyx):
            token.raise_if_cancelled()
            unc = slice_uncertainty(probs_cyx) if probs_cyx is not None else None
            self.slice_ready.emit(request_id, int(z), np.array(labels_yx, np.uint8), unc)

        def on_progress(done, total, message=""):
            self.progress.emit(request_id, int(done), int(total), str(message or ""))

        try:
            pred = self.predictor.predict(volume, start_slice=start_slice, on_slice=on_slice, cancel=token,
                                          progress=on_progress)
        except Cancelled:
            self.cancelled.emit(request_id)
        except BaseException as exc:  # noqa: BLE001
            self.failed.emit(request_id, TaskError(exc, traceback.format_exc()))
        else:
            if getattr(pred, "slice_probabilities", None) is not None:
                self.slice_scores.emit(request_id, np.asarray(pred.slice_probabilities, np.float32))
            if getattr(pred, "guard_report", None) is not None:
                self.guard_report.emit(request_id, pred.guard_report)
            self.finished.emit(request_id, np.asarray(pred.labels.array, np.uint8))

    @Slot(str, object)
    def prefetch(self, case_folder: str, token: CancelToken) -> None:
        """Segment a workspace case in the background and store the prediction with it (``prefetch_case``)."""
        from ctseg_core.prefetch import prefetch_case
        from ctseg_core.store.case import Case

        if self.predictor is None or token.cancelled:
            self.prefetched.emit(case_folder, "cancelled" if token.cancelled else "skipped")
            return
        try:
            stored = prefetch_case(self.predictor, Case(Path(case_folder)), cancel=token)
        except Cancelled:
            self.prefetched.emit(case_folder, "cancelled")
        except BaseException as exc:  # noqa: BLE001
            self.prefetched.emit(case_folder, f"failed: {exc}")
        else:
            self.prefetched.emit(case_folder, "stored" if stored else "skipped")

    def _set_threads(self) -> None:
        if self._threads_set:
            return
        self._threads_set = True
        lower_thread_priority()
        import torch

        torch.set_num_threads(inference_threads())


class InferenceController(QObject):
    """GUI-side handle of the inference thread; forwards only the current request's results."""

    model_loaded = Signal(object)  # ModelIdentity
    model_failed = Signal(object)
    slice_ready = Signal(int, object, object)  # z, labels, uncertainty
    progress = Signal(int, int, float, str)  # done, total, eta seconds (nan if unknown), message
    finished = Signal(object)  # labels (z, y, x)
    slice_scores = Signal(object)  # float32 (z,) per-slice probabilities, before ``finished`` (triage models)
    guard_report = Signal(object)  # ctseg_core.guard.GuardReport, before ``finished`` (when the guard ran)
    failed = Signal(object)  # TaskError
    cancelled = Signal()
    running_changed = Signal(bool)
    prefetched = Signal(str, str)  # case folder, outcome

    _load = Signal(object)
    _run = Signal(int, object, int, object)
    _prefetch = Signal(str, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("ctseg-inference")
        self.worker = InferenceWorker()
        self.worker.moveToThread(self.thread)
        self._load.connect(self.worker.load_model)
        self._run.connect(self.worker.run)
        self.worker.model_loaded.connect(self._on_model_loaded)
        self.worker.model_failed.connect(self.model_failed)
        self.worker.slice_ready.connect(self._on_slice)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.slice_scores.connect(self._on_scores)
        self.worker.guard_report.connect(lambda rid, report: self.guard_report.emit(report)
                                         if rid == self.request_id else None)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self._prefetch.connect(self.worker.prefetch)
        self.worker.prefetched.connect(self.prefetched)
        self.thread.start()
        self.request_id = 0
        self.has_model = False
        self.running = False
        self._started_at = 0.0

    def load_model(self, source) -> None:
        self.has_model = False
        self._load.emit(source)

    def start(self, volume, start_slice: int) -> int:
        """Cancel any running request and queue a new one; returns its id."""
        self.worker.cancel()
        self.request_id += 1
        token = self.worker.new_token()
        self._started_at = time.perf_counter()
        self._set_running(True)
        self._run.emit(self.request_id, volume, int(start_slice), token)
        return self.request_id

    def cancel(self) -> None:
        self.worker.cancel()

    def prefetch(self, case_folder: str) -> CancelToken:
        """Queue a background prediction of another case (stored with it); cancel it with the returned token."""
        token = CancelToken()
        self._prefetch.emit(str(case_folder), token)
        return token

    def invalidate(self) -> None:
        """Cancel and forget the running request (its late results are dropped), e.g. when the scan changes."""
        self.worker.cancel()
        self.request_id += 1
        self._set_running(False)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        self.worker.cancel()
        self.thread.quit()
        self.thread.wait(timeout_ms)

    def _set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            self.running_changed.emit(running)

    def _on_model_loaded(self, identity) -> None:
        self.has_model = True
        self.model_loaded.emit(identity)

    def _on_slice(self, rid, z, labels, unc):
        if rid == self.request_id:
            self.slice_ready.emit(z, labels, unc)

    def _on_progress(self, rid, done, total, message=""):
        if rid != self.request_id:
            return
        elapsed = time.perf_counter() - self._started_at
        eta = elapsed / done * (total - done) if done > 0 else float("nan")
        self.progress.emit(done, total, eta, message)

    def _on_scores(self, rid, scores):
        if rid == self.request_id:
            self.slice_scores.emit(scores)

    def _on_finished(self, rid, labels):
        if rid == self.request_id:
            self._set_running(False)
            self.finished.emit(labels)

    def _on_failed(self, rid, error):
        if rid == self.request_id:
            self._set_running(False)
            self.failed.emit(error)

    def _on_cancelled(self, rid):
        if rid == self.request_id:
            self._set_running(False)
            self.cancelled.emit()
