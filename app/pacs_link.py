"""The app's link to the hospital's PACS: the listener toggle, background segmentation of received series,
query/retrieve, and sending approved results (all the DICOM work is ``ctseg_core.pacs``).

``install_pacs(window, editing)`` adds the PACS menu (Listen for DICOM, Query / retrieve..., Send results
of this case, PACS settings...), the Inbox / Outbox dock, and the ``PacsController``:
- it runs a ``ctseg_core.pacs.service.PacsService`` on the workspace as long as the window is open: the
  outbox sender (pending results are sent, retried with back-off, also after a restart) and the consumer
  that segments complete series one at a time with the model the app uses; the listener itself runs only
  while the toggle is on;
- series changes (queued, segmented, failed) arrive from the service's threads through a queued signal;
  the Cases dock is refreshed then (a segmented case reads "new, segmented");
- when the open case is approved and the settings say so, its DICOM SEG (and SR) go to the outbox.
Settings: ``<workspace>/pacs.toml`` (the same file ``ctseg listen`` reads).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction

from ctseg_core.errors import CtsegError
from ctseg_core.pacs.config import PacsConfig, config_path, load_config, save_config
from app.workers import TaskError, run_task


class PacsController(QObject):
    changed = Signal()  # the inbox or the outbox changed
    series_changed = Signal(object)  # a SeriesEntry (emitted from the service's threads: queued to the GUI)
    listening_changed = Signal(bool)

    def __init__(self, window, editing, predictor_factory=None):
        """``predictor_factory(checkpoint path)``: how the background segmenter builds its model (tests
        pass a tiny CPU one); default: ``Predictor.from_checkpoint`` on the best device."""
        super().__init__(window)
        self.window, self.editing, self.store = window, editing, editing.store
        self.session = window.session
        self.predictor_factory = predictor_factory
        self.service = None
        self.config = PacsConfig()
        self._auto_sent: set[str] = set()  # cases queued automatically on approval in this session
        self.series_changed.connect(self._on_series, Qt.QueuedConnection)
        self.store.cases_changed.connect(self._follow_workspace)
        self.store.cases_changed.connect(self._maybe_send_on_approval)
        window.about_to_close.connect(self.stop_service)  # pending outbox items stay on disk for the next session
        self.start_service()

    # ---- the workspace's service ----
    @property
    def workspace_root(self) -> Path | None:
        ws = self.store.workspace
        return ws.root if ws is not None else None

    def config_file(self) -> Path | None:
        root = self.workspace_root
        return config_path(root) if root is not None else None

    def load_config(self) -> PacsConfig:
        path = self.config_file()
        try:
            self.config = load_config(path) if path is not None else PacsConfig()
        except CtsegError as exc:
            self.session.log(f"PACS settings: {exc}; using defaults until they are fixed", "error")
            self.config = PacsConfig()
        return self.config

    def save_config(self, config: PacsConfig) -> None:
        save_config(config, self.config_file())
        self.config = config
        if self.service is not None:
            self.service.set_config(config)
            if self.listening:
                self.service.restart_listener()
        self.session.log(f"PACS settings saved to {self.config_file()}")
        self.changed.emit()

    def start_service(self) -> None:
        """(Re)start the service on the current workspace, without the listener."""
        from ctseg_core.pacs.segmenter import SeriesSegmenter
        from ctseg_core.pacs.service import PacsService

        self.stop_service()
        root = self.workspace_root
        if root is None:
            return
        self.load_config()
        segmenter = None
        if self.config.local.segment:
            segmenter = SeriesSegmenter(root, model=self.window.model.configured_path,
                                        predictor_factory=self.predictor_factory)
        self.service = PacsService(root, self.config, segment=segmenter, on_series=self.series_changed.emit)
        try:
            self.service.start(listen=False)
        except CtsegError as exc:
            self.session.log(f"PACS: {exc}", "error")

    def _follow_workspace(self) -> None:
        """File > Set workspace: the inbox, outbox and settings are the new workspace's."""
        running = self.service.workspace_root if self.service is not None else None
        if running != self.workspace_root:
            listening = self.listening
            self.start_service()
            if listening:
                self.session.log("the workspace changed: the DICOM listener was stopped", "warning")
            self.changed.emit()

    def stop_service(self) -> None:
        if self.service is not None:
            was = self.listening
            self.service.stop()
            self.service = None
            if was:
                self.listening_changed.emit(False)

    # ---- the listener ----
    @property
    def listening(self) -> bool:
        return self.service is not None and self.service.listening

    def set_listening(self, on: bool) -> bool:
        """Turn the listener on or off; False (and an error message) when it cannot listen."""
        if self.service is None:
            self.start_service()
        if self.service is None:
            self.session.log("no workspace: the listener cannot file what it receives", "error")
            return False
        if on == self.listening:
            return True
        if on:
            try:
                self.service.listener.start()
            except CtsegError as exc:
                self.window.show_error("The DICOM listener could not start", TaskError(exc, ""))
                self.listening_changed.emit(False)
                return False
            local = self.config.local
            self.session.log(f"listening for DICOM as {local.ae_title} on port {local.port}"
                             + (" (TLS)" if self.config.listener_tls else ""))
        else:
            self.service.listener.stop()
            self.session.log("the DICOM listener is off")
        self.listening_changed.emit(on)
        return True

    def _on_series(self, entry) -> None:
        if entry.state == "segmented":
            self.session.log(f"received and segmented: {entry.describe()} (case {entry.case_id}, new)")
            self.store.cases_changed.emit()
        elif entry.state == "failed":
            self.session.log(f"received series could not be segmented: {entry.describe()}: {entry.error}", "error")
        elif entry.state == "queued":
            self.session.log(f"received series complete, queued for segmentation: {entry.describe()}")
        self.changed.emit()

    # ---- query / retrieve ----
    def retrieve(self, study_uid: str, series_uid: str | None, on_progress, on_done, on_error) -> None:
        """Pull a study in the background (C-MOVE turns the listener on first)."""
        if self.service is None:
            on_error(TaskError(CtsegError("no workspace to receive into"), ""))
            return
        if self.config.retrieve == "move" and not self.set_listening(True):
            on_error(TaskError(CtsegError("C-MOVE sends to this ctseg's listener, which could not start"), ""))
            return
        service = self.service
        run_task(lambda progress: service.retrieve(study_uid, series_uid, progress=progress),
                 on_done, on_error, on_progress)

    # ---- sending ----
    def send_case(self, case_id: str, automatic: bool = False) -> None:
        """Put the case's DICOM SEG (and SR) in the outbox (prepared in the background), then send."""
        from ctseg_core.pacs.outbox import queue_case

        root, config = self.workspace_root, self.config
        if root is None:
            return
        self.session.log(f"preparing the results of case {case_id} for {config.send_node or 'the PACS'}"
                         + (" (approved)" if automatic else ""))

        def done(item):
            self.session.log(f"case {case_id}: {item.description}; queued for {item.destination}")
            if self.service is not None:
                self.service.sender.wake()
            self.changed.emit()

        run_task(lambda: queue_case(root, case_id, config), done,
                 lambda e: self.window.show_error(f"The results of case {case_id} cannot be sent", e))

    def send_open_case(self) -> None:
        case = self.store.case
        if case is None:
            self.session.log("no case is open", "warning")
            return
        self.store.flush()  # the final labels on disk are the ones sent
        self.send_case(case.id)

    def _maybe_send_on_approval(self) -> None:
        case = self.store.case
        if case is None or case.record.status != "approved" or not self.config.send_on_approval:
            return
        if not self.config.send_node or case.id in self._auto_sent:
            return
        from ctseg_core.pacs.outbox import Outbox

        latest = Outbox(self.workspace_root).latest_for_case(case.id)
        if latest is not None and latest.state in ("pending", "sending"):
            return  # its results wait in the outbox already
        self._auto_sent.add(case.id)
        self.send_case(case.id, automatic=True)



