"""PACS > PACS settings...: this ctseg's AE title and port, the remote nodes, TLS files, which node is
queried and which receives the results. Reads and writes ``<workspace>/pacs.toml`` (through
``ctseg_core.pacs.config``); a node can be tried with C-ECHO before saving."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ctseg_core.errors import CtsegError
from ctseg_core.pacs.config import LocalNode, Node, PacsConfig, TlsFiles

NODE_COLUMNS = ("Name", "AE title", "Host", "Port", "TLS")


class PacsSettingsDialog(QDialog):
    def __init__(self, config: PacsConfig, path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("PACS settings")
        self.result_config: PacsConfig | None = None
        local = config.local
        self.ae_title = QLineEdit(local.ae_title)
        self.host = QLineEdit(local.host)
        self.port = QSpinBox(minimum=1, maximum=65535, value=local.port)
        self.settle = QDoubleSpinBox(minimum=0.1, maximum=3600, value=local.settle_s, suffix=" s", decimals=1)
        self.segment = QCheckBox("Segment complete series in the background")
        self.segment.setChecked(local.segment)
        self.listener_tls = QCheckBox("Listener accepts TLS connections only")
        self.listener_tls.setChecked(config.listener_tls)
        own = QGroupBox("This ctseg (the listener)")
        form = QFormLayout(own)
        form.addRow("AE title", self.ae_title)
        form.addRow("Listen on address", self.host)
        form.addRow("Port", self.port)
        form.addRow("Series complete after", self.settle)
        form.addRow(self.segment)
        form.addRow(self.listener_tls)

        self.nodes = QTableWidget(0, len(NODE_COLUMNS))
        self.nodes.setHorizontalHeaderLabels(NODE_COLUMNS)
        self.nodes.verticalHeader().setVisible(False)
        self.nodes.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        for node in config.nodes.values():
            self.add_node(node)
        add, remove, echo = QPushButton("Add node"), QPushButton("Remove node"), QPushButton("Test (C-ECHO)")
        add.clicked.connect(lambda: self.add_node(Node(f"node{self.nodes.rowCount() + 1}", "", "", 104)))
        remove.clicked.connect(lambda: self.nodes.removeRow(self.nodes.currentRow()))
        echo.clicked.connect(self.echo_selected)
        buttons = QHBoxLayout()
        for b in (add, remove, echo):
            buttons.addWidget(b)
        self.query_node, self.send_node = QComboBox(editable=True), QComboBox(editable=True)
        for combo, value in ((self.query_node, config.query_node), (self.send_node, config.send_node)):
            combo.addItems(list(config.nodes))
            combo.setCurrentText(value)
        self.retrieve = QComboBox()
        self.retrieve.addItem("C-MOVE to this ctseg's listener", "move")
        self.retrieve.addItem("C-GET (no listener needed)", "get")
        self.retrieve.setCurrentIndex(max(0, self.retrieve.findData(config.retrieve)))
        self.on_approval = QCheckBox("Send the results when a case is approved")
        self.on_approval.setChecked(config.send_on_approval)
        self.include_sr = QCheckBox("Send the DICOM SR measurement report with the DICOM SEG")
        self.include_sr.setChecked(config.include_sr)
        remote = QGroupBox("PACS nodes")
        lay = QVBoxLayout(remote)
        lay.addWidget(self.nodes)
        lay.addLayout(buttons)
        form = QFormLayout()
        form.addRow("Query / retrieve from", self.query_node)
        form.addRow("Retrieve with", self.retrieve)
        form.addRow("Send results to", self.send_node)
        form.addRow(self.on_approval)
        form.addRow(self.include_sr)
        lay.addLayout(form)

        self.certificate = self._file_row(config.tls.certificate)
        self.private_key = self._file_row(config.tls.private_key)
        self.ca = self._file_row(config.tls.ca_certificates)
        tls = QGroupBox("TLS (PEM files; for the listener and for nodes marked TLS)")
        form = QFormLayout(tls)
        form.addRow("Certificate", self.certificate.parentWidget())
        form.addRow("Private key", self.private_key.parentWidget())
        form.addRow("Trusted CA certificates", self.ca.parentWidget())

        self.message = QLabel(f"Saved in {path}")
        self.message.setWordWrap(True)
        box = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(own)
        layout.addWidget(remote, 1)
        layout.addWidget(tls)
        layout.addWidget(self.message)
        layout.addWidget(box)
        self.resize(640, 720)

    def _file_row(self, value: str) -> QLineEdit:
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        edit = QLineEdit(value)
        browse = QPushButton("...")
        browse.setMaximumWidth(32)
        browse.clicked.connect(lambda: self._browse(edit))
        row.addWidget(edit, 1)
        row.addWidget(browse)
        return edit

    def _browse(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "PEM file", edit.text(), "PEM (*.pem *.crt *.key);;All files (*)")
        if path:
            edit.setText(path)

    def add_node(self, node: Node) -> None:
        row = self.nodes.rowCount()
        self.nodes.insertRow(row)
        for col, text in enumerate((node.name, node.ae_title, node.host, str(node.port))):
            self.nodes.setItem(row, col, QTableWidgetItem(text))
        tls = QTableWidgetItem()
        tls.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled | Qt.ItemIsSelectable)
        tls.setCheckState(Qt.Checked if node.tls else Qt.Unchecked)
        self.nodes.setItem(row, 4, tls)

    def _node(self, row: int) -> Node:
        text = [(self.nodes.item(row, col).text() if self.nodes.item(row, col) else "").strip() for col in range(4)]
        return Node(text[0], text[1], text[2], text[3] or 0, self.nodes.item(row, 4).checkState() == Qt.Checked)

    def build(self) -> PacsConfig:
        """The settings as shown; ``CtsegError`` naming what is wrong."""
        nodes = {}
        for row in range(self.nodes.rowCount()):
            node = self._node(row).check()
            if node.name in nodes:
                raise CtsegError(f"two nodes are called {node.name!r}")
            nodes[node.name] = node
        config = PacsConfig(
            local=LocalNode(self.ae_title.text(), self.host.text().strip() or "0.0.0.0", self.port.value(),
                            self.settle.value(), self.segment.isChecked()),
            tls=TlsFiles(self.certificate.text().strip(), self.private_key.text().strip(), self.ca.text().strip()),
            nodes=nodes, query_node=self.query_node.currentText().strip(), retrieve=self.retrieve.currentData(),
            send_node=self.send_node.currentText().strip(), send_on_approval=self.on_approval.isChecked(),
            include_sr=self.include_sr.isChecked(), listener_tls=self.listener_tls.isChecked())
        return config.check()

    def accept(self) -> None:
        try:
            self.result_config = self.build()
        except CtsegError as exc:
            self.message.setText(f"<b>Not saved:</b> {exc}")
            return
        super().accept()

    def echo_selected(self) -> None:
        """C-ECHO the selected node in the background (an unreachable host takes a few seconds)."""
        from ctseg_core.pacs.net import echo
        from app.workers import run_task

        row = self.nodes.currentRow()
        if row < 0:
            self.message.setText("select a node to test")
            return
        try:
            config = self.build()
            node = self._node(row).check()
        except CtsegError as exc:
            self.message.setText(f"<b>Not valid:</b> {exc}")
            return
        self.message.setText(f"C-ECHO to {node.describe()}...")
        run_task(lambda: echo(node, config), lambda _: self._say(f"{node.describe()} answered C-ECHO"),
                 lambda e: self._say(f"<b>C-ECHO failed:</b> {e.message()}"))

    def _say(self, text: str) -> None:
        from shiboken6 import isValid

        if isValid(self.message):  # the dialog may be gone when the answer comes
            self.message.setText(text)
