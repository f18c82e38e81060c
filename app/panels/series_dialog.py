"""Pick one series of a DICOM folder that holds several (the recommended axial CT series preselected)."""

from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

COLUMNS = ["Description", "Modality", "Slices", "Rows x cols", "Pixel x slice spacing (mm)", "Tilt", "Notes"]


def _series_row(s) -> list[str]:
    px = tuple(s.pixel_spacing_mm or ())
    px_text = f"{px[0]:.3f}" if px else "?"
    dz_min, dz_max = (tuple(s.slice_spacing_mm or ()) + (0.0, 0.0))[:2]
    dz = "?" if not dz_max else (f"{dz_min:.2f}" if abs(dz_max - dz_min) < 0.01 else f"{dz_min:.2f}-{dz_max:.2f}")
    notes = s.notes if isinstance(s.notes, str) else "; ".join(s.notes or [])
    return [s.description or "(no description)", s.modality, str(s.n_slices), f"{s.rows} x {s.cols}",
            f"{px_text} x {dz}", f"{s.gantry_tilt_deg:.1f}°" if s.gantry_tilt_deg else "0", notes]


class SeriesDialog(QDialog):
    def __init__(self, scan, folder: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Choose a series")
        self.series = list(scan.series)
        self.table = QTableWidget(len(self.series), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        recommended = scan.selected() if callable(getattr(scan, "selected", None)) else None
        for row, s in enumerate(self.series):
            for col, text in enumerate(_series_row(s)):
                self.table.setItem(row, col, QTableWidgetItem(text))
            if recommended is not None and s.series_uid == recommended.series_uid:
                self.table.selectRow(row)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.resizeColumnsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.Open | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.table.doubleClicked.connect(lambda *_: self.accept())
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{folder} holds {len(self.series)} series. The recommended axial CT series "
                                "is selected."))
        layout.addWidget(self.table)
        skipped = getattr(scan, "skipped", None) or []
        if skipped:
            layout.addWidget(QLabel(f"{len(skipped)} files skipped (not images or not DICOM)."))
        layout.addWidget(buttons)
        self.resize(820, 300)

    def chosen_uid(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.series[rows[0].row()].series_uid if rows else None
