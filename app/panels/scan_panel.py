"""The Scan dock: patient, study and series, the geometry, and everything the loader did to the scan
(``ctseg_core.scan_info.describe_scan``, read off the GUI thread when a scan opens), as wrapped text."""

from __future__ import annotations

from html import escape

from shiboken6 import isValid
from PySide6.QtWidgets import QTextBrowser, QVBoxLayout, QWidget

from ctseg_core.scan_info import describe_scan
from app.workers import run_task


def sections_html(sections) -> str:
    """Sections as HTML: a heading, then a two-column table of fields, or a list of sentences."""
    parts = []
    for title, rows in sections:
        parts.append(f"<h4 style='margin:6px 0 2px 0'>{escape(title)}</h4>")
        fields = [(f, v) for f, v in rows if f]
        sentences = [v for f, v in rows if not f]
        if fields:
            parts.append("<table cellspacing='0' cellpadding='1'>" + "".join(
                f"<tr><td style='color:#999; padding-right:8px'>{escape(f)}</td><td>{escape(v)}</td></tr>"
                for f, v in fields) + "</table>")
        if sentences:
            parts.append("<ul style='margin:0 0 0 -20px'>" + "".join(f"<li>{escape(v)}</li>" for v in sentences)
                         + "</ul>")
    return "".join(parts)


class ScanPanel(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.sections: list = []
        self.text = QTextBrowser()
        self.text.setOpenLinks(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.text)
        session.volume_changed.connect(self.refresh)

    def refresh(self) -> None:
        volume = self.session.volume
        if volume is None:
            return
        run_task(lambda: describe_scan(volume), lambda sections: self._show(volume, sections),
                 lambda e: self.session.log(f"scan information: {e.message()}", "warning") if isValid(self) else None)

    def _show(self, volume, sections) -> None:
        if not isValid(self) or volume is not self.session.volume:
            return  # the window closed, or another scan opened meanwhile
        self.sections = sections
        self.text.setHtml(sections_html(sections))

    def value(self, section: str, field: str) -> str | None:
        for title, rows in self.sections:
            if title == section:
                return next((v for f, v in rows if f == field), None)
        return None

    def sentences(self, section: str) -> list[str]:
        return [v for title, rows in self.sections if title == section for f, v in rows if not f]
