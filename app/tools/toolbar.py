"""The Tools tool bar: Navigate plus one checkable action per registered tool (with its key), the active
class, and the class keys 0-7. The option widgets live in ``app.tools.options.OptionsBar``."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QToolBar

from ctseg_core.labels import CLASSES


class ToolBar(QToolBar):
    def __init__(self, editor, parent=None):
        super().__init__("Tools", parent)
        self.setObjectName("tools")
        self.editor = editor
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        self.actions_by_name: dict[str, QAction] = {}
        self._add("navigate", "Navigate", "N", "no tool: click moves the crosshair, drag pans (Esc also returns here)")
        for name, tool in editor.tools.items():
            self._add(name, tool.title, tool.shortcut, tool.tip)
        self.addSeparator()
        self.class_label = QLabel()
        self.class_label.setToolTip("active class: keys 1-7, 0 = background (the brush then erases)")
        self.addWidget(self.class_label)
        self.class_actions = [self._class_action(c) for c in CLASSES]
        session = editor.session
        session.tool_changed.connect(self._on_tool)
        session.active_class_changed.connect(self._on_class)
        self._on_class(session.active_class)
        self.actions_by_name["navigate"].setChecked(True)

    def _add(self, name: str, title: str, key: str, tip: str) -> QAction:
        action = QAction(title, self)
        action.setCheckable(True)
        action.setShortcut(QKeySequence(key))
        action.setToolTip(f"{title} ({key}): {tip}")
        action.triggered.connect(lambda *_: self.editor.select_tool(name))
        self.group.addAction(action)
        self.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _class_action(self, cls) -> QAction:
        action = QAction(f"Class {cls.id}: {cls.name}", self)
        action.setShortcut(QKeySequence(str(cls.id)))
        action.setShortcutContext(Qt.WindowShortcut)
        action.triggered.connect(lambda *_: self.editor.session.set_active_class(cls.id))
        self.editor.window.addAction(action)  # active without being shown on the bar
        return action

    def _on_tool(self, tool) -> None:
        name = getattr(tool, "name", "navigate") if tool is not None else "navigate"
        action = self.actions_by_name.get(name)
        if action is not None and not action.isChecked():
            action.setChecked(True)

    def _on_class(self, class_id: int) -> None:
        cls = CLASSES[class_id]
        r, g, b = cls.colour
        text_colour = "#000" if (r * 299 + g * 587 + b * 114) / 1000 > 140 else "#fff"
        name = "Background (erase)" if class_id == 0 else cls.name
        self.class_label.setText(f"  {class_id}: {name}  ")
        self.class_label.setStyleSheet(f"background: rgb({r},{g},{b}); color: {text_colour}; border-radius: 3px;"
                                       " padding: 2px;")
