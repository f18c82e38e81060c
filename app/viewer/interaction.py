"""The mouse interface between slice views and editing tools.

A tool is any object with some of these methods (all optional; see ``SliceTool``). The view calls them
with a ``SliceMouseEvent`` that already holds the voxel under the mouse in array index space (k, j, i),
so a tool never deals with screen coordinates, flips or spacing:

    mouse_press(ev) -> bool   left button pressed (True: the tool takes the drag; False: the view pans)
    mouse_drag(ev)            mouse moved with the button held (only after mouse_press returned True)
    mouse_release(ev)         button released (end of a stroke: commit one undo step here)
    mouse_move(ev)            hover without a button (e.g. move a brush outline)
    deactivate()              the tool was replaced (remove overlay items from views)

Right-drag (window/level), middle-drag (pan), the wheel (slices; Ctrl+wheel zooms) stay with the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.viewer.plane import ViewPlane
    from app.viewer.slice_view import SliceView


@dataclass
class SliceMouseEvent:
    view: "SliceView"  # the view the event happened in (view.add_overlay_item(...) for drawings)
    plane: "ViewPlane"  # which array axes the view shows
    index: tuple[float, float, float]  # fractional array index (k, j, i) under the mouse
    voxel: tuple[int, int, int]  # the voxel under the mouse, clamped into the volume
    inside: bool  # the mouse is over the image (not beside it)
    button: Any  # Qt.MouseButton
    modifiers: Any  # Qt.KeyboardModifier flags
    view_pos: tuple[float, float]  # position in the view box's coordinates (mm in the plane)


class SliceTool:
    """Base class with no-op handlers; tools override what they need."""

    name = "navigate"

    def mouse_press(self, ev: SliceMouseEvent) -> bool:
        return False

    def mouse_drag(self, ev: SliceMouseEvent) -> None:
        pass

    def mouse_release(self, ev: SliceMouseEvent) -> None:
        pass

    def mouse_move(self, ev: SliceMouseEvent) -> None:
        pass

    def deactivate(self) -> None:
        pass
