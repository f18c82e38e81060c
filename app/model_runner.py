"""The active model in the GUI: loading a checkpoint, running it on the open scan, progress, cancel.

``ModelRunner`` owns the ``InferenceController`` (the inference thread) and tracks the model's state.
- A first run streams its slices into the session as they arrive (the overlay fills in).
- A re-run, when a prediction is already shown, collects its slices apart and puts the whole new
  prediction in place only when it is complete: cancelling it (or a failure) keeps the previous one.
- A run requested automatically (a scan was opened) is skipped when the case already holds a complete
  prediction made by the active model; Model > Run model (or the findings panel's Re-run) runs anyway.
The progress bar, its text (with ETA) and the cancel button are placed in the status bar by the window.

Every run goes through the ``device_queue`` (``ctseg_core.device_queue``), which the training panel shares:
inference of the open case first, then a prefetch of the next case, then training; a training run is
paused (between two steps) while the open case is segmented, never run beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton

from ctseg_core.device_queue import RUNNING, DeviceJob, DeviceQueue

from app.session import Session
from app.workers import InferenceController, ModelSource, TaskError

NONE, LOADING, READY, FAILED = "none", "loading", "ready", "failed"
CANCEL_SHORTCUT = "Ctrl+."  # Esc belongs to the editor (abort a stroke, leave a tool, close a popup)


class _Staged:
    """A re-run's slices, kept apart until the whole prediction is there."""

    def __init__(self, shape):
        self.labels = np.zeros(shape, np.uint8)
        self.uncertainty = np.full(shape, np.nan, np.float32)

    def put(self, z: int, labels_yx, uncertainty_yx) -> None:
        self.labels[z] = labels_yx
        if uncertainty_yx is not None:
            self.uncertainty[z] = uncertainty_yx


