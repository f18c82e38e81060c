"""The small interface every editing tool shares.

A tool is a ``SliceTool`` (app.viewer.interaction) bound to the editing controller (``app.editing``),
which owns the undo history of the open case, the tool options and the paint-over policy. A tool turns
mouse events into ``ctseg_core.edit`` operations and hands their deltas to ``editor.history``; the
history's change callback redraws the views and schedules the autosave.
"""

from __future__ import annotations

from app.viewer.interaction import SliceTool


class EditTool(SliceTool):
    name = "edit"  # registry key and undo step name
    title = "Edit"  # menu / tool-bar text
    shortcut = ""  # single key
    tip = ""
    options: tuple[str, ...] = ()  # option groups shown in the options bar (see app.tools.options)

    def __init__(self, editor):
        self.editor = editor

    @property
    def session(self):
        return self.editor.session

    @property
    def opts(self):
        return self.editor.options

    def ready(self, ev) -> bool:
        """Whether an edit can start here (a scan with labels is open and the click is on the image)."""
        return ev is not None and ev.inside and self.editor.history is not None

    def escape(self) -> bool:
        """Esc: abort what is in progress; True if something was aborted."""
        return False
