"""The annotation store of the open scan: its case in the workspace, autosave, recovery, review status.

``CaseStore`` (created by ``app.editing.install_editing``; the editor's ``store``)
- opens the scan's case when a scan opens (``Workspace.open_case``) and loads the map to edit
  (``Case.load_for_editing``: recovered > final > prediction > empty), telling the user in the log when
  unsaved edits were recovered after a crash; the editor then journals every committed step into it;
- saves ``final`` a few seconds after the last edit (a copy written off the GUI thread, with
  ``journal_upto``) and at once on case switch, status change and exit; source files are never written;
- stores the model's prediction with the model's summary when an inference run finishes;
- sets the review status with the annotator's name (QSettings ``review/annotator``) and opens cases;
- holds the case's lock (``ctseg_core.store.lock``) while the case is open, refreshing it on a timer: when
  another program edits the case, it opens read-only (``read_only`` says why; the editor allows no edits,
  the window shows it) until the user takes the lock over (``take_over``);
- reports failed saves (a full disk) once, with the edits kept in memory and in the journal;
- knows the reader (``annotator``: ``--reader``, else QSettings ``review/annotator``, else the operating
  system account), recorded with every edit, save and status change; in a double-reading workspace
  (``Workspace.double_reading``) the reader edits their own map of the case (``ctseg_core.store.readers``)
  under their own lock, and the adjudicator the final map (``edit_final``);
- polls the workspace for changes made by other people (``WATCH_MS``) and re-lists the cases.
The workspace is ``QSettings workspace/root``, else ``$CTSEG_WORKSPACE``, else ``~/ctseg-workspace``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from PySide6.QtCore import QObject, QTimer, Signal
from shiboken6 import isValid

from ctseg_core.errors import CaseLockedError, CtsegError, StoreError, WriteError
from ctseg_core.store import Workspace, default_root
from ctseg_core.store.identity import check_reader, default_reader
from ctseg_core.store.lock import REFRESH_EVERY_S
from ctseg_core.store.readers import READER_STATUSES, ReaderCase
from ctseg_core.volume import LabelMap
from app.workers import run_task

AUTOSAVE_MS = 3000
WATCH_MS = 5000  # how often the workspace is checked for other people's changes
ORIGIN_TEXT = {"recovered": "the final map with unsaved edits recovered", "final": "the saved final map",
               "prediction": "the stored prediction", "empty": "an empty map"}


class CaseStore(QObject):
    case_opened = Signal(object)  # ctseg_core.store.Case or None
    cases_changed = Signal()  # a case was created, saved or its status changed
    saved = Signal(str)  # case id
    annotator_changed = Signal(str)
    read_only_changed = Signal(str)  # why the open case is read-only ("" when it is editable)

    def __init__(self, editor, autosave_ms: int = AUTOSAVE_MS):
        super().__init__(editor)
        self.editor, self.window = editor, editor.window
        self.session, self.settings = editor.session, editor.window.settings
        self.workspace: Workspace | None = None
        self.case = None
        self._changes = 0  # edits since the case was opened (apply, undo, redo, a replaced map)
        self._saved_changes = 0  # _changes when the last save copied the map
        self._opening = False
        self.read_only = ""  # why the open case cannot be edited here ("": it can)
        self._save_failed = False  # the last save failed (reported once until a save succeeds)
        self._save_idle = threading.Event()
        self._save_idle.set()
        self.autosave_timer = QTimer(self, singleShot=True, interval=autosave_ms)
        self.autosave_timer.timeout.connect(self._autosave)
        self.lock_timer = QTimer(self, interval=REFRESH_EVERY_S * 1000)
        self.lock_timer.timeout.connect(self.refresh_lock)
        self.reader_override = ""  # ``ctseg-app --reader``: this session's reader, not stored
        self.editing_final = False  # double reading: edit the case's final map (adjudication) rather than one's own
        self._signature = None
        self.watch_timer = QTimer(self, interval=WATCH_MS)
        self.watch_timer.timeout.connect(self.check_for_changes)
        self.watch_timer.start()
        self.session.volume_changed.connect(self._on_volume)
        self.session.prediction_completed.connect(self._on_prediction_completed)
        self.window.about_to_close.connect(self._on_close)
        self.window.inference.slice_scores.connect(self._on_slice_scores)

    def configured_root(self) -> Path:
        """QSettings ``workspace/root``, else ``$CTSEG_WORKSPACE``, else ``~/ctseg-workspace``."""
        return Path(self.settings.value("workspace/root", "") or default_root())

    # ---- the editor reports ----
    def note_change(self) -> None:
        """The edited map changed: save it a few seconds after the last change."""
        self._changes += 1
        self.autosave_timer.start()

    def journal(self, deltas) -> None:
        """History's journal hook: every committed step is fsync'd into the case's journal."""
        if self.case is None or self.read_only:
            return
        try:
            self.case.journal_append(deltas)
        except CaseLockedError as exc:
            self._become_read_only(str(exc))
        except (CtsegError, OSError) as exc:
            self.session.log(f"could not write the edit journal ({exc}); the edit is kept in memory and saved "
                             "by the next successful save", "error")

    @property
    def opening(self) -> bool:
        return self._opening

    @property
    def dirty(self) -> bool:
        return self._changes != self._saved_changes

    # ---- workspace and cases ----
    def set_workspace(self, root, remember: bool = True) -> None:
        """Use the workspace folder ``root`` (created if needed); the open scan's case is opened there."""
        self.flush()
        try:
            self.workspace = Workspace(root)
        except CtsegError as exc:
            self.workspace = None
            self.session.log(f"workspace unavailable: {exc}", "error")
        if remember and self.workspace is not None:
            self.settings.setValue("workspace/root", str(self.workspace.root))
        if self.workspace is not None:
            self.session.log(f"workspace: {self.workspace.root}")
            self.workspace.cases()  # damaged case records are named in ``problems`` and left out
            for problem in self.workspace.problems:
                self.session.log(problem, "warning")
        self._release()
        if self.session.has_volume():
            self._open_case()
        self.cases_changed.emit()

    def _on_volume(self) -> None:
        self.flush()  # the previous case: the editor's history still holds its map
        self._release()
        self.editor.forget_history()
        self._open_case()

    def _open_case(self) -> None:
        self._changes = self._saved_changes = 0
        if self.workspace is None or not self.session.has_volume():
            return
        self._opening = True
        try:
            self._load_case(self.workspace, self.session.volume)
        finally:
            self._opening = False

    def _load_case(self, ws: Workspace, volume, take_over: bool = False) -> None:
        session = self.session
        locked = ""
        try:
            case = self._case_object(ws, ws.open_case(volume, volume.meta.source_path or None))
            try:
                case.lock_for_editing(take_over=take_over)
            except CaseLockedError as exc:
                locked = exc.problem + (" (Review > Take over the case to edit it here)" if exc.stale else "")
            except StoreError as exc:  # e.g. a workspace on a read-only share: look, but do not edit
                locked = str(exc)
            pending = len(case.journal)
            labels, origin = case.load_for_editing(volume)
        except (CtsegError, OSError) as exc:
            session.log(f"the scan has no case in the workspace, edits are not saved: {exc}", "error")
            self.editor.reset_history()
            self.case_opened.emit(None)
            return
        self.case = case
        for note in case.notes:
            session.log(f"case {case.id}: {note}", "warning")
        self._set_read_only(f"read-only: {locked}" if locked else "")
        if origin in ("recovered", "final"):
            session.set_final(labels)  # marks every slice edited: a model run keeps the corrections
            self._show_stored_prediction(case, volume)
        elif origin == "prediction":  # the stored model output is the map to edit until a final exists
            session.replace_prediction(labels.array, self._stored_uncertainty(case), case.prediction_model(),
                                       case.prediction_guard())
        self._show_stored_triage(case)
        self.editor.reset_history()
        what = ORIGIN_TEXT[origin] + (f" (made by {case.record.model_version or 'an unknown model'})"
                                      if origin == "prediction" else "")
        session.log(f"case {case.id} ({case.record.status}): editing {what}")
        if origin == "recovered" and not self.read_only:
            session.notify(f"Recovered {pending} edit step(s) of case {case.id} that were not saved when the app "
                           "last closed (the edit journal kept them); they are saved now.", "warning")
            self._changes += 1
            QTimer.singleShot(0, self._autosave)
        self.case_opened.emit(case)
        self.cases_changed.emit()

    def _show_stored_triage(self, case) -> None:
        """A triage model's stored slice probabilities, for the triage strip."""
        try:
            probabilities = case.load_triage()
        except (CtsegError, OSError) as exc:
            self.session.log(f"the stored triage could not be read: {exc}", "warning")
            return
        if probabilities is not None:
            self.session.set_slice_probabilities(probabilities)

    def _case_object(self, ws: Workspace, case):
        """The case as this app edits it: in a double-reading workspace the reader's own map (or the final map
        while adjudicating), else the case's final map; the reader is recorded with everything written."""
        if ws.double_reading and not self.editing_final:
            own = ws.reader_case(case.id, self.annotator)
            own.notes = case.notes
            return own
        case.who = self.annotator
        return case

    @property
    def double_reading(self) -> bool:
        ws = self.workspace
        try:
            return ws is not None and ws.double_reading
        except CtsegError:
            return False

    def reopen(self, editing_final: bool | None = None) -> None:
        """Open the shown scan's case again (after the reader, the reading mode or the edited map changed);
        the edits so far are saved first."""
        self.flush()
        self._release()
        self.editor.forget_history()
        if editing_final is not None:
            self.editing_final = editing_final
        self._open_case()

    def check_for_changes(self) -> bool:
        """Re-list the cases when another program (another reader) changed the workspace; True when it did."""
        ws = self.workspace
        if ws is None:
            return False
        try:
            signature = ws.changed_signature()
        except OSError:
            return False
        changed, self._signature = signature != self._signature and self._signature is not None, signature
        if changed:
            if self.case is not None:
                try:
                    self.case.reload_record()
                except CtsegError:
                    pass
            self.cases_changed.emit()
        return changed

    def _show_stored_prediction(self, case, volume) -> None:
        """The stored model output, for comparing with the corrections (Labels: prediction)."""
        try:
            prediction = case.load_prediction(volume)
        except (CtsegError, OSError) as exc:
            self.session.log(f"the stored prediction could not be read: {exc}", "warning")
            return
        if prediction is not None:
            self.session.replace_prediction(prediction.array, self._stored_uncertainty(case), case.prediction_model(),
                                            case.prediction_guard())

    def _stored_uncertainty(self, case):
        try:
            return case.load_uncertainty()
        except (CtsegError, OSError) as exc:
            self.session.log(f"the stored model uncertainty could not be read: {exc}", "warning")
            return None

    def map_replaced(self) -> None:
        """A whole new corrected map was loaded (File > Open label map): it becomes the case's final map."""
        if self.case is not None:
            self.note_change()
            self.session.log(f"the new label map replaces the corrected map of case {self.case.id} "
                             "(saved in a few seconds; earlier steps cannot be undone)")

    # ---- saving ----
    def _autosave(self) -> None:
        if self.case is None or self.editor.edited_map is None or not self.dirty or self.read_only:
            return
        if self.editor.in_stroke or not self._save_idle.is_set():
            self.autosave_timer.start()  # try again after the stroke / the running save
            return
        self._save(background=True)

    def _save(self, background: bool) -> None:
        case, version, labels = self.case, self._changes, self.editor.edited_map
        copy = LabelMap(labels.array.copy(), labels.geometry)
        upto = case.journal.last_seq

        def job():
            try:
                case.save_final(copy, journal_upto=upto)
                self._saved_changes = version
            finally:
                self._save_idle.set()

        self._save_idle.clear()
        if background:
            run_task(job, lambda _: self._on_saved(case), self._on_save_failed)
        else:
            try:
                job()
            except (CtsegError, OSError) as exc:
                self._report_save_failure(case, exc)
                return
            self._on_saved(case)

    def _alive(self) -> bool:
        """False once the window (and this store) is gone while a background job was finishing."""
        return isValid(self) and isValid(self.session)

    def _log(self, text: str, level: str = "info") -> None:
        if self._alive():
            self.session.log(text, level)

    def _on_saved(self, case) -> None:
        if not self._alive():
            return
        if self._save_failed:
            self._save_failed = False
            self.session.log(f"case {case.id} saved again: every edit is on disk now", "warning")
        self.session.log(f"case {case.id} saved")
        self.saved.emit(case.id)
        self.cases_changed.emit()

    def _on_save_failed(self, error) -> None:
        if self._alive():
            self._report_save_failure(self.case, error.exception)

    def _report_save_failure(self, case, exc: BaseException) -> None:
        """Say what failed and that nothing is lost; a dialog the first time (not at every autosave)."""
        if isinstance(exc, CaseLockedError):
            self._become_read_only(str(exc))
            return
        full = isinstance(exc, WriteError) and exc.disk_full
        what = ("the disk is full" if full else str(exc))
        text = (f"could not save case {case.id if case else ''}: {what}. The saved labels on disk are unchanged; "
                "your edits are kept in memory and in the edit journal (as far as it could be written). "
                + ("Free some disk space, then File > Save labels now." if full else ""))
        self.session.log(text, "error")
        if not self._save_failed and hasattr(self.window, "show_error"):
            from app.workers import TaskError

            self.window.show_error("Disk full: labels not saved" if full else "Labels not saved",
                                   TaskError(WriteError(text), ""))
        self._save_failed = True

    def wait_for_save(self, timeout: float | None = 30.0) -> bool:
        return self._save_idle.wait(timeout)

    def flush(self) -> None:
        """Save now if there are unsaved edits (case switch, status change, exit)."""
        self.autosave_timer.stop()
        self.wait_for_save()
        if self.case is None or self.editor.edited_map is None or not self.dirty or self.read_only:
            return
        self.editor.commit()  # a stroke still open becomes a step first
        self._save(background=False)

    def save_now(self) -> None:
        """File > Save labels now: write the map even when nothing changed since the last save."""
        if self.case is not None and self.editor.edited_map is not None and not self.dirty:
            self._changes += 1
        self.flush()

    def _on_prediction_completed(self) -> None:
        """A whole prediction is in the session: store it in the case with the model that made it."""
        session, case, volume = self.session, self.case, self.session.volume
        if self._opening or case is None or volume is None or self.read_only:
            return
        copy = LabelMap(session.prediction.array.copy(), volume.geometry)
        uncertainty = None if np.isnan(session.uncertainty).all() else session.uncertainty.copy()
        model, guard = session.prediction_model, session.guard_report
        version = model.label if model is not None else "unknown model"
        guard_fields = asdict(guard) if guard is not None else None
        run_task(lambda: case.save_prediction(copy, version, model=model, uncertainty=uncertainty, guard=guard_fields),
                 lambda _: self._on_prediction_stored(case),
                 lambda e: self._log(f"could not store the prediction: {e.message()}", "error"))

    def _on_prediction_stored(self, case) -> None:
        if self._alive():
            self.session.log(f"prediction stored in case {case.id}")
            self.cases_changed.emit()  # the Cases list shows what the model found

    def _on_slice_scores(self, scores) -> None:
        """A triage model's per-slice probabilities: stored in the case (the case list sorts by them)."""
        case, volume = self.case, self.session.volume
        if case is None or volume is None or len(scores) != volume.shape[0] or self.read_only:
            return
        model = self.session.model
        version = model.label if model is not None else "unknown model"
        run_task(lambda: case.save_triage(scores, version), lambda _: self._on_triage_saved(case),
                 lambda e: self._log(f"could not store the triage: {e.message()}", "error"))

    def _on_triage_saved(self, case) -> None:
        if self._alive():
            self.session.log(f"triage stored in case {case.id}")
            self.cases_changed.emit()

    def _on_close(self) -> None:
        """The window closes: save, then give the case's lock back."""
        self.flush()
        self._release()

    # ---- review ----
    @property
    def annotator(self) -> str:
        """The reader: ``--reader``, else the name set in the app, else the operating system account."""
        return self.reader_override or self.stored_reader or default_reader()

    @property
    def stored_reader(self) -> str:
        return str(self.settings.value("review/annotator", "") or "")

    def set_annotator(self, name: str, remember: bool = True) -> None:
        """Change the reader; in a double-reading workspace their own map of the open case opens."""
        name, before = name.strip(), self.annotator
        try:
            check_reader(name or default_reader())
        except CtsegError as exc:
            self.session.log(f"reader name not changed: {exc}", "error")
            return
        if remember:
            self.settings.setValue("review/annotator", name)
        self.reader_override = name if not remember else ""
        self.annotator_changed.emit(self.annotator)
        if self.annotator != before and self.case is not None:
            if isinstance(self.case, ReaderCase):
                self.reopen()
            else:
                self.case.who = self.annotator

    def set_status(self, status: str) -> None:
        """Review status of the open case ("in_review", "corrected", "approved"), saved first."""
        if self.case is None:
            self.session.log("no case is open", "warning")
            return
        if self.read_only:
            self.session.log(f"case {self.case.id} is {self.read_only}: its status cannot be changed here", "error")
            return
        self.flush()
        try:
            target = self.case
            if isinstance(target, ReaderCase) and status not in READER_STATUSES:
                target = self.workspace.case(self.case.id)  # a case status (approved ...), not the reader's own
                target.who = self.annotator
            target.set_status(status, self.annotator)
            self.case.reload_record()
        except CtsegError as exc:
            self.session.log(str(exc), "error")
            return
        self.session.log(f"case {self.case.id}: {status.replace('_', ' ')}"
                         + (f" by {self.annotator}" if self.annotator else ""))
        self.cases_changed.emit()

    # ---- the case lock ----
    def _set_read_only(self, why: str) -> None:
        self.read_only = why
        if why:
            self.session.log(f"case {self.case.id if self.case else ''} is {why}. Nothing you change here is saved.",
                             "error")
            self.lock_timer.stop()
        elif self.case is not None:
            self.lock_timer.start()
        self.editor.read_only_changed(why)
        self.read_only_changed.emit(why)

    def _become_read_only(self, why: str) -> None:
        """The lock was lost while editing (another program took it over): stop writing."""
        self.autosave_timer.stop()
        self._set_read_only(f"read-only: {why}")

    def refresh_lock(self) -> None:
        """Keep the lock fresh (the timer); notice when another program has taken it over."""
        lock = self.case.edit_lock if self.case is not None else None
        if lock is not None and not self.read_only and not lock.refresh():
            owner = lock.owner()
            self._become_read_only("another program took the case over"
                                   + (f" ({owner.describe()})" if owner is not None else ""))

    def take_over(self) -> None:
        """Review > Take over the case: edit here; the case is reloaded from what the other program saved."""
        if self.case is None or not self.read_only or self.workspace is None:
            return
        self.editor.forget_history()
        self.case = None
        self._changes = self._saved_changes = 0
        self._opening = True
        try:
            self._load_case(self.workspace, self.session.volume, take_over=True)
        finally:
            self._opening = False
        self.session.log("you took the case over: edits are saved here again", "warning")

    def _release(self) -> None:
        """Let go of the open case (and its lock)."""
        if self.case is not None:
            self.case.release_lock()
        self.case = None
        self.lock_timer.stop()
        if self.read_only:
            self._set_read_only("")

    def open_record(self, record) -> None:
        """Open a case of the workspace (its source scan)."""
        if self.case is not None and record.id == self.case.id:
            return
        self.window.open_path(record.source.path, series_uid=record.source.series_uid or None)

    def open_next_unreviewed(self) -> None:
        """Open the case still to review (new or in review, not the open one) where the model is least sure
        (``ctseg_core.review_order``); cases without a stored uncertainty after, oldest first."""
        from ctseg_core.review_order import cases_to_review

        if self.workspace is None:
            return
        open_id = self.case.id if self.case is not None else None
        order = cases_to_review(self.workspace, exclude=[open_id] if open_id else [])
        if not order:
            self.session.log("no unreviewed case left in the workspace")
            return
        case_id, error_ml = order[0]
        if error_ml is not None:
            self.session.log(f"next case: {case_id}, the model's expected error there {error_ml:.1f} mL")
        self.open_record(next(r for r in self.workspace.cases() if r.id == case_id))