class ModelRunner(QObject):
    done = Signal(str)  # a requested run ended: "inferred", "stored", "no model", "failed", "cancelled"
    error = Signal(str, object)  # (title, TaskError) for the window's error dialog
    queue_changed = Signal(str)  # the device queue, in words
    prefetched = Signal(str, str)  # case folder, outcome

    def __init__(self, session: Session, settings: QSettings, parent=None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.controller = InferenceController(self)
        self.device_queue = DeviceQueue(on_change=lambda: self.queue_changed.emit(self.device_queue.describe()))
        self._infer_job: DeviceJob | None = None
        self._prefetch_job: DeviceJob | None = None
        self.state = NONE
        self._pending = False  # run as soon as both the scan and the model are ready
        self._started_at = 0.0
        self._staged: _Staged | None = None  # a re-run in progress (None: streaming into the session)
        self._run_model = None  # identity of the model the running request uses
        self._scores = None  # per-slice probabilities of the running request (triage models), else None
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(140)
        self.progress.setVisible(False)
        self.progress_text = QLabel()
        self.progress_text.setVisible(False)
        self.cancel_button = QPushButton("Cancel inference")
        self.cancel_button.setToolTip(f"stop the model run ({CANCEL_SHORTCUT}); a re-run keeps the previous result")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        c = self.controller
        c.model_loaded.connect(self._on_model_loaded)
        c.model_failed.connect(self._on_model_failed)
        c.slice_ready.connect(self._on_slice)
        c.progress.connect(self._on_progress)
        c.finished.connect(self._on_finished)
        c.slice_scores.connect(self._on_slice_scores)
        c.guard_report.connect(self._on_guard_report)
        c.failed.connect(self._on_failed)
        c.cancelled.connect(self._on_cancelled)
        c.running_changed.connect(session.set_inference_running)
        c.prefetched.connect(self._on_prefetched)
        session.volume_changed.connect(self._on_new_volume)

    # ---- model ----
    def configured_path(self, path: str | None = None) -> str:
        """The checkpoint to load: ``path``, else the one chosen in the settings, else the app's default
        (``ctseg_core.resources.APP_DEFAULT_MODEL``); a bundled model's name ("aa_unet", "blast_ct") stands
        for its checkpoint."""
        from ctseg_core.resources import APP_DEFAULT_MODEL, model_path

        return str(model_path(path or str(self.settings.value("model/path", "") or "") or APP_DEFAULT_MODEL))

    def configured_options(self) -> dict:
        """Predictor options chosen in the settings (Model menu): the ensemble members to run (the app's
        default number when nothing was chosen; only ensembles take it), and the anatomical guard switched
        off (it is on by default; slice models only)."""
        from ctseg_core.resources import APP_DEFAULT_MEMBERS

        chosen = str(self.settings.value("model/path", "") or "")
        members = int(self.settings.value("model/members", 0) or 0) or (0 if chosen else APP_DEFAULT_MEMBERS or 0)
        options = {"members": members} if members > 0 else {}
        if not guard_enabled(self.settings):
            options["guard"] = None
        return options

    def load_model(self, path: str | None = None, options: dict | None = None) -> None:
        """Load a checkpoint in the inference thread (None: the configured or the bundled default model)
        with Predictor ``options`` (None: the configured ones; ``members`` applies to ensembles only)."""
        options = self.configured_options() if options is None else options
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
        self.controller.load_model(ModelSource(path, dict(options)))

    def load_predictor(self, predictor) -> None:
        """Use an already built predictor (anything with .card.summary() and .predict(...))."""
        self.state = LOADING
        self.controller.load_model(predictor)

    def _on_model_loaded(self, identity) -> None:
        self.state = READY
        self.session.set_model(identity)
        self.session.log(f"model ready: {identity.summary}")
        self._maybe_start()

    def _on_model_failed(self, error: TaskError) -> None:
        self.state = FAILED
        self.session.set_model(None)
        self.error.emit("Could not load the model", error)
        self._maybe_start()

    # ---- runs ----
    def request_run(self, reuse_stored: bool = False) -> None:
        """Run on the open scan as soon as the model is ready (``done`` tells how it ended).
        ``reuse_stored``: skip the run when the scan already has a complete prediction of that model."""
        self._pending = "reuse" if reuse_stored else "run"
        self._maybe_start()

    def _maybe_start(self) -> None:
        if not self._pending or not self.session.has_volume() or self.state == LOADING:
            return
        reuse, self._pending = self._pending == "reuse", False
        if self.state != READY:
            self.session.log("no model: showing the scan without segmentation", "warning")
            self.done.emit("no model")
        elif reuse and self.has_current_prediction():
            self.session.log(f"the case's stored prediction comes from the active model "
                             f"({self.session.model.label}): not run again (Model > Run model re-runs it)")
            self.done.emit("stored")
        else:
            self.run()

    def has_current_prediction(self) -> bool:
        """A complete prediction of the active model is shown."""
        s = self.session
        return s.prediction_complete and s.model is not None and s.model.same_model(s.prediction_model)

    def run(self) -> None:
        s = self.session
        if not s.has_volume():
            return
        if not self.controller.has_model:
            s.log("no model loaded: load a checkpoint from the Model menu", "warning")
            return
        rerun = bool(s.predicted_slices.any())
        self._staged = _Staged(s.volume.shape) if rerun else None
        self._scores = None  # a triage model's slice probabilities, when this run gives them
        self._guard_report = None  # what the anatomical guard did in this run, when it ran
        self._run_model = s.model
        if not rerun:
            s.begin_streamed_prediction(s.model)
        z, volume = s.position[0], s.volume
        self._started_at = time.perf_counter()
        self._submit_inference(lambda: self.controller.start(volume, z))
        s.log(f"inference started at slice {z + 1} of {s.volume.shape[0]}"
              + (" (re-run: the current prediction stays until the new one is complete)" if rerun else "")
              + ("" if self._infer_job is None or self._infer_job.state == RUNNING
                 else "; it waits for the device: the training run pauses first"))
        self.progress.setRange(0, s.volume.shape[0])
        self.progress.setValue(0)
        self._show_progress(0, s.volume.shape[0], float("nan"))
        for w in (self.progress, self.progress_text, self.cancel_button):
            w.setVisible(True)

    # ---- the device queue ----
    def _submit_inference(self, start) -> None:
        """Run ``start`` (which queues a request on the inference thread) when the device is the open case's."""
        job = self._infer_job
        if job is not None and job.state == RUNNING:
            start()  # the inference thread replaces its request (the previous one is cancelled)
        elif job is not None:
            job.start = start  # still waiting: the newest request is the one to run
        else:
            self._infer_job = self.device_queue.submit(DeviceJob("infer", "open case", start))

    def _release_inference(self) -> None:
        job, self._infer_job = self._infer_job, None
        if job is not None:
            self.device_queue.finished(job)

    def prefetch(self, case_folder: str, label: str) -> bool:
        """Queue a background prediction of another case (after the open case's work; cancelled when the open
        case needs the device). False when the model is not ready or a prefetch is already queued."""
        if self.state != READY or self._prefetch_job is not None:
            return False
        holder: dict = {}

        def start():
            holder["token"] = self.controller.prefetch(case_folder)

        def give_way():
            if "token" in holder:
                holder["token"].cancel()  # it reports ``prefetched`` (cancelled), which frees the device

        self._prefetch_job = self.device_queue.submit(DeviceJob("prefetch", label, start, pause=give_way))
        self._prefetch_job.folder = str(case_folder)
        return True

    def _on_prefetched(self, folder: str, outcome: str) -> None:
        job, self._prefetch_job = self._prefetch_job, None
        if job is not None:
            self.device_queue.finished(job)
        if outcome == "stored":
            self.session.log(f"next case segmented in the background ({Path(folder).name})")
        elif outcome.startswith("failed"):
            self.session.log(f"background segmentation of {Path(folder).name} {outcome}", "warning")
        self.prefetched.emit(folder, outcome)

    @property
    def rerunning(self) -> bool:
        return self._staged is not None

    def cancel(self) -> None:
        if self.controller.running:
            self.controller.cancel()

    def shutdown(self) -> None:
        if self._prefetch_job is not None and self._prefetch_job.pause is not None:
            self._prefetch_job.pause()
        self.controller.shutdown()

    def _on_new_volume(self) -> None:
        self._staged = None
        if self.controller.running:
            self.controller.invalidate()
            self._end()
            self.session.log("inference of the previous scan stopped", "warning")
        self._release_inference()

    def _on_slice(self, z: int, labels, uncertainty) -> None:
        if self._staged is not None:
            self._staged.put(z, labels, uncertainty)
        else:
            self.session.apply_predicted_slice(z, labels, uncertainty)

    def _on_progress(self, done: int, total: int, eta: float, message: str = "") -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self._show_progress(done, total, eta, message)

    def _show_progress(self, done: int, total: int, eta: float, message: str = "") -> None:
        what = "Re-running the model" if self._staged is not None else "Inference"
        eta_text = "" if np.isnan(eta) else f", about {eta:.0f} s left"
        self.progress_text.setText(f"{what}: {message or f'slice {done} of {total}'}{eta_text}")
        if self._staged is not None:
            self.progress_text.setToolTip("the current prediction stays on screen until the new one is complete")

    def _end(self) -> None:
        self._release_inference()
        for w in (self.progress, self.progress_text, self.cancel_button):
            w.setVisible(False)

    def _on_finished(self, labels: np.ndarray) -> None:
        s = self.session
        s.set_slice_probabilities(self._scores)  # a run without them clears the strip of an earlier triage
        staged, self._staged = self._staged, None
        if staged is not None:
            s.replace_prediction(labels, staged.uncertainty, self._run_model, self._guard_report)
        else:
            # slices the stream did not deliver, and those the finished prediction changed (the guard's
            # speck rule runs on the whole volume); an annotator's edited slice keeps the edit
            changed = ~s.predicted_slices | (labels != s.prediction.array).any(axis=(1, 2))
            for z in np.nonzero(changed)[0]:
                s.apply_predicted_slice(int(z), labels[z], None)
            s.finish_streamed_prediction(self._guard_report)
        self._end()
        s.log(f"inference finished in {time.perf_counter() - self._started_at:.1f} s")
        self.done.emit("inferred")

    def _on_guard_report(self, report) -> None:
        """What the anatomical guard removed and retyped (just before ``finished``): logged, and kept with the
        prediction (the findings dock and the stored case show it)."""
        self._guard_report = report
        self.session.log(report.describe())

    def _on_slice_scores(self, scores: np.ndarray) -> None:
        """A triage model's per-slice probabilities (just before ``finished``): the triage strip shows them when
        the run finishes; the log gives the call."""
        from ctseg_core.triage import Triage

        self._scores = scores
        self.session.log(f"triage: {Triage(scores).describe()} (this model draws no outlines)")

    def _on_failed(self, error: TaskError) -> None:
        kept = self._staged is not None
        self._staged = None
        self._end()
        self.error.emit("Inference failed" + (" (the previous prediction is kept)" if kept else ""), error)
        self.done.emit("failed")

    def _on_cancelled(self) -> None:
        kept = self._staged is not None
        self._staged = None
        self._end()
        s = self.session
        if kept:
            s.log("re-run cancelled: the previous prediction is kept unchanged", "warning")
        else:
            n, total = int(s.predicted_slices.sum()), len(s.predicted_slices)
            s.log(f"inference cancelled: {n} of {total} slices have a prediction (findings cover only those; "
                  "Model > Run model runs it again)", "warning")
        self.done.emit("cancelled")


def guard_enabled(settings) -> bool:
    """Model > Anatomical guard (on unless the user switched it off)."""
    return bool(settings.value("model/guard", True, type=bool))
