"""The adjudication view: two readers' maps of the open case overlaid, their agreement, and the decisions.

Colours: agreement green, reader A only orange, reader B only blue, both drew but different classes
magenta (``ctseg_core.adjudication``). The table gives per-class Dice and volumes of A and B; the list the
components where they differ (largest first): Next / Previous step through the undecided ones, Accept A /
Accept B take the selected component from one reader, All from A / All from B every component.
"Save as final" makes the result the case's final labels (status adjudicated, which training uses);
"Save and redraw" also opens the final map in the editor to redraw what neither reader got right.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QTransform
from PySide6.QtWidgets import (QComboBox, QDialog, QGridLayout, QHBoxLayout, QHeaderView, QLabel, QMessageBox,
                               QPushButton, QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ctseg_core.adjudication import A_ONLY, AGREE, B_ONLY, CATEGORY_NAMES, CONFLICT, Adjudication, compare
from ctseg_core.errors import CtsegError
from ctseg_core.labels import LABEL_CLASSES
from ctseg_core.store.readers import load_reader_map, readers_of, save_adjudicated
from ctseg_core.volume import LabelMap
from ctseg_core.windowing import PRESETS
from app.viewer.plane import view_plane

COLOURS = {AGREE: (40, 200, 60), A_ONLY: (255, 140, 0), B_ONLY: (30, 140, 255), CONFLICT: (230, 40, 230)}
MIN_FRAME_MM = 80.0  # the smallest field of view when framing a component
DECISION_TEXT = {"a": "from A", "b": "from B", "": "undecided"}


def agreement_lut() -> np.ndarray:
    lut = np.zeros((256, 4), np.uint8)
    for category, rgb in COLOURS.items():
        lut[category, :3], lut[category, 3] = rgb, 255
    return lut


def _class_names(values) -> str:
    return ", ".join(LABEL_CLASSES[v].key.upper() for v in values if v) or "nothing"


class AdjudicationView(QDialog):
    def __init__(self, store, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Adjudication")
        self.store, self.session = store, store.session
        self.case = store.case
        self.volume = self.session.volume
        self.adjudication: Adjudication | None = None
        self.current = -1  # position in adjudication.components
        self.readers = [r.reader for r in readers_of(self.case.folder)] if self.case is not None else []
        self.reader_a, self.reader_b = QComboBox(), QComboBox()
        for combo, pick in ((self.reader_a, 0), (self.reader_b, 1)):
            combo.addItems(self.readers)
            combo.setCurrentIndex(min(pick, len(self.readers) - 1))
            combo.currentIndexChanged.connect(lambda _: self.compare())
        self._build()
        self.compare()

    # ---- layout ----
    def _build(self) -> None:
        self.graphics = pg.GraphicsView(background="k")
        self.viewbox = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.graphics.setCentralItem(self.viewbox)
        self.hu_item, self.overlay = pg.ImageItem(), pg.ImageItem()
        self.overlay.setLookupTable(agreement_lut())
        self.overlay.setOpacity(0.6)
        for z, item in enumerate((self.hu_item, self.overlay)):
            item.setZValue(z)
            self.viewbox.addItem(item)
        self.box = pg.RectROI((0, 0), (1, 1), movable=False, resizable=False, pen=pg.mkPen((255, 255, 255), width=1))
        self.box.setZValue(5)
        self.box.setVisible(False)
        self.viewbox.addItem(self.box)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(lambda _: self.redraw())
        self.slice_label = QLabel()
        legend = QLabel("  ".join(f"<span style='color: rgb{rgb}'>■</span> {CATEGORY_NAMES[c]}"
                                  for c, rgb in COLOURS.items()))
        self.classes = QTableWidget(0, 5)
        self.classes.setHorizontalHeaderLabels(("Class", "Dice", "A mL", "B mL", "A − B mL"))
        self.components = QTableWidget(0, 5)
        self.components.setHorizontalHeaderLabels(("Slices", "Voxels", "A drew", "B drew", "Decision"))
        for table in (self.classes, self.components):
            table.verticalHeader().setVisible(False)
            table.setEditTriggers(QTableWidget.NoEditTriggers)
            table.setSelectionBehavior(QTableWidget.SelectRows)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.components.setSelectionMode(QTableWidget.SingleSelection)
        self.components.cellClicked.connect(lambda row, _: self.go_to(row))
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        buttons = QGridLayout()
        for col, row, text, slot in ((0, 0, "◀ Previous", lambda: self.step(-1)), (1, 0, "Next ▶", lambda: self.step(1)),
                                     (0, 1, "Accept A", lambda: self.decide("a")),
                                     (1, 1, "Accept B", lambda: self.decide("b")),
                                     (0, 2, "All from A", lambda: self.decide_all("a")),
                                     (1, 2, "All from B", lambda: self.decide_all("b")),
                                     (0, 3, "Save as final", lambda: self.save(redraw=False)),
                                     (1, 3, "Save and redraw", lambda: self.save(redraw=True))):
            button = QPushButton(text)
            button.setAutoDefault(False)
            button.clicked.connect(lambda *_, s=slot: s())
            buttons.addWidget(button, row, col)
            setattr(self, "button_" + text.lower().replace(" ", "_").strip("◀▶_"), button)

        pick = QHBoxLayout()
        pick.addWidget(QLabel("Reader A:"))
        pick.addWidget(self.reader_a, 1)
        pick.addWidget(QLabel("Reader B:"))
        pick.addWidget(self.reader_b, 1)
        left = QVBoxLayout()
        left.addLayout(pick)
        left.addWidget(self.graphics, 1)
        nav = QHBoxLayout()
        nav.addWidget(self.slider, 1)
        nav.addWidget(self.slice_label)
        left.addLayout(nav)
        left.addWidget(legend)
        right = QVBoxLayout()
        right.addWidget(QLabel("Per class"))
        right.addWidget(self.classes, 2)
        right.addWidget(QLabel("Where the readers differ"))
        right.addWidget(self.components, 3)
        right.addWidget(self.summary)
        right.addLayout(buttons)
        side = QWidget()
        side.setLayout(right)
        side.setMinimumWidth(420)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addWidget(side, 2)
        self.resize(1400, 820)

    # ---- data ----
    def compare(self) -> None:
        """Load the two chosen readers' maps (read-only: they stay the readers') and compare them."""
        a, b = self.reader_a.currentText(), self.reader_b.currentText()
        if self.case is None or self.volume is None or not a or not b or a == b:
            self.adjudication = None
            self.summary.setText("Adjudication needs two readers' maps of the open case "
                                 f"(this case has {len(self.readers)}).")
            self._fill_tables()
            return
        try:
            map_a, map_b = (load_reader_map(self.case, r, self.volume) for r in (a, b))
        except CtsegError as exc:
            self.summary.setText(f"the readers' maps could not be read: {exc}")
            return
        self.adjudication = Adjudication(map_a.array, map_b.array, a, b)
        self.rows = compare(map_a.array, map_b.array, self.volume.geometry)
        plane = view_plane("axial", self.volume.geometry)
        self.plane = plane
        self.viewbox.invertY(plane.invert_y)
        self.viewbox.invertX(plane.invert_x)
        sr, sc = plane.spacing(self.volume.geometry)
        for item in (self.hu_item, self.overlay):
            item.setTransform(QTransform.fromScale(sc, sr))
        self.slider.setRange(0, self.volume.shape[plane.slice_axis] - 1)
        self.slider.setValue(self.session.position[0])
        self.current = -1
        self._fill_tables()
        self.redraw()
        self.viewbox.autoRange(padding=0.02)
        if self.adjudication.components:
            self.go_to(0)

    def _fill_tables(self) -> None:
        adj = self.adjudication
        rows = [r for r in getattr(self, "rows", []) if r.dice is not None] if adj is not None else []
        self.classes.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = (r.key.upper(), f"{r.dice:.3f}", f"{r.volume_a_ml:.2f}", f"{r.volume_b_ml:.2f}",
                     f"{r.difference_ml:+.2f}")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(r.name)
                self.classes.setItem(i, col, item)
        comps = adj.components if adj is not None else []
        self.components.setRowCount(len(comps))
        spacing_ml = self.volume.geometry.voxel_volume_ml if self.volume is not None else 0.0
        for i, c in enumerate(comps):
            first, last = c.slices
            cells = (f"{first}" if first == last else f"{first}-{last}", f"{c.voxels} ({c.voxels * spacing_ml:.2f} mL)",
                     _class_names(c.classes_a), _class_names(c.classes_b), DECISION_TEXT[c.decision])
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 4 and c.decision:
                    item.setForeground(QColor(*COLOURS[A_ONLY if c.decision == "a" else B_ONLY]))
                self.components.setItem(i, col, item)
        if adj is not None:
            self.summary.setText(f"A = {adj.reader_a}, B = {adj.reader_b}: {len(comps)} region(s) differ, "
                                 f"{adj.undecided} undecided (left as background unless decided or redrawn).")

    # ---- display ----
    def redraw(self) -> None:
        if self.volume is None or self.adjudication is None:
            return
        k = self.slider.value()
        w = PRESETS["brain"]
        self.hu_item.setImage(self.plane.slice_of(self.volume.array, k), autoLevels=False, levels=(w.low, w.high))
        self.overlay.setImage(self.plane.slice_of(self.adjudication.categories, k), autoLevels=False, levels=(0, 255))
        self.slice_label.setText(f"slice {k + 1} / {self.volume.shape[0]}")
        self._place_box()

    def _place_box(self) -> None:
        adj = self.adjudication
        comp = adj.components[self.current] if adj is not None and 0 <= self.current < len(adj.components) else None
        k = self.slider.value()
        if comp is None or not comp.bbox[0] <= k < comp.bbox[1]:
            self.box.setVisible(False)
            return
        sr, sc = self.plane.spacing(self.volume.geometry)
        z0, z1, y0, y1, x0, x1 = comp.bbox
        self.box.setPos((x0 * sc - 2, y0 * sr - 2))
        self.box.setSize(((x1 - x0) * sc + 4, (y1 - y0) * sr + 4))
        self.box.setVisible(True)

    def go_to(self, position: int) -> None:
        """Show the component at ``position``: its middle slice, selected in the list, framed."""
        adj = self.adjudication
        if adj is None or not 0 <= position < len(adj.components):
            return
        self.current = position
        comp = adj.components[position]
        self.components.selectRow(position)
        self.slider.setValue(comp.centre[0])
        self.session.set_position(*comp.centre)  # the main views follow
        self._place_box()
        self._zoom_to(comp)

    def _zoom_to(self, comp) -> None:
        """Frame the component, at least ``MIN_FRAME_MM`` wide, so that a thin rim is visible."""
        sr, sc = self.plane.spacing(self.volume.geometry)
        z0, z1, y0, y1, x0, x1 = comp.bbox
        cx, cy = (x0 + x1) / 2 * sc, (y0 + y1) / 2 * sr
        half = max((x1 - x0) * sc, (y1 - y0) * sr, MIN_FRAME_MM) / 2 + 5
        self.viewbox.setRange(QRectF(cx - half, cy - half, 2 * half, 2 * half), padding=0)

    def step(self, direction: int) -> None:
        """Next / previous undecided component (any component when all are decided)."""
        adj = self.adjudication
        if adj is None or not adj.components:
            return
        n = len(adj.components)
        order = [(self.current + direction * k) % n for k in range(1, n + 1)]
        target = next((i for i in order if not adj.components[i].decision), order[0])
        self.go_to(target)

    def decide(self, choice: str) -> None:
        adj = self.adjudication
        if adj is None or not 0 <= self.current < len(adj.components):
            return
        adj.decide(self.current, choice)
        self._fill_tables()
        following = adj.next_undecided(self.current)
        self.go_to(following if following is not None else self.current)

    def decide_all(self, choice: str) -> None:
        if self.adjudication is not None:
            self.adjudication.decide_all(choice)
            self._fill_tables()

    # ---- the result ----
    def save(self, redraw: bool = False) -> bool:
        """The result becomes the case's final labels (status adjudicated); with ``redraw`` the final map
        opens in the editor. False when it could not be saved (another program holds the case)."""
        adj, store = self.adjudication, self.store
        if adj is None or store.workspace is None or self.case is None:
            return False
        if adj.undecided and getattr(store.window, "interactive", False):
            answer = QMessageBox.question(self, "Adjudication", f"{adj.undecided} region(s) where the readers "
                                          "differ are not decided; they become background. Save anyway?")
            if answer != QMessageBox.Yes:
                return False
        if store.editing_final:
            store.reopen(editing_final=False)  # the store's hold on the final map is given back first
        case = store.workspace.case(self.case.id)
        case.who = store.annotator
        try:
            case.lock_for_editing()
            try:
                save_adjudicated(case, LabelMap(adj.result.copy(), self.volume.geometry), adj.reader_a,
                                 adj.reader_b, adj.decisions())
            finally:
                case.release_lock()
        except CtsegError as exc:
            self.summary.setText(f"not saved: {exc}")
            self.session.log(f"the adjudicated map was not saved: {exc}", "error")
            return False
        self.session.log(f"case {case.id}: adjudicated by {store.annotator} ({adj.reader_a} vs {adj.reader_b}); "
                         "the result is the case's final map")
        store.cases_changed.emit()
        if redraw:
            store.reopen(editing_final=True)
            self.close()
        return True
