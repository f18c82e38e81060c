"""The findings dock: which model made the labels, and per class the volume (mL), slices, the scan-level
result, ABC/2 for ICH, the model's confidence and whether a person has reviewed it.

- The model box names the active model (version with its parent, weights hash, training data), says
  where the shown prediction came from (this run, stored with the case, partial) and offers Re-run.
- Volumes, slices and the 3-slice rule follow every edit at once: per-slice class counts are recounted
  only on the slices an edit touched (``ctseg_core.findings.SliceCounts``). ABC/2, the confidence and
  the origin of each class need the whole volume and are computed in a worker, debounced; their cells
  read "updating…" until then.
- Rows of review labels (unassigned extra-axial blood, oedema: from a model whose classes are not ctseg's)
  appear only when the labels hold them.
- Findings the model drew that no person has reviewed (the case is not marked corrected, adjudicated or approved)
  are shown in amber italics with "AI" and never as a red "POSITIVE".
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QPushButton, QScrollArea, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ctseg_core.findings import (ICH_ID, MIN_CONSECUTIVE_SLICES, ORIGINS, UNCERTAIN_BELOW, Findings, SliceCounts,
                                 abc2_estimate, class_origin, findings_from_counts, model_confidence)
from ctseg_core.labels import LABEL_CLASSES, LESION_CLASSES, REVIEW_CLASSES
from ctseg_core.slices import image_ranges_text
from ctseg_core.volume import LabelMap
from app.panels.classes_panel import colour_icon, fit_rows
from app.session import PREDICTION
from app.workers import run_task

COLUMNS = ["Class", "mL", "Slices", "Scan", "Conf. / unsure", "Review"]
COL_VOLUME, COL_SLICES, COL_SCAN, COL_CONF, COL_REVIEW = range(1, 6)
DEBOUNCE_MS = 300
STREAM_REDRAW_MS = 150  # table redraws while inference streams slices in
UPDATING = "updating…"
AMBER, RED, GREEN, GREY = QColor(240, 175, 40), QColor(255, 90, 90), QColor(90, 190, 110), QColor(150, 150, 150)
REVIEW_TEXT = {"model": "AI, unreviewed", "edited": "AI+edit, unrev.", "person": "drawn, unrev."}


class ModelBox(QWidget):
    """The active model and the provenance of the shown prediction, with a Re-run button."""

    rerun_requested = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.prediction_label = QLabel()
        self.prediction_label.setWordWrap(True)
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("run the active model on this scan again (Ctrl+R); the current prediction "
                                     "stays until the new one is complete")
        self.rerun_button.clicked.connect(self.rerun_requested)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.prediction_label, 1)
        row.addWidget(self.rerun_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addWidget(self.model_label)
        layout.addLayout(row)
        for sig in (session.model_changed, session.labels_changed, session.inference_state_changed,
                    session.volume_changed, session.prediction_completed):
            sig.connect(self.refresh)
        self.refresh()

    def refresh(self, *_) -> None:
        s = self.session
        m = s.model
        if m is None:
            self.model_label.setText("<b>No model loaded</b>: viewer only (Model menu: load a checkpoint).")
        else:
            sha = f" · weights {m.short_sha}" if m.sha256 else ""
            training = f"<br>trained on {m.training}" if m.training else ""
            self.model_label.setText(f"<b>Model: {m.label}</b>{sha}{training}<br>"
                                     "<span style='color:#f0c040'>Not for clinical use: every finding needs a "
                                     "reader's review.</span>")
            self.model_label.setToolTip(m.summary + (f"\nweights sha256 {m.sha256}" if m.sha256 else ""))
        self.prediction_label.setText(self._prediction_text())
        self.rerun_button.setEnabled(s.has_volume() and m is not None and not s.inference_running)

    def _prediction_text(self) -> str:
        s = self.session
        if not s.has_volume():
            return ""
        n, total = int(s.predicted_slices.sum()), len(s.predicted_slices)
        if s.inference_running:
            return f"Prediction: model running ({n} of {total} slices so far)" if n < total else \
                "Prediction: re-running; the one shown stays until the new one is complete"
        if n == 0:
            return "Prediction: none yet"
        who = s.prediction_model.label if s.prediction_model is not None else "an unrecorded model"
        if n < total:
            return f"Prediction: partial, {n} of {total} slices (the run was stopped), by {who}"
        other = "" if s.model is None or s.model.same_model(s.prediction_model) else " (not the active model)"
        guard = f"; {s.guard_report.brief()} (Model > Anatomical guard)" if s.guard_report is not None else ""
        return f"Prediction by {who}{other}{guard}"


class FindingsPanel(QWidget):
    updated = Signal(object)  # Findings, after the worker filled in ABC/2, confidence and origin
    class_activated = Signal(int)  # a row was double-clicked: show that class
    rerun_requested = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.findings: Findings | None = None
        self.reviewed = False  # the case is marked corrected / approved by a person
        self.review_text = "not reviewed"
        self._counts: SliceCounts | None = None
        self._counts_of = None  # (source, array) the counts belong to
        self._details: dict | None = None  # the worker's last result
        self._confidence_stale = True  # the model's output changed since the confidence was computed
        self._after_run = False  # details were asked for while the model ran: compute them when it ends
        self._busy = False
        self._again = False
        self.model_box = ModelBox(session)
        self.model_box.rerun_requested.connect(self.rerun_requested)
        self.rerun_button = self.model_box.rerun_button
        self.rows = LABEL_CLASSES[1:]  # the lesion classes, then the review labels (shown when present)
        self.table = QTableWidget(len(self.rows), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        fit_rows(self.table)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(COL_SLICES, QHeaderView.Stretch)
        for col, tip in ((COL_VOLUME, "volume in millilitres (voxel count x voxel size)"),
                         (COL_CONF, f"the model's mean probability for the class where it drew it / the share of "
                                    f"that region where it was below {UNCERTAIN_BELOW:.0%}"),
                         (COL_REVIEW, "AI = drawn by the model, AI+edits = changed by a person, drawn = by a person; "
                                      "reviewed = the case is marked corrected, adjudicated or approved"),
                         (COL_SLICES, "axial slice numbers, 1 = the first slice of the scan as loaded")):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        for row, cls in enumerate(self.rows):
            name = cls.key.upper()[:6] if cls in LESION_CLASSES else cls.key.upper()  # PNEUMO, EXTRA_AXIAL
            self.table.setItem(row, 0, QTableWidgetItem(colour_icon(cls.colour), name))
            self.table.item(row, 0).setToolTip(cls.name + (f": {cls.note}" if cls in REVIEW_CLASSES else ""))
            self.table.setRowHidden(row, cls in REVIEW_CLASSES)
        self.table.cellDoubleClicked.connect(lambda row, col: self.class_activated.emit(self.rows[row].id))
        self.table.setToolTip("double-click a class to go to it")
        self.abc2_label = QLabel("")
        self.abc2_label.setToolTip("ABC/2 (Kothari 1996) on the largest ICH component, beside the voxel count")
        self.status = QLabel("")
        self.status.setStyleSheet("color: #f0c040;")
        self.caption = QLabel(f"Scan: positive when present on {MIN_CONSECUTIVE_SLICES}+ consecutive slices. "
                              "Slices are numbered from 1. Amber italics: drawn by the model, not reviewed "
                              "(\"positive?\"); red POSITIVE: the case was reviewed.")
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: #999;")
        self.abc2_label.setWordWrap(True)
        self.status.setWordWrap(True)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.model_box)
        layout.addWidget(self.table)
        layout.addWidget(self.abc2_label)
        layout.addWidget(self.status)
        layout.addWidget(self.caption)
        layout.addStretch(1)
        scroll = QScrollArea()  # a short dock scrolls instead of drawing its parts over each other
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        self._show_timer = QTimer(self, singleShot=True, interval=STREAM_REDRAW_MS)
        self._show_timer.timeout.connect(self._show)
        session.labels_changed.connect(self._on_labels)
        session.uncertainty_changed.connect(self._on_prediction_changed)
        session.display_changed.connect(self._on_display)
        session.volume_changed.connect(self._on_volume)
        session.inference_state_changed.connect(self._on_inference_state)

    # ---- review state (set by the case store) ----
    def set_review(self, reviewed: bool, text: str) -> None:
        """Whether a person has reviewed the open case (marked corrected, adjudicated or approved), and how to say so."""
        if (reviewed, text) != (self.reviewed, self.review_text):
            self.reviewed, self.review_text = reviewed, text
            self._show()

    # ---- counting (GUI thread, only the slices that changed) ----
    def _on_volume(self) -> None:
        self._counts, self._counts_of, self._details, self.findings = None, None, None, None
        self._confidence_stale = True
        labels = self.session.displayed_labels()
        if labels is not None:  # a new scan's maps are empty: no need to count them
            self._counts = SliceCounts(None, labels.array.shape)
            self._counts_of = (self.session.show_source, labels.array)
        self.schedule()

    def _on_display(self) -> None:
        labels = self.session.displayed_labels()
        if labels is not None and not self._counts_match(labels):
            self.schedule()
            self._recount()

    def _on_inference_state(self, running: bool) -> None:
        if not running and self._after_run:
            self._after_run = False
            self.schedule()
        self._show_status()

    def _on_prediction_changed(self, *_) -> None:
        """The model's labels or uncertainty changed: its confidence must be computed again."""
        self._confidence_stale = True
        self.schedule()

    def _on_labels(self, which: str, box) -> None:
        if which == PREDICTION:
            self._confidence_stale = True
        self.schedule()  # first: the table drawn below marks ABC/2 and the review as updating
        if which == self.session.show_source:
            labels = self.session.displayed_labels()
            if not self._counts_match(labels):
                self._recount()
            else:
                z0, z1 = (0, labels.array.shape[0]) if box is None else (box[0], box[1])
                self._counts.update(labels.array, z0, z1)
                if self.session.inference_running:  # slices stream in: redraw the table a few times a second
                    if not self._show_timer.isActive():
                        self._show_timer.start()
                else:
                    self._show()  # an edit: at once

    def _counts_match(self, labels) -> bool:
        """The counts belong to the shown map (same source, same array object)."""
        return (self._counts is not None and self._counts_of[0] == self.session.show_source
                and self._counts_of[1] is labels.array)

    def _recount(self) -> None:
        labels = self.session.displayed_labels()
        if labels is None:
            return
        self._counts = SliceCounts(labels.array)
        self._counts_of = (self.session.show_source, labels.array)
        self._details = None
        self._show()

    # ---- details (worker: ABC/2, confidence, origin) ----
    def schedule(self) -> None:
        """Recompute the details within DEBOUNCE_MS (a burst of changes, e.g. inference filling slices, gives
        one update per interval rather than postponing it to the end)."""
        if not self._timer.isActive():
            self._timer.start()
        self._show_status()

    def recompute(self) -> None:
        """Compute ABC/2, the model's confidence and each class's origin in a worker (latest wins). While
        the model streams slices in, this waits for the end of the run: volumes and slices follow the
        stream anyway, and copying whole maps on every update would stall the GUI."""
        s = self.session
        labels = s.displayed_labels()
        if labels is None:
            return
        if s.inference_running:
            self._after_run = True
            self._show_status()
            return
        if self._busy:
            self._again = True
            return
        if self._counts is None:
            self._recount()
        self._busy = True
        shown = LabelMap(labels.array.copy(), labels.geometry)
        prediction = s.prediction.array.copy() if s.predicted_slices.any() else None
        # the confidence depends on the model's output only: after an edit the last one still holds
        known = (self._details or {}).get("confidence")
        uncertainty = s.uncertainty.copy() if prediction is not None and (self._confidence_stale or known is None) \
            else None
        self._confidence_stale = False
        from_model = s.show_source == PREDICTION
        has_ich = bool(self._counts.counts[:, ICH_ID].any())

        def job():
            ich = abc2_estimate(shown.array == ICH_ID, shown.geometry.spacing) if has_ich else None
            origin = ({c.id: "model" for c in self.rows} if from_model
                      else class_origin(shown.array, prediction))
            if prediction is None:
                confidence = {}
            else:
                confidence = model_confidence(prediction, uncertainty) if uncertainty is not None else known
            return {"abc2": ich, "origin": origin, "confidence": confidence}

        run_task(job, self._on_result, self._on_error)
        self._show_status()

    def _on_error(self, error) -> None:
        self._busy = False
        self._show_status()
        self.session.log(f"findings failed: {error.message()}", "error")

    def _on_result(self, details: dict) -> None:
        self._busy = False
        self._details = details
        if self._again:
            self._again = False
            self.recompute()
        self._show()
        if self.findings is not None:
            self.updated.emit(self.findings)

    @property
    def updating(self) -> bool:
        return self._busy or self._timer.isActive() or self._show_timer.isActive() or self._after_run

    # ---- showing ----
    def current(self) -> Findings | None:
        """The findings as shown now (counts up to date; the details from the last worker run)."""
        s = self.session
        if self._counts is None or not s.has_volume():
            return None
        f = findings_from_counts(self._counts, s.volume.geometry, source=s.show_source,
                                 scan=s.volume.meta.source_path or s.volume.meta.description)
        f.model = s.prediction_model.label if s.prediction_model is not None else ""
        f.review = self.review_text
        d = self._details or {}
        for c in f.classes:
            if c.class_id == ICH_ID:
                c.abc2 = d.get("abc2") if c.voxels else None
            c.confidence = d.get("confidence", {}).get(c.class_id)
            c.origin = d.get("origin", {}).get(c.class_id, "") if c.voxels else ""
        return f

    def _show(self) -> None:
        findings = self.current()
        if findings is None:
            return
        self.findings = findings
        pending = self.updating or self._details is None
        present = {c.class_id for c in findings.classes}
        for row, cls in enumerate(self.rows):
            self.table.setRowHidden(row, cls.id not in present)
        for c in findings.classes:
            self._show_row(next(i for i, cls in enumerate(self.rows) if cls.id == c.class_id), c, pending)
        self._show_abc2(findings.classes[0], pending)
        self._show_status()

    def _show_abc2(self, ich, pending: bool) -> None:
        if not ich.voxels:
            self.abc2_label.setText("")
        elif pending or ich.abc2 is None:
            self.abc2_label.setText(f"ICH ABC/2: {UPDATING}")
        else:
            a = ich.abc2
            self.abc2_label.setText(f"ICH ABC/2: {a.volume_ml:.1f} mL (A {a.a_mm:.0f} x B {a.b_mm:.0f} x C {a.c_mm:.0f} mm"
                                    f" / 2, slice {a.slice_index + 1}; voxel count {ich.volume_ml:.1f} mL)")

    def _show_row(self, row: int, c, pending: bool) -> None:
        ai_unreviewed = c.voxels > 0 and not self.reviewed and c.origin in ("model", "edited")
        positive = ("positive?" if ai_unreviewed else "POSITIVE") if c.hemorrhage else "present"
        scan = positive if c.positive else ("negative" if c.voxels == 0 else "below rule")
        conf = c.confidence if c.voxels else None  # a class nobody kept has no finding to weigh
        conf_text = "" if conf is None else f"{conf.mean_probability:.2f} / {conf.uncertain_fraction:.0%}"
        if c.voxels == 0:
            review = ""
        elif self.reviewed:
            review = "✓ reviewed"
        elif pending and not c.origin:
            review = UPDATING
        else:
            review = REVIEW_TEXT.get(c.origin, "not reviewed")
        values = {COL_VOLUME: f"{c.volume_ml:.2f}", COL_SLICES: c.slices_text or "-", COL_SCAN: scan,
                  COL_CONF: conf_text, COL_REVIEW: review}
        for col, text in values.items():
            item = QTableWidgetItem(text)
            right = col in (COL_VOLUME, COL_CONF)
            item.setTextAlignment((Qt.AlignRight if right else Qt.AlignLeft) | Qt.AlignVCenter)
            if ai_unreviewed:
                font = QFont(item.font())
                font.setItalic(True)
                item.setFont(font)
                item.setForeground(AMBER)
            elif col == COL_SCAN and c.positive and c.hemorrhage:
                item.setForeground(RED)
            if col == COL_REVIEW and self.reviewed and c.voxels:
                item.setForeground(GREEN)
            if text == UPDATING:
                item.setForeground(GREY)
            self.table.setItem(row, col, item)
        self._tooltips(row, c)

    def _tooltips(self, row: int, c) -> None:
        images = image_ranges_text(self.session.volume, c.slices) if c.slices else ""
        self.table.item(row, COL_SLICES).setToolTip(
            f"slices {c.slices_text}" + (f" (nearest scanner {images})" if images else "") if c.slices else "")
        conf = c.confidence if c.voxels else None
        if conf is not None:
            self.table.item(row, COL_CONF).setToolTip(
                f"mean probability {conf.mean_probability:.2f} over the {conf.voxels:,} voxels the model gave "
                f"{c.key.upper()}; {conf.uncertain_fraction:.0%} of them below {UNCERTAIN_BELOW:.0%}")
        if c.origin:
            self.table.item(row, COL_REVIEW).setToolTip(
                f"{c.key.upper()}: {ORIGINS[c.origin]}; case: {self.review_text}")

    def _show_status(self) -> None:
        s = self.session
        parts = []
        if self.updating:
            parts.append("updating ABC/2, confidence and review marks…")
        if s.has_volume() and s.predicted_slices.any() and not s.predicted_slices.all():
            parts.append(f"findings cover the {int(s.predicted_slices.sum())} of {len(s.predicted_slices)} slices "
                         "the model has done")
        self.status.setText("; ".join(parts))

