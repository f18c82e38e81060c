"""Segmenting received series in the background.

Two small pieces with plain interfaces, so the local device queue (one owner of the CPU/GPU for inference
and training) can take the second over:

- ``SeriesSegmenter``: a callable that segments one inbox series: load the scan from its inbox folder,
  create (or find) its case in the workspace, run the workspace's active model (or the given checkpoint)
  and store the prediction in the case (a triage model's per-slice probabilities too: the case list
  sorts the worklist by them). The case then reads "new, segmented" (status "new", a stored
  prediction). Returns the case id. Nothing else happens to the case.
- ``SeriesConsumer``: one thread that runs such a callable on the queued series one at a time, marking
  each series ``segmenting``, then ``segmented`` or ``failed`` in the inbox. ``submit`` adds a series;
  series queued by an earlier run are picked up by ``resume``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ctseg_core.errors import CtsegError
from ctseg_core.model_identity import ModelIdentity
from ctseg_core.pacs.inbox import Inbox, SeriesEntry, now_iso

log = logging.getLogger("ctseg.pacs")


class SeriesSegmenter:
    """``segmenter(series_folder) -> case id``. ``model``: a checkpoint path, or a callable giving one at
    each series (the app: the model it shows), default the workspace's active model version; ``predictor_factory(path)`` builds the Predictor (default: on the best device,
    with the anatomical guard). The predictor is kept between series and rebuilt when the active
    version changes."""

    def __init__(self, workspace_root: str | Path, model: str | Path | Callable[[], str | Path] | None = None,
                 predictor_factory: Callable | None = None, device: str = "auto"):
        self.workspace_root = Path(workspace_root)
        self.model = model if callable(model) else (Path(model) if model else None)
        self.device = device
        self.predictor_factory = predictor_factory
        self._predictor = None
        self._predictor_path: Path | None = None
        self.timings: dict[str, float] = {}  # of the last series: load_s, predict_s, store_s

    def checkpoint(self) -> Path:
        if callable(self.model):
            return Path(self.model())
        if self.model is not None:
            return self.model
        from ctseg_core.model_store import ModelStore

        return ModelStore.for_workspace(self.workspace_root).active_path()

    def predictor(self):
        path = self.checkpoint()
        if self._predictor is None or path != self._predictor_path:
            if self.predictor_factory is not None:
                self._predictor = self.predictor_factory(path)
            else:
                from ctseg_core.predictor import Predictor

                self._predictor = Predictor.from_checkpoint(path, device=self.device)
            self._predictor_path = path
        return self._predictor

    def __call__(self, series_folder: str | Path) -> str:
        from ctseg_core.io import load_volume
        from ctseg_core.store import Workspace

        t0 = time.perf_counter()
        volume = load_volume(series_folder)
        ws = Workspace(self.workspace_root)
        case = ws.open_case(volume, series_folder)
        t1 = time.perf_counter()
        predictor = self.predictor()
        prediction = predictor.predict(volume)
        t2 = time.perf_counter()
        case.lock_for_editing(reader="")  # CaseLockedError when someone has the case open: not overwritten
        try:
            entry = Inbox(self.workspace_root).entry_of_folder(series_folder)
            if entry is not None and case.record.description == Path(series_folder).name:
                case.set_description(entry.title())  # the patient and study, not the series UID
            model = ModelIdentity.of_predictor(predictor)  # the app then shows it without running it again
            uncertainty = prediction.uncertainty() if callable(getattr(prediction, "uncertainty", None)) else None
            case.save_prediction(prediction.labels, model.label, model=model, uncertainty=uncertainty)
            if getattr(prediction, "slice_probabilities", None) is not None:  # a triage model (RADnet)
                case.save_triage(prediction.slice_probabilities, model.label)  # the worklist sorts by it
        finally:
            case.release_lock()
        self.timings = {"load_s": t1 - t0, "predict_s": t2 - t1, "store_s": time.perf_counter() - t2}
        return case.id


class SeriesConsumer:
    """One background thread segmenting queued inbox series, one at a time, with ``segment`` (a
    ``SeriesSegmenter`` or any callable folder -> case id). ``on_done(entry)`` is called after each
    series (its state "segmented" or "failed")."""

    def __init__(self, inbox: Inbox, segment: Callable[[Path], str],
                 on_done: Callable[[SeriesEntry], None] | None = None):
        self.inbox = inbox
        self.segment = segment
        self.on_done = on_done
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.current: SeriesEntry | None = None

    def start(self) -> "SeriesConsumer":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ctseg-series-segmenter", daemon=True)
            self._thread.start()
        return self

    def resume(self) -> int:
        """Queue the series an earlier run left queued or segmenting; returns how many."""
        entries = self.inbox.recover()
        for entry in entries:
            self.submit(entry)
        return len(entries)

    def submit(self, entry: SeriesEntry) -> None:
        self._queue.put(entry)

    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the series being segmented (it is left "segmenting", queued again on resume when the
        thread had to be abandoned)."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            entry = self._queue.get()
            if entry is None or self._stop.is_set():
                break
            self.run_one(entry)

    def run_one(self, entry: SeriesEntry) -> SeriesEntry:
        current = self.inbox.entry(*entry.key) or entry
        if current.state not in ("queued", "segmenting"):
            return current  # more instances arrived meanwhile (it is queued again when complete) or done
        self.current = current = self.inbox.set_state(current, "segmenting")
        try:
            case_id = self.segment(self.inbox.series_dir(current))
        except Exception as exc:  # noqa: BLE001 - a bad series is marked failed; the consumer goes on
            problem = exc.problem if isinstance(exc, CtsegError) else f"{type(exc).__name__}: {exc}"
            log.error("segmenting %s failed: %s", current.describe(), problem)
            done = self.inbox.set_state(current, "failed", problem, error=problem)
        else:
            log.info("segmented %s: case %s", current.describe(), case_id)
            latest = self.inbox.entry(*current.key)
            if latest is not None and latest.state == "receiving":  # more instances came: segmented again later
                latest.case_id = case_id
                self.inbox.save(latest)
                self.current = None
                return latest
            done = self.inbox.set_state(current, "segmented", f"case {case_id}", case_id=case_id, error="",
                                        segmented_at=now_iso())
        self.current = None
        if self.on_done is not None:
            try:
                self.on_done(done)
            except Exception:  # noqa: BLE001
                log.exception("on_done callback failed")
        return done
