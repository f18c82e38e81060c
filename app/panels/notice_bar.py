"""A bar above the views for what the user must not miss (a crash recovery, a scan changed on loading):
coloured by level, closable, cleared when another scan opens."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

_STYLE = {"info": ("#1d3557", "#e0ecff"), "warning": ("#5a4300", "#ffe9a8"), "error": ("#5a1010", "#ffd0d0")}


class _Notice(QFrame):
    def __init__(self, level: str, text: str, parent=None):
        super().__init__(parent)
        background, foreground = _STYLE.get(level, _STYLE["info"])
        self.setStyleSheet(f"QFrame {{ background: {background}; }} QLabel {{ color: {foreground}; }}")
        self.level, self.text = level, text
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("dismiss")
        close.clicked.connect(self.deleteLater)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 4, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)


class NoticeBar(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setSpacing(1)
        session.notice_posted.connect(self.post)
        session.volume_changed.connect(self.clear)

    def post(self, level: str, text: str) -> None:
        self.layout_.addWidget(_Notice(level, text, self))

    def clear(self) -> None:
        for notice in self.notices():
            notice.setParent(None)
            notice.deleteLater()

    def notices(self) -> list[_Notice]:
        return [w for w in self.findChildren(_Notice) if w.parent() is self]

    def texts(self) -> list[str]:
        return [n.text for n in self.notices()]
