"""Click tools: flood fill within an HU range, and relabel / remove a connected component."""

from __future__ import annotations

from PySide6.QtCore import Qt

from ctseg_core.edit import ops
from app.tools.base import EditTool
from app.tools.plane_ops import run_in_plane, to_plane


class FloodFillTool(EditTool):
    name = "flood fill"
    title = "Flood fill"
    shortcut = "F"
    tip = "click: fill the connected region within the HU range with the active class (on the slice, or 3-D)"
    options = ("fill_range", "fill_3d", "mode")

    def mouse_press(self, ev) -> bool:
        if not self.ready(ev):
            return False
        seed = to_plane(ev.plane, ev.voxel)
        value, policy, hu_range, three_d = self.session.active_class, self.editor.policy(), self.opts.range, \
            self.opts.fill_3d

        def op(labels, hu):
            return ops.flood_fill(labels, hu, seed, hu_range, value, policy=policy, three_d=three_d)

        history = self.editor.history
        self.editor.apply_step(self.name, run_in_plane(ev.plane, op, history.labels, self.session.volume.array))
        return True


class ComponentTool(EditTool):
    name = "component"
    title = "Component"
    shortcut = "R"
    tip = ("click a labelled region: give it the active class (0 = remove it); Shift+click removes it. "
           "Connected through the volume with 3-D on (default), else on the slice")
    options = ("component_3d", "mode")

    def mouse_press(self, ev) -> bool:
        if not self.ready(ev):
            return False
        if self.editor.history.labels[ev.voxel] == 0:  # say so; the click must not move the crosshair
            self.editor.tell("Component: no labelled region under the cursor; nothing changed")
            return True
        remove = bool(ev.modifiers & Qt.ShiftModifier) or self.session.active_class == 0
        value = 0 if remove else self.session.active_class
        seed = to_plane(ev.plane, ev.voxel)
        policy, three_d = self.editor.policy(), self.opts.component_3d

        def op(labels):
            return ops.relabel_component(labels, seed, value, policy=policy, three_d=three_d)

        history = self.editor.history
        step = "remove component" if value == 0 else "relabel component"
        self.editor.apply_step(step, run_in_plane(ev.plane, op, history.labels))
        return True
