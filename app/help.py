"""The Help menu: a reference of every keyboard shortcut and mouse gesture, and About (version, the active
model, the libraries and their licences)."""

from __future__ import annotations

from importlib import metadata

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

MOUSE = (("Wheel", "next / previous slice"), ("Ctrl+wheel", "zoom"),
         ("Shift+wheel (or Ctrl+Shift+wheel)", "brush diameter (brush and eraser)"),
         ("Right-drag", "window level (up/down) and width (left/right)"), ("Middle-drag", "pan"),
         ("Left-click (no tool)", "move the crosshair"), ("Left-drag (no tool)", "pan"),
         ("Double-click", "show this view alone / all views again"),
         ("Double-click a findings row", "go to that class"), ("3-D view: left-drag / wheel", "rotate / zoom"))
VIEW_KEYS = (("Up / Down", "next / previous slice"), ("PageUp / PageDown", "10 slices"),
             ("Home / End", "first / last slice"))
LIBRARIES = ("PySide6-Essentials", "pyqtgraph", "vtk", "torch", "timm", "monai", "numpy", "scipy", "SimpleITK",
             "pydicom", "highdicom", "safetensors", "tqdm")


def shortcut_rows(window) -> list[tuple[str, str]]:
    """(keys, what) for every action of the window with a shortcut, then the view keys and the mouse."""
    rows, seen = [], set()
    for action in window.findChildren(QAction):
        keys = ", ".join(s.toString(QKeySequence.NativeText) for s in action.shortcuts())
        text = action.text().replace("&", "").split("\t")[0].rstrip(".")
        if keys and (keys, text) not in seen:
            seen.add((keys, text))
            rows.append((keys, text))
    rows.sort(key=lambda r: (len(r[0]) > 1, r[0]))
    return rows + list(VIEW_KEYS) + list(MOUSE)


def library_rows() -> list[tuple[str, str, str]]:
    """(name, version, licence) of the libraries the app is built on, as installed."""
    out = []
    for name in LIBRARIES:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        licence = meta.get("License-Expression") or meta.get("License") or ""
        if not licence or len(licence) > 40:
            classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
            licence = ", ".join(classifiers) or (licence.splitlines()[0][:40] if licence else "see the package")
        out.append((name, meta.get("Version", "?"), licence))
    return out


def _table(headers, rows) -> QTableWidget:
    table = QTableWidget(len(rows), len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class _Dialog(QDialog):
    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.layout_ = QVBoxLayout(self)

    def finish(self) -> None:
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        self.layout_.addWidget(buttons)


class ShortcutsDialog(_Dialog):
    def __init__(self, window):
        super().__init__("Keyboard and mouse", window)
        self.table = _table(["Keys / mouse", "What it does"], shortcut_rows(window))
        self.layout_.addWidget(self.table)
        self.finish()
        self.resize(620, 640)


class AboutDialog(_Dialog):
    def __init__(self, window):
        super().__init__("About ctseg", window)
        import ctseg_core

        model = window.session.model
        model_text = (f"<b>Active model:</b> {model.label}<br>trained on {model.training or 'unknown data'}<br>"
                      f"weights sha256 {model.sha256 or 'unknown'}") if model is not None else "No model is loaded."
        self.text = QLabel(f"<h3>ctseg {ctseg_core.__version__}</h3>Review, correction and local fine-tuning of AI "
                           "segmentations of intracranial hemorrhage on head CT.<br><b>Research software, not for "
                           f"clinical use.</b><p>{model_text}</p>")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.layout_.addWidget(self.text)
        self.layout_.addWidget(QLabel("Built on:"))
        self.table = _table(["Library", "Version", "Licence"], library_rows())
        self.layout_.addWidget(self.table)
        self.finish()
        self.resize(600, 560)


def install_help(window) -> None:
    """Help > Keyboard and mouse (F1 is a window preset, so Ctrl+/ opens it) and Help > About."""
    help_menu = window.menu("&Help")

    def show(dialog_class):
        dialog = dialog_class(window)
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.show()
        window.help_dialog = dialog
        return dialog

    shortcuts = QAction("Keyboard and mouse...", window)
    shortcuts.setShortcut(QKeySequence("Ctrl+/"))
    shortcuts.triggered.connect(lambda *_: show(ShortcutsDialog))
    about = QAction("About ctseg...", window)
    about.triggered.connect(lambda *_: show(AboutDialog))
    help_menu.addAction(shortcuts)
    help_menu.addAction(about)
    window.help_actions = {"shortcuts": shortcuts, "about": about}
