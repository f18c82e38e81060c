"""Editing tools: one module per tool, all ``app.tools.base.EditTool`` (a ``SliceTool`` bound to the
editing controller). ``TOOLS`` is the registry the tool bar and the Edit menu are built from; add a
tool by writing its class and listing it here."""

from __future__ import annotations

from app.tools.base import EditTool
from app.tools.brush import BrushTool, EraserTool
from app.tools.fill import ComponentTool, FloodFillTool
from app.tools.polygon import PolygonTool

TOOLS: tuple[type[EditTool], ...] = (BrushTool, EraserTool, PolygonTool, FloodFillTool, ComponentTool)


def create_tools(editor) -> dict[str, EditTool]:
    """One instance of every registered tool, by name."""
    return {cls.name: cls(editor) for cls in TOOLS}


__all__ = ["EditTool", "TOOLS", "create_tools", "BrushTool", "EraserTool", "PolygonTool", "FloodFillTool",
           "ComponentTool"]
