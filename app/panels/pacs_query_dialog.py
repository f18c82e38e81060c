"""PACS > Query / retrieve...: search the PACS for CT studies (patient id, name, study date) and pull one.

The search (C-FIND) and the retrieval (C-MOVE to this ctseg's listener, turned on for it, or C-GET, as
the PACS settings say) run in the background; the progress bar follows the PACS's count of instances.
Retrieved series land in the inbox and are segmented there (Inbox / Outbox dock)."""

from __future__ import annotations

from PySide6.QtWidgets import (QDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QTableWidgetItem, QVBoxLayout)

from ctseg_core.errors import CtsegError
from ctseg_core.pacs.query import check_date, describe_result
from app.workers import run_task
from app.panels.tables import read_only_table

COLUMNS = ("Date", "Patient ID", "Name", "Description", "Series", "Images")


class PacsQueryDialog(QDialog):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.c = controller
        self.setWindowTitle("Query / retrieve from the PACS")
        self.studies = []
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("wildcards * and ? allowed, e.g. DOE^J*")
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for edit in (self.date_from, self.date_to):
            edit.setPlaceholderText("YYYYMMDD")
            edit.setMaxLength(8)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form = QFormLayout()
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        form.addRow("Study date", dates)
        self.search_button = QPushButton("Search (CT studies)")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        self.table = read_only_table(COLUMNS, select_rows=True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.Stretch)
        self.table.cellDoubleClicked.connect(lambda row, _: self.retrieve(row))
        self.retrieve_button = QPushButton("Retrieve selected study")
        self.retrieve_button.clicked.connect(lambda: self.retrieve(self.table.currentRow()))
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.retrieve_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.search_button)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.status)
        self.resize(820, 520)
        self.busy = False

    def date_range(self) -> str:
        start, end = self.date_from.text().strip(), self.date_to.text().strip()
        return check_date(f"{start}-{end}" if (start or end) and start != end else start)

    def search(self) -> None:
        from ctseg_core.pacs.query import find_studies

        config = self.c.config
        try:
            node = config.query()
            date = self.date_range()
        except CtsegError as exc:
            self.status.setText(f"<b>Cannot search:</b> {exc} (PACS > PACS settings...)")
            return
        pid, name = self.patient_id.text(), self.patient_name.text()
        self.status.setText(f"searching {node.describe()}...")
        self.search_button.setEnabled(False)
        run_task(lambda: find_studies(config, pid, name, date), self._on_found, self._on_search_failed)

    def _on_found(self, studies) -> None:
        self.search_button.setEnabled(True)
        self.studies = studies
        self.table.setRowCount(len(studies))
        for row, s in enumerate(studies):
            date = f"{s.study_date[:4]}-{s.study_date[4:6]}-{s.study_date[6:]}" if len(s.study_date) == 8 else s.study_date
            for col, text in enumerate((date, s.patient_id, s.patient_name, s.study_description, s.n_series,
                                        s.n_instances)):
                item = QTableWidgetItem(text)
                item.setToolTip(f"study {s.study_uid}\naccession {s.accession_number}\nmodalities {s.modalities}")
                self.table.setItem(row, col, item)
        if studies:
            self.table.selectRow(0)
        self.status.setText(f"{len(studies)} CT stud{'y' if len(studies) == 1 else 'ies'} found")

    def _on_search_failed(self, error) -> None:
        self.search_button.setEnabled(True)
        self.status.setText(f"<b>Search failed:</b> {error.message()}")

    def retrieve(self, row: int) -> None:
        if self.busy or not 0 <= row < len(self.studies):
            return
        study = self.studies[row]
        self.busy = True
        self.retrieve_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"retrieving {study.patient_name or study.patient_id} {study.study_description} "
                            f"({self.c.config.retrieve.upper()})...")
        self.c.retrieve(study.study_uid, None, self._on_progress, self._on_retrieved, self._on_retrieve_failed)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} / {total} images")

    def _done(self) -> None:
        self.busy = False
        self.retrieve_button.setEnabled(True)
        self.progress.setVisible(False)

    def _on_retrieved(self, result) -> None:
        self._done()
        self.status.setText(f"{describe_result(result)}; {len(result.series)} series queued for segmentation "
                            "(Inbox / Outbox dock)")
        self.c.session.log(f"retrieved from the PACS: {describe_result(result)}")
        self.c.changed.emit()

    def _on_retrieve_failed(self, error) -> None:
        self._done()
        self.status.setText(f"<b>Retrieve failed:</b> {error.message()}")
        self.c.session.log(f"retrieve failed: {error.message()}", "error")
