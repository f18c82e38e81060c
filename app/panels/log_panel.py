"""The log dock: what the loader did, model state, errors (with details), timings."""

from __future__ import annotations

import time

from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

_COLOURS = {"info": "#cccccc", "warning": "#f0c040", "error": "#ff6060"}


class LogPanel(QPlainTextEdit):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setStyleSheet("background: #1a1a1a; font-family: monospace;")
        self.lines: list[tuple[str, str]] = []  # (level, text), for tests and export
        session.log_message.connect(self.add)

    def add(self, level: str, text: str) -> None:
        self.lines.append((level, text))
        stamp = time.strftime("%H:%M:%S")
        colour = _COLOURS.get(level, "#cccccc")
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")
        self.appendHtml(f'<span style="color:{colour}">{stamp} {safe}</span>')
        self.moveCursor(QTextCursor.End)

    def text_lines(self) -> list[str]:
        return [t for _, t in self.lines]
