"""The Training dock: retrain the model on the workspace's corrected cases, and the model versions.

"Retrain" saves the open case, checks that there are at least two training cases (one to train on, one
to validate), and queues ``python -m ctseg_core train`` on the device queue (it starts when the open case's
inference is done, and pauses between steps when the open case needs the device again) in its own
process (``app.training_process``):
the loss of every step plotted live with step/total and ETA, the validation Dice per class as bars when
it is measured (with case-by-case progress while it is); Cancel stops it cleanly (state saved for
``--resume``). At the end a table (and "Per-class Dice...", a wider dialog) compares the validation Dice
per class before/after, says whether the new version was made active and why, and "Run new model on
this case" loads it and runs it on the open scan. The versions list shows every version of the
workspace's model store with the version it was trained from and its Dice on the workspace's *current*
validation set only (``ctseg_core.version_scores``; "-" until it is re-scored after the set changed:
"Re-score versions"); "Make active" promotes or rolls back, and asks first when the version scored worse
(``ModelStore.activation_warning``). The promotion rule is shown with the numbers that decided it.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QMessageBox, QProgressBar, QPushButton, QScrollArea, QSpinBox,
                               QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ctseg_core import version_scores
from ctseg_core.device_queue import DeviceJob
from ctseg_core.errors import CtsegError
from ctseg_core.labels import LESION_CLASSES
from ctseg_core.model_store import ModelStore
from ctseg_core.training import events as ev
from ctseg_core.training.promotion import RULE
from ctseg_core.training.validation_set import ValidationSet
from ctseg_core.training.recipe import Recipe, default_strategy
from ctseg_core.training.state import STATE_FILE
from app.panels.training_plots import DiceDialog, TrainingPlots
from app.training_process import TrainingProcess, train_arguments

MIN_CASES = 2  # one to train on, one to validate
CLASS_NAMES = {c.key: c.name for c in LESION_CLASSES}
STRATEGY_TEXT = {"full": "Full fine-tune (encoder and decoder)", "decoder": "Decoder only (frozen encoder)"}


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _item(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


def error_text(events: list, stderr: str, code: int) -> str:
    """A readable one-paragraph reason for a failed run: the ``error`` event, else the last line of the
    traceback on stderr, else the exit status."""
    for e in reversed(events):
        if isinstance(e, ev.Error):
            return e.message
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines:
        return lines[-1]
    return "the training process crashed" if code < 0 else f"the training process exited with status {code}"


class TrainingPanel(QWidget):
    def __init__(self, window, editing, parent=None):
        super().__init__(parent)
        self.window, self.editing, self.session = window, editing, window.session
        self.process = TrainingProcess(self)
        self.process.event.connect(self._on_event)
        self.process.ended.connect(self._on_ended)
        self.extra_args: list[str] = []  # more ``ctseg train`` arguments (e.g. --device cpu --batch-size 4)
        self.last_done: ev.Done | None = None
        self.job: DeviceJob | None = None  # the run's place on the device queue
        self.queue = window.model.device_queue
        self.state = "idle"  # idle, running, done, cancelled, failed
        self._before: dict = {}
        self._after: dict = {}
        self._decision: dict = {}
        self._started = time.perf_counter()
        self._build()
        self.editing.store.cases_changed.connect(self.refresh_versions)
        window.model.queue_changed.connect(self._show_queue)
        self._show_queue(self.queue.describe())
        self.refresh_versions()

    # ---- layout ----
    def _build(self) -> None:
        from ctseg_core.training.run import resolve_device

        device = resolve_device("auto")
        self.auto_strategy, self.auto_reason = default_strategy(device)
        self.strategy_label = QLabel(f"Strategy for this computer ({device}): <b>{self.auto_strategy}</b> — "
                                     f"{self.auto_reason}")
        self.strategy_label.setWordWrap(True)
        self.strategy = QComboBox()
        self.strategy.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.strategy.setMinimumContentsLength(14)  # long item texts must not widen the dock
        self.strategy.addItem(f"Automatic ({self.auto_strategy})", None)
        for key, text in STRATEGY_TEXT.items():
            self.strategy.addItem(text, key)
        self.epochs = QDoubleSpinBox(decimals=1, minimum=0.1, maximum=1000.0, singleStep=1.0, value=Recipe.epochs)
        self.steps = QSpinBox(minimum=0, maximum=1_000_000, singleStep=50)
        self.steps.setSpecialValueText("from epochs")
        form = QFormLayout()
        form.addRow("Strategy", self.strategy)
        form.addRow("Epochs", self.epochs)
        form.addRow("Steps", self.steps)

        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setToolTip("Fine-tune the model on the corrected and approved cases of the workspace")
        self.retrain_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the cancelled run from its saved state")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        buttons = QHBoxLayout()
        for b in (self.retrain_button, self.resume_button, self.cancel_button):
            buttons.addWidget(b)
        self.queue_label = QLabel("")
        self.queue_label.setWordWrap(True)
        self.queue_label.setStyleSheet("color: #888;")
        self.queue_label.setToolTip("one job on the device at a time: inference of the open case first, then a "
                                    "background prefetch of the next case, then training (paused meanwhile)")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #ff6060;")
        self.error_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.plots = TrainingPlots()
        self.result_table = self._table(["Class", "Dice before", "Dice after", "Change (rule)"])
        self.result_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.result_table.setMaximumHeight(180)
        self.reason_label = QLabel("")
        self.reason_label.setWordWrap(True)
        self.rule_label = QLabel(f"Rule: {RULE}.")
        self.rule_label.setWordWrap(True)
        self.rule_label.setStyleSheet("color: #888;")
        self.details_button = QPushButton("Per-class Dice...")
        self.details_button.setToolTip("the validation Dice of each class before and after, in a wider table")
        self.details_button.setEnabled(False)
        self.details_button.clicked.connect(self.show_run_details)
        self.run_new_button = QPushButton("Run new model on this case")
        self.run_new_button.setEnabled(False)
        self.run_new_button.clicked.connect(self.run_new_model)
        result = QGroupBox("Last run")
        rl = QVBoxLayout(result)
        for w in (self.plots, self.result_table, self.reason_label, self.rule_label, self.details_button,
                  self.run_new_button):
            rl.addWidget(w)

        self.versions_table = self._table(["", "Version", "From", "Created", "Dice (current set)", "Promoted"])
        self.versions_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.versions_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.versions_table.setToolTip("double-click a version for its per-class Dice")
        self.versions_table.cellDoubleClicked.connect(lambda row, _: self.show_version_details(row))
        self.make_active_button = QPushButton("Make active")
        self.make_active_button.setToolTip("Use the selected version for this workspace (promote or roll back)")
        self.make_active_button.clicked.connect(self.make_active)
        self.rescore_button = QPushButton("Re-score versions")
        self.rescore_button.setToolTip("measure every version on the current validation set (after it changed)")
        self.rescore_button.clicked.connect(self.rescore)
        self.validation_label = QLabel("")
        self.validation_label.setWordWrap(True)
        versions = QGroupBox("Model versions (* = active)")
        vl = QVBoxLayout(versions)
        vl.addWidget(self.validation_label)
        vl.addWidget(self.versions_table)
        row = QHBoxLayout()
        row.addWidget(self.make_active_button)
        row.addWidget(self.rescore_button)
        vl.addLayout(row)

        layout = QVBoxLayout(self)
        layout.addWidget(self.strategy_label)
        layout.addLayout(form)
        layout.addLayout(buttons)
        for w in (self.queue_label, self.progress, self.status_label, self.error_label, result, versions):
            layout.addWidget(w)
        layout.addStretch(1)

    @staticmethod
    def _table(headers: list[str]) -> QTableWidget:
        table = QTableWidget(0, len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        return table

    # ---- the workspace ----
    @property
    def workspace(self):
        return self.editing.store.workspace

    def model_store(self) -> ModelStore | None:
        return None if self.workspace is None else ModelStore.for_workspace(self.workspace.root)

    @property
    def running(self) -> bool:
        return self.process.running

    # ---- starting and stopping ----
    def arguments(self, resume: bool = False) -> list[str]:
        if resume:  # the saved run carries its own configuration
            return train_arguments(self.workspace.root, extra=["--resume", *self.extra_args])
        return train_arguments(self.workspace.root, steps=self.steps.value() or None, epochs=self.epochs.value(),
                               strategy=self.strategy.currentData(), extra=self.extra_args)

    def can_resume(self) -> bool:
        store = self.model_store()
        return store is not None and (store.dir / STATE_FILE).is_file()

    def start(self, resume: bool = False) -> bool:
        """Save the open case, check the cases, queue the training process on the device (``resume``:
        continue the cancelled run). False when it did not start."""
        if self.running or self.job is not None:
            return False
        if self.workspace is None:
            return self._refuse("No workspace is set (File > Set workspace...): there are no cases to train on.")
        self.editing.store.flush()  # the open case's latest corrections
        try:
            n = len(self.workspace.training_cases())
        except CtsegError as exc:
            return self._refuse(f"The workspace's cases could not be read: {exc}")
        if n < MIN_CASES:
            return self._refuse(f"Too few cases to retrain: {n} corrected, adjudicated or approved case(s) with saved labels; "
                                f"at least {MIN_CASES} are needed (one to train on, one to check the new model). "
                                "Mark more cases as corrected (Review menu).")
        return self._queue(self.arguments(resume), f"Starting the training process on {n} cases...",
                           f"retraining on {n} corrected/approved cases of {self.workspace.root}")

    def rescore(self) -> bool:
        """Measure every version on the current validation set (a run of ``ctseg train --rescore``)."""
        if self.running or self.job is not None or self.workspace is None:
            return False
        return self._queue(train_arguments(self.workspace.root, extra=["--rescore", *self.extra_args]),
                           "Measuring every version on the current validation set...",
                           "re-scoring the model versions on the current validation set")

    def _queue(self, arguments: list[str], status: str, log: str) -> bool:
        self._reset_display()
        self.state = "running"
        self.status_label.setText(status)
        self._set_running(True)
        self.process.reader = self.editing.store.annotator  # the run is audited with who started it
        self.session.log(log)
        self.job = DeviceJob("train", "training run", start=lambda: self.process.start(arguments),
                             pause=self.process.pause, resume=self.process.resume)
        self.queue.submit(self.job)
        if self.job.state == "waiting":
            self.status_label.setText(status + " (waiting for the device: the open case's inference goes first)")
        return True

    def _show_queue(self, text: str) -> None:
        self.queue_label.setText(f"Device: {text}")

    def cancel(self) -> None:
        if self.running:
            self.status_label.setText("Cancelling (the training state is saved)...")
            self.cancel_button.setEnabled(False)
            self.process.cancel()
        elif self.job is not None:  # still waiting for the device
            self.queue.finished(self.job)
            self.job = None
            self.state = "cancelled"
            self.status_label.setText("Training cancelled before it started.")
            self.progress.setVisible(False)
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.retrain_button.setEnabled(not running)
        self.rescore_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.make_active_button.setEnabled(not running and self.versions_table.rowCount() > 0)
        self.resume_button.setEnabled(not running and self.can_resume())

    def _refuse(self, text: str) -> bool:
        self.error_label.setText(text)
        self.session.log(text, "warning")
        return False

    def _reset_display(self) -> None:
        self.error_label.setText("")
        self.reason_label.setText("")
        self.result_table.setRowCount(0)
        self.run_new_button.setEnabled(False)
        self.details_button.setEnabled(False)
        self.plots.reset()
        self.last_done, self._before, self._after, self._decision = None, {}, {}, {}
        self._started = time.perf_counter()
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)

    # ---- progress ----
    def _on_event(self, e: ev.TrainingEvent) -> None:
        if isinstance(e, ev.Validating):
            self._on_validating(e)
        elif isinstance(e, ev.ValidationSetChosen):
            self.session.log(f"validation set chosen and frozen: {e.reason} ({', '.join(e.cases)})")
        elif isinstance(e, ev.Plan):
            self.status_label.setText(
                f"Fine-tuning {e.parent} ({e.strategy}: {e.strategy_reason}) on {e.train_slices} reviewed slice(s) "
                f"of {len(e.train_cases)} case(s), checking on {len(e.val_cases)}; {e.total_steps} steps on "
                f"{e.device}. Measuring the current model...")
            self.session.log(f"training plan: {e.strategy} fine-tune of {e.parent}, {e.total_steps} steps, "
                             f"corrected voxels weighted {e.corrected_weight:g}, unreviewed slices: {e.unreviewed}")
        elif isinstance(e, ev.Validate) and e.when == "before":
            self._before = e.dice
            self.plots.set_dice(before=e.dice)
            self.session.log(f"validation Dice before: {_fmt(e.mean_dice)}")
        elif isinstance(e, (ev.Start, ev.Step)):
            self.progress.setRange(0, e.total_steps)
            self.progress.setValue(e.step)
            eta = "" if getattr(e, "eta_s", None) is None else f", about {e.eta_s:.0f} s left"
            self.progress.setFormat(f"Step %v/%m{eta}")
            if isinstance(e, ev.Step):
                self.status_label.setText(f"Step {e.step}/{e.total_steps}: loss {e.loss:.4f}, "
                                          f"learning rate {e.lr:.2g}{eta}")
                self.plots.add_step(e.step, e.loss)
            else:
                self.status_label.setText(f"Training: step {e.step} of {e.total_steps}...")
        elif isinstance(e, ev.Paused):
            self.status_label.setText("Paused: the open case's inference has the device; training continues after it.")
            if self.job is not None:
                self.queue.paused(self.job)
        elif isinstance(e, ev.Resumed):
            self.status_label.setText(f"Training continues (it gave the device up for {e.paused_s:.0f} s).")
        elif isinstance(e, ev.Trained):
            self.status_label.setText(f"Trained {e.step} steps in {e.seconds:.0f} s; measuring the new model...")
        elif isinstance(e, ev.Validate) and e.when == "after":
            self._after = e.dice
            self.plots.set_dice(after=e.dice)
            self.details_button.setEnabled(True)
            self.session.log(f"validation Dice after: {_fmt(e.mean_dice)}")
        elif isinstance(e, ev.Done):
            self.last_done = e
            self._decision = e.decision.get("per_class", {})
            self._show_comparison(self._before, self._after, self._decision)
            self.reason_label.setText(e.reason)
            self.run_new_button.setEnabled(self.session.has_volume())
        elif isinstance(e, ev.Rescored):
            self.status_label.setText(f"{e.version}: Dice {_fmt(e.mean_dice)} on the current validation set")
        elif isinstance(e, ev.Cancelled):
            self.status_label.setText(f"Training cancelled at step {e.step} of {e.total_steps} "
                                      "(the state is saved: Resume continues it).")

    def _on_validating(self, e: ev.Validating) -> None:
        """Progress while a model is measured on the validation cases (minutes on a CPU)."""
        who = {"before": "the current model", "after": "the new model"}.get(e.when, e.version)
        self.progress.setRange(0, max(1, e.cases))
        self.progress.setValue(e.case)
        self.progress.setFormat("Validation case %v/%m")
        elapsed = time.perf_counter() - self._started
        self.status_label.setText(f"Measuring {who} on the validation cases: {e.case} of {e.cases} done "
                                  f"({elapsed:.0f} s since the start)")

    def show_run_details(self) -> DiceDialog | None:
        """The last run's per-class Dice in a dialog."""
        if not self._before and not self._after:
            return None
        note = self.reason_label.text() + f"\nRule: {RULE}."
        return self._show_dialog(DiceDialog("Validation Dice of the last run", self._before, self._after, note, self))

    def show_version_details(self, row: int) -> DiceDialog | None:
        """The per-class Dice a version's card records (from the run that made it)."""
        store = self.model_store()
        version = self.versions_table.item(row, 1).text() if 0 <= row < self.versions_table.rowCount() else None
        if store is None or version is None:
            return None
        card = store.get(version).card
        val = card.metrics.get("validation", {}) if isinstance(card.metrics.get("validation"), dict) else {}
        if not val.get("dice_before") and not val.get("dice_after"):
            self.session.log(f"{version} has no validation Dice of its own (it was not trained in this workspace)")
            return None
        note = (f"{card.summary()}\nvalidation cases: {', '.join(val.get('cases', [])) or '-'} "
                f"(set {val.get('fingerprint', '?')})\n{card.extra.get('promotion_reason', '')}")
        return self._show_dialog(DiceDialog(f"Validation Dice of {version}", val.get("dice_before", {}),
                                            val.get("dice_after", {}), note, self))

    def _show_dialog(self, dialog: DiceDialog) -> DiceDialog:
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.setWindowModality(Qt.NonModal)
        dialog.show()
        return dialog

    def _show_comparison(self, before: dict, after: dict, decision: dict | None = None) -> None:
        """Per class: Dice before / after, the change and whether the rule accepts it."""
        keys = list(dict.fromkeys([*before, *after]))
        decision = decision or {}
        self.result_table.setRowCount(len(keys))
        for row, key in enumerate(keys):
            d = decision.get(key, {})
            change = d.get("change")
            verdict = {True: " ok", False: " too low", None: ""}[d.get("ok") if d else None]
            cells = (CLASS_NAMES.get(key, key), _fmt(before.get(key)), _fmt(after.get(key)),
                     "-" if change is None else f"{change:+.3f}{verdict}")
            for col, text in enumerate(cells):
                self.result_table.setItem(row, col, _item(text))

    def _on_ended(self, code: int, stderr: str) -> None:
        events = self.process.events
        last = events[-1] if events else None
        if self.job is not None:
            self.queue.finished(self.job)
            self.job = None
        self.progress.setVisible(False)
        self._set_running(False)
        for problem in self.process.protocol_errors[:1]:
            self.session.log(f"training output not understood: {problem}", "error")
        if code == 0 and isinstance(last, ev.Done):
            self.state = "done"
            done = self.last_done
            self.status_label.setText(f"Training finished: new version {done.version}"
                                      + (" (now active)." if done.promoted else " (not made active)."))
            self.session.log(f"training finished: {done.reason}")
        elif code == 0 and isinstance(last, ev.Rescored):
            self.state = "done"
            self.status_label.setText("Every version was measured on the current validation set.")
        elif code == 0 and isinstance(last, ev.Cancelled):
            self.state = "cancelled"
            self.session.log("training cancelled; its state is saved", "warning")
        else:
            self.state = "failed"
            message = f"Training failed: {error_text(events, stderr, code)}"
            self.status_label.setText("")
            self.error_label.setText(message)
            self.session.log(message, "error")
            if stderr.strip():
                self.session.log(stderr.strip()[-4000:], "error")
        self.refresh_versions()

    # ---- models ----
    def current_scores(self) -> tuple[dict, str]:
        """({version: scores} on the workspace's current validation set, a line saying which set that is)."""
        if self.workspace is None:
            return {}, ""
        try:
            vs = ValidationSet.load(self.workspace.root)
            fingerprint, revision, scores = version_scores.current(self.workspace.root / "models")
        except CtsegError as exc:
            return {}, f"validation set unreadable: {exc}"
        if vs is None:
            return {}, "No validation set yet: the first run chooses it (stratified by class) and freezes it."
        text = f"Validation set: {len(vs.cases)} case(s), change {vs.revision}."
        if fingerprint is None:
            return {}, text
        if revision != vs.revision:
            return {}, text + " It changed since the versions were measured: Re-score versions to compare them."
        return scores, text + " Dice: sample average over its cases, through the viewer's prediction path."

    def refresh_versions(self) -> None:
        table, store = self.versions_table, self.model_store()
        try:
            versions = store.versions() if store is not None else []
            active = store.active_version() if versions else None
        except CtsegError as exc:
            self.session.log(f"model versions unreadable: {exc}", "warning")
            versions, active = [], None
        scores, text = self.current_scores()
        self.validation_label.setText(text)
        table.setRowCount(len(versions))
        for row, v in enumerate(versions):
            promoted = v.card.extra.get("promoted")
            score = scores.get(v.version, {})
            cells = ("*" if v.version == active else "", v.version, v.parent or "-",
                     (v.card.created or "-")[:16].replace("T", " "), _fmt(score.get("mean")),
                     {True: "yes", False: "no", None: "-"}[promoted])
            tip = v.card.summary() + (f"\n{v.card.extra['promotion_reason']}" if v.card.extra.get("promotion_reason")
                                      else "") + f"\nweights {v.card.weights_sha256[:12]}"
            if score.get("dice"):
                tip += "\nDice per class on the current set: " + ", ".join(
                    f"{CLASS_NAMES.get(k, k)} {_fmt(x)}" for k, x in score["dice"].items())
            for col, text in enumerate(cells):
                item = _item(text)
                item.setToolTip(tip)
                table.setItem(row, col, item)
        self.make_active_button.setEnabled(bool(versions) and not self.running)
        self.rescore_button.setEnabled(bool(versions) and not self.running and self.job is None)
        self.resume_button.setEnabled(not self.running and self.can_resume())

    def version_rows(self) -> list[tuple[str, bool]]:
        """(version, active) of each row of the versions list."""
        t = self.versions_table
        return [(t.item(r, 1).text(), t.item(r, 0).text() == "*") for r in range(t.rowCount())]

    def selected_version(self) -> str | None:
        rows = self.versions_table.selectionModel().selectedRows()
        return self.versions_table.item(rows[0].row(), 1).text() if rows else None

    def make_active(self, version: str | None = None) -> bool:
        """Make ``version`` (default: the selected row) active and load it in the app; asks first when the
        version scored worse (its own run, or the active version beat it on the same cases)."""
        version = version or self.selected_version()
        store = self.model_store()
        if version is None or store is None:
            return False
        try:
            warning = store.activation_warning(version)
        except CtsegError as exc:
            self._refuse(f"Could not make {version} active: {exc}")
            return False
        if warning and not self.confirm(f"Make {version} active?",
                                        f"{warning}\n\nThe model's results on this workspace's scans may get worse. "
                                        f"Make {version} active anyway?"):
            self.session.log(f"{version} was not made active ({warning})")
            return False
        try:
            entry = store.use(version)
        except CtsegError as exc:
            self._refuse(f"Could not make {version} active: {exc}")
            return False
        self.session.log(f"model {version} is now active for this workspace")
        self._load(entry.path)
        self.refresh_versions()
        return True

    def confirm(self, title: str, text: str) -> bool:
        """Ask the user (Yes/No, No by default); without a user (scripted runs) it goes ahead and logs why."""
        if not getattr(self.window, "interactive", False):
            self.session.log(f"{title} {text.splitlines()[0]} (no one to ask: going ahead)", "warning")
            return True
        answer = QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def _load(self, path: Path) -> None:
        self.window.settings.setValue("model/path", str(path))
        self.window.load_model(str(path))

    def run_new_model(self) -> None:
        """Load the version the last run made and run it on the open scan (once it is loaded)."""
        if self.last_done is None:
            return
        path = Path(self.last_done.path)
        if self.last_done.promoted:
            self._load(path)
        else:
            self.window.load_model(str(path))  # a look at it; the workspace's active version stays
        self.window.model.request_run()

    def shutdown(self) -> None:
        """The window closes: stop a running training (its state is saved) and wait briefly."""
        if self.running:
            self.process.cancel()
            if not self.process.proc.waitForFinished(15000):
                self.process.kill()


def install_training(window, editing) -> TrainingPanel:
    """The Training dock (tabbed with the Cases dock) and Model > Retrain on corrected cases..."""
    panel = TrainingPanel(window, editing)
    window.training_panel = panel
    scroll = QScrollArea()  # the panel is tall (plots, tables): a short window scrolls it
    scroll.setWidget(panel)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    panel.dock = window.add_dock(scroll, "Training", Qt.LeftDockWidgetArea,
                                 tabify_with=getattr(editing, "cases_dock", None))
    window.menu("&View").addAction(panel.dock.toggleViewAction())
    model = window.menu("&Model")
    model.addSeparator()
    panel.retrain_action = QAction("Retrain on corrected cases...", window)
    panel.retrain_action.triggered.connect(lambda *_: (panel.dock.show(), panel.dock.raise_(), panel.start()))
    model.addAction(panel.retrain_action)
    window.about_to_close.connect(panel.shutdown)
    return panel
