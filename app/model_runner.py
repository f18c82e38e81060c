"""The active model in the GUI: loading a checkpoint, running it on the open scan, progress, cancel.

``ModelRunner`` owns the ``InferenceController`` (the inference thread), tracks the model's state,
streams predicted slices into the session, and shows a progress bar with ETA and a cancel button
(``progress`` and ``cancel_button``, placed in the status bar by the main window).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QProgressBar, QPushButton

from app.session import Session
from app.workers import InferenceController, TaskError

NONE, LOADING, READY, FAILED = "none", "loading", "ready", "failed"


class ModelRunner(QObject):
    done = Signal(str)  # a requested run ended: "inferred", "no model", "failed", "cancelled"
    error = Signal(str, object)  # (title, TaskError) for the window's error dialog

    def __init__(self, session: Session, settings: QSettings, parent=None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.controller = InferenceController(self)
        self.state = NONE
        self._pending = False  # run as soon as both the scan and the model are ready
        self._started_at = 0.0
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        c = self.controller
        c.model_loaded.connect(self._on_model_loaded)
        c.model_failed.connect(self._on_model_failed)
        c.slice_ready.connect(lambda z, lab, unc: session.apply_predicted_slice(z, lab, unc))
        c.progress.connect(self._on_progress)
        c.finished.connect(self._on_finished)
        c.slice_scores.connect(self._on_slice_scores)
        c.failed.connect(self._on_failed)
        c.cancelled.connect(self._on_cancelled)
        c.running_changed.connect(session.set_inference_running)
        session.volume_changed.connect(self._on_new_volume)

    # ---- model ----
    def configured_path(self, path: str | None = None) -> str:
        from ctseg_core.resources import DEFAULT_MODEL

        return path or str(self.settings.value("model/path", "") or "") or str(DEFAULT_MODEL)

    def load_model(self, path: str | None = None) -> None:
        """Load a checkpoint in the inference thread (None: the configured or the bundled default model)."""
        path = self.configured_path(path)
        if not Path(path).exists():
            if self.state != READY:
                self.state = NONE
            self.session.log(f"No model installed ({path} not found): the app works as a viewer. "
                             "Load a checkpoint from the Model menu.", "warning")
            self._maybe_start()
            return
        self.session.log(f"loading model {path}")
        self.state = LOADING
        self.controller.load_model(path)

    def load_predictor(self, predictor) -> None:
        """Use an already built predictor (anything with .card.summary() and .predict(...))."""
        self.state = LOADING
        self.controller.load_model(predictor)

    def _on_model_loaded(self, summary: str) -> None:
        self.state = READY
        self.session.set_model_summary(summary)
        self.session.log(f"model ready: {summary}")
        self._maybe_start()

    def _on_model_failed(self, error: TaskError) -> None:
        self.state = FAILED
        self.session.set_model_summary("")
        self.error.emit("Could not load the model", error)
        self._maybe_start()

    # ---- runs ----
    def request_run(self) -> None:
        """Run on the open scan as soon as the model is ready (``done`` tells how it ended)."""
        self._pending = True
        self._maybe_start()

    def _maybe_start(self) -> None:
        if not self._pending or not self.session.has_volume() or self.state == LOADING:
            return
        self._pending = False
        if self.state == READY:
            self.run()
        else:
            self.session.log("no model: showing the scan without segmentation", "warning")
            self.done.emit("no model")

    def run(self) -> None:
        s = self.session
        if not s.has_volume():
            return
        if not self.controller.has_model:
            s.log("no model loaded: load a checkpoint from the Model menu", "warning")
            return
        s.reset_prediction()
        z = s.position[0]
        self._started_at = time.perf_counter()
        self.controller.start(s.volume, z)
        s.log(f"inference started at slice {z + 1} of {s.volume.shape[0]}")
        self.progress.setRange(0, s.volume.shape[0])
        self.progress.setValue(0)
        self.progress.setFormat("Inference %v/%m")
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)

    def cancel(self) -> None:
        if self.controller.running:
            self.controller.cancel()

    def shutdown(self) -> None:
        self.controller.shutdown()

    def _on_new_volume(self) -> None:
        if self.controller.running:
            self.controller.invalidate()
            self._end()
            self.session.log("inference of the previous scan stopped", "warning")

    def _on_progress(self, done: int, total: int, eta: float) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        eta_text = "" if np.isnan(eta) else f", about {eta:.0f} s left"
        self.progress.setFormat(f"Inference %v/%m{eta_text}")

    def _end(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)

    def _on_finished(self, labels: np.ndarray) -> None:
        s = self.session
        for z in np.nonzero(~s.predicted_slices)[0]:  # slices the stream did not deliver
            s.apply_predicted_slice(int(z), labels[z], None)
        self._end()
        s.log(f"inference finished in {time.perf_counter() - self._started_at:.1f} s")
        self.done.emit("inferred")

    def _on_slice_scores(self, scores: np.ndarray) -> None:
        """A triage model's per-slice probabilities: the triage strip shows them; the log gives the call."""
        from ctseg_core.triage import Triage

        self.session.set_slice_probabilities(scores)
        self.session.log(f"triage: {Triage(scores).describe()} (this model draws no outlines)")

    def _on_failed(self, error: TaskError) -> None:
        self._end()
        self.error.emit("Inference failed", error)
        self.done.emit("failed")

    def _on_cancelled(self) -> None:
        self._end()
        self.session.log("inference cancelled (the slices already predicted are kept)", "warning")
        self.done.emit("cancelled")