def install_pacs(window, editing, predictor_factory=None) -> PacsController:
    """Add the PACS menu, the Inbox / Outbox dock and the controller to the main window."""
    from app.panels.pacs_dock import PacsDock

    c = PacsController(window, editing, predictor_factory)
    c.dock_widget = PacsDock(c)
    c.dock = window.add_dock(c.dock_widget, "Inbox / Outbox", Qt.LeftDockWidgetArea)
    cases_dock = getattr(editing, "cases_dock", None)
    if cases_dock is not None:
        window.tabifyDockWidget(cases_dock, c.dock)
        cases_dock.raise_()
    window.menu("&View").addAction(c.dock.toggleViewAction())

    menu = window.menu("&PACS")
    c.listen_action = QAction("Listen for DICOM (receive from the PACS or scanner)", window, checkable=True)
    c.listen_action.toggled.connect(c.set_listening)  # a listener that cannot start unchecks it again
    c.listening_changed.connect(lambda on: _set_checked(c.listen_action, on))
    menu.addAction(c.listen_action)
    menu.addAction("Query / retrieve...", lambda: _ask_query(window, c))
    menu.addAction("Send results of this case", c.send_open_case)
    menu.addSeparator()
    menu.addAction("PACS settings...", lambda: _ask_settings(window, c))
    menu.addAction("Show inbox and outbox", lambda: (c.dock.show(), c.dock.raise_()))
    window.pacs = c
    return c


def _set_checked(action: QAction, on: bool) -> None:
    if action.isChecked() != on:
        action.blockSignals(True)
        action.setChecked(on)
        action.blockSignals(False)


def _ask_settings(window, c: PacsController) -> None:
    from app.panels.pacs_settings_dialog import PacsSettingsDialog

    dialog = PacsSettingsDialog(c.load_config(), c.config_file(), window)
    if dialog.exec():
        try:
            c.save_config(dialog.result_config)
        except CtsegError as exc:
            window.show_error("PACS settings not saved", TaskError(exc, ""))


def _ask_query(window, c: PacsController) -> None:
    from app.panels.pacs_query_dialog import PacsQueryDialog

    dialog = getattr(c, "query_dialog", None)
    if dialog is None:
        dialog = c.query_dialog = PacsQueryDialog(c, window)
    dialog.show()
    dialog.raise_()
