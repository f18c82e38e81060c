"""The open case: one QObject holding the scan, the model's prediction, the corrected ("final") labels,
display state shared by all views, and the signals that keep views and panels in step.

Views and panels read from the session and listen to its signals; nothing else holds image data.

Label maps
- ``prediction``: the model's output, filled slice by slice while inference runs.
- ``final``: the map the annotator edits (what is saved). While inference runs, each predicted slice is
  copied into ``final`` unless that slice was already edited (``notify_labels_edited`` marks slices).
- ``displayed_labels()``: the map the views draw (``final`` unless ``show_source`` is "prediction").

For editing tools (see app/README_for_tools.md): change ``session.final.array`` in place (through
ctseg_core.edit), honour ``session.is_locked(class_id)`` and ``session.active_class``, then call
``session.notify_labels_edited(bbox)``; all views, the findings panel and the 3-D view follow.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from ctseg_core.labels import LABEL_CLASSES, NUM_CLASSES, NUM_LABEL_VALUES
from ctseg_core.model_identity import ModelIdentity
from ctseg_core.volume import LabelMap, Volume
from ctseg_core.windowing import PRESETS, Window

# A box in array index space: (z0, z1, y0, y1, x0, x1), half open; None means "the whole volume".
Box = tuple[int, int, int, int, int, int]

FINAL, PREDICTION = "final", "prediction"


class Session(QObject):
    volume_changed = Signal()  # a new scan was opened: everything else was reset
    labels_changed = Signal(str, object)  # (FINAL or PREDICTION, Box or None)
    uncertainty_changed = Signal(object)  # Box or None
    position_changed = Signal(int, int, int)  # crosshair voxel (k, j, i)
    window_changed = Signal(float, float)  # (level, width) HU
    display_changed = Signal()  # class visibility, overlay on/off, opacity, outline, uncertainty toggle, shown source
    class_lock_changed = Signal(int, bool)
    active_class_changed = Signal(int)
    tool_changed = Signal(object)  # the active SliceTool (None = navigate)
    model_changed = Signal(str)  # one-line summary of the active model ("" = none); ``model`` holds its identity
    triage_changed = Signal()  # the per-slice hemorrhage probabilities were set or cleared
    inference_state_changed = Signal(bool)  # running
    prediction_completed = Signal()  # a whole prediction is in place (``prediction_model`` made it)
    log_message = Signal(str, str)  # (level "info"/"warning"/"error", text)
    notice_posted = Signal(str, str)  # (level, text): something the user must see, shown above the views

    def __init__(self, parent=None):
        super().__init__(parent)
        self.volume: Volume | None = None
        self.prediction: LabelMap | None = None
        self.final: LabelMap | None = None
        self.uncertainty: np.ndarray | None = None  # float32 (z, y, x) in [0, 1]; NaN where not yet predicted
        self.predicted_slices: np.ndarray = np.zeros(0, bool)
        self.edited_slices: np.ndarray = np.zeros(0, bool)
        self.slice_probabilities: np.ndarray | None = None  # float32 (z,) from a triage model (RADnet), else None
        self.position: tuple[int, int, int] = (0, 0, 0)
        self.window: Window = PRESETS["brain"]
        # per label value (classes and review labels); non-hemorrhage review labels (oedema) start hidden
        self.class_visible = [c.hemorrhage or c.id < NUM_CLASSES for c in LABEL_CLASSES]
        self.class_locked = [False] * NUM_LABEL_VALUES
        self.opacity = 0.5
        self.show_labels = True  # the class overlay as a whole (S toggles it)
        self.outline = False
        self.show_uncertainty = False
        self.show_source = FINAL
        self.active_class = 1
        self.active_tool = None  # app.viewer.interaction.SliceTool or None
        self.model: ModelIdentity | None = None  # the active model
        self.model_summary = ""
        self.prediction_model: ModelIdentity | None = None  # the model that made ``prediction``
        self.guard_report = None  # ctseg_core.guard.GuardReport of ``prediction`` (None: no guard ran or unknown)
        self.inference_running = False

    # ---- scan ----
    def set_volume(self, volume: Volume) -> None:
        self.volume = volume
        self.prediction = LabelMap.empty_like(volume)
        self.final = LabelMap.empty_like(volume)
        self.uncertainty = np.full(volume.shape, np.nan, np.float32)
        self.predicted_slices = np.zeros(volume.shape[0], bool)
        self.edited_slices = np.zeros(volume.shape[0], bool)
        self.slice_probabilities = None
        self.prediction_model = None
        self.guard_report = None
        self.position = tuple(s // 2 for s in volume.shape)
        self.volume_changed.emit()
        self.position_changed.emit(*self.position)

    def has_volume(self) -> bool:
        return self.volume is not None

    def set_final(self, labels: LabelMap) -> None:
        """Replace the corrected map (e.g. loaded from a file); it must lie on the scan's grid."""
        labels.check_matches(self.volume)
        self.final = labels
        self.edited_slices[:] = True
        self.labels_changed.emit(FINAL, None)

    # ---- labels ----
    def displayed_labels(self) -> LabelMap | None:
        return self.prediction if self.show_source == PREDICTION else self.final

    @property
    def prediction_complete(self) -> bool:
        """Every slice has a prediction (a finished run, or one loaded from the case)."""
        return bool(self.predicted_slices.size) and bool(self.predicted_slices.all())

    def replace_prediction(self, labels: np.ndarray, uncertainty: np.ndarray | None = None,
                           model: ModelIdentity | None = None, guard_report=None) -> None:
        """Put a whole prediction in place at once (a finished re-run, or one stored in the case): the
        slices the annotator did not edit take it over in ``final``; one signal per map. ``guard_report``:
        what the anatomical guard removed and retyped in it."""
        if self.volume is None:
            return
        if labels.shape != self.volume.shape:
            raise ValueError(f"prediction shape {labels.shape} != scan shape {self.volume.shape}")
        self.prediction.array[:] = labels
        self.predicted_slices[:] = True
        keep = ~self.edited_slices
        self.final.array[keep] = labels[keep]
        if uncertainty is not None:
            self.uncertainty[:] = uncertainty
        else:
            self.uncertainty[:] = np.nan
        self.prediction_model = model
        self.guard_report = guard_report
        self.labels_changed.emit(PREDICTION, None)
        if keep.any():
            self.labels_changed.emit(FINAL, None)
        self.uncertainty_changed.emit(None)
        self.prediction_completed.emit()

    def begin_streamed_prediction(self, model: ModelIdentity | None) -> None:
        """A first run starts streaming slices in (``apply_predicted_slice``); ``model`` makes them."""
        self.prediction_model = model

    def finish_streamed_prediction(self, guard_report=None) -> None:
        self.guard_report = guard_report
        self.prediction_completed.emit()

    def reset_prediction(self) -> None:
        """Clear the prediction before a new inference run (``final`` keeps edited slices)."""
        if self.volume is None:
            return
        self.prediction.array[:] = 0
        self.uncertainty[:] = np.nan
        self.predicted_slices[:] = False
        self.final.array[~self.edited_slices] = 0
        self.set_slice_probabilities(None)
        self.labels_changed.emit(PREDICTION, None)
        self.labels_changed.emit(FINAL, None)
        self.uncertainty_changed.emit(None)

    def apply_predicted_slice(self, z: int, labels_yx: np.ndarray, uncertainty_yx: np.ndarray | None) -> None:
        """Store one predicted axial slice; copy it into ``final`` unless the annotator edited that slice."""
        self.prediction.array[z] = labels_yx
        self.predicted_slices[z] = True
        box = (z, z + 1, 0, labels_yx.shape[0], 0, labels_yx.shape[1])
        self.labels_changed.emit(PREDICTION, box)
        if not self.edited_slices[z]:
            self.final.array[z] = labels_yx
            self.labels_changed.emit(FINAL, box)
        if uncertainty_yx is not None:
            self.uncertainty[z] = uncertainty_yx
            self.uncertainty_changed.emit(box)

    def notify_labels_edited(self, box: Box | None = None) -> None:
        """Tools call this after changing ``final.array`` in place (box = the changed region)."""
        z0, z1 = (0, self.final.array.shape[0]) if box is None else (box[0], box[1])
        self.edited_slices[z0:z1] = True
        self.labels_changed.emit(FINAL, box)

    def set_slice_probabilities(self, probabilities) -> None:
        """A triage model's per-slice hemorrhage probabilities (one per axial slice), or None to clear them."""
        if probabilities is not None:
            probabilities = np.asarray(probabilities, np.float32)
            if self.volume is None or probabilities.shape != (self.volume.shape[0],):
                raise ValueError(f"one probability per slice expected, got shape {probabilities.shape}")
        elif self.slice_probabilities is None:
            return
        self.slice_probabilities = probabilities
        self.triage_changed.emit()

    # ---- navigation and display ----
    def set_position(self, k: int, j: int, i: int) -> None:
        if self.volume is None:
            return
        shape = self.volume.shape
        pos = tuple(int(min(max(v, 0), n - 1)) for v, n in zip((k, j, i), shape))
        if pos != self.position:
            self.position = pos
            self.position_changed.emit(*pos)

    def set_window(self, level: float, width: float) -> None:
        self.window = Window("custom", float(level), max(1.0, float(width)))
        for w in PRESETS.values():
            if (w.level, w.width) == (self.window.level, self.window.width):
                self.window = w
        self.window_changed.emit(self.window.level, self.window.width)

    def set_window_preset(self, name: str) -> None:
        w = PRESETS[name]
        self.set_window(w.level, w.width)

    def set_class_visible(self, class_id: int, visible: bool) -> None:
        self.class_visible[class_id] = bool(visible)
        self.display_changed.emit()

    def set_class_locked(self, class_id: int, locked: bool) -> None:
        self.class_locked[class_id] = bool(locked)
        self.class_lock_changed.emit(class_id, bool(locked))

    def is_locked(self, class_id: int) -> bool:
        return self.class_locked[class_id]

    def locked_classes(self) -> list[int]:
        return [c.id for c in LABEL_CLASSES if self.class_locked[c.id]]

    def set_active_class(self, class_id: int) -> None:
        if 0 <= class_id < NUM_CLASSES and class_id != self.active_class:
            self.active_class = class_id
            self.active_class_changed.emit(class_id)

    def set_active_tool(self, tool) -> None:
        """Make ``tool`` (a SliceTool, or None to navigate) receive left-button events in all views."""
        old, self.active_tool = self.active_tool, tool
        if old is not None and old is not tool:
            old.deactivate()
        self.tool_changed.emit(tool)

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(min(max(opacity, 0.0), 1.0))
        self.display_changed.emit()

    def set_show_labels(self, show: bool) -> None:
        self.show_labels = bool(show)
        self.display_changed.emit()

    def set_outline(self, outline: bool) -> None:
        self.outline = bool(outline)
        self.display_changed.emit()

    def set_show_uncertainty(self, show: bool) -> None:
        self.show_uncertainty = bool(show)
        self.display_changed.emit()

    def set_show_source(self, source: str) -> None:
        if source not in (FINAL, PREDICTION):
            raise ValueError(source)
        self.show_source = source
        self.display_changed.emit()

    # ---- model and log ----
    def set_model(self, model: ModelIdentity | None) -> None:
        """The active model (None: no model is loaded)."""
        self.model = model
        self.model_summary = model.summary if model is not None else ""
        self.model_changed.emit(self.model_summary)

    def set_inference_running(self, running: bool) -> None:
        self.inference_running = running
        self.inference_state_changed.emit(running)

    def log(self, text: str, level: str = "info") -> None:
        self.log_message.emit(level, text)

    def notify(self, text: str, level: str = "info") -> None:
        """Tell the user in a visible notice above the views (and in the log)."""
        self.log(text, level)
        self.notice_posted.emit(level, text)
