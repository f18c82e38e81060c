"""ctseg's DICOM node as one object: the listener, the background segmentation of complete series, and
the outbox sender. ``ctseg listen`` runs it in the foreground; the app runs it behind its listener toggle.

    service = PacsService(workspace, config, segment=SeriesSegmenter(workspace))
    service.start()            # listener + segmentation consumer + outbox sender
    service.retrieve(study)    # C-MOVE (to our listener) or C-GET; the series are queued when complete
    service.stop()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ctseg_core.pacs.config import PacsConfig
from ctseg_core.pacs.inbox import Inbox, SeriesEntry
from ctseg_core.pacs.outbox import Outbox, OutboxSender
from ctseg_core.pacs.query import RetrieveResult, retrieve
from ctseg_core.pacs.receiver import Listener
from ctseg_core.pacs.segmenter import SeriesConsumer

log = logging.getLogger("ctseg.pacs")


class PacsService:
    """``segment``: the callable that segments one series folder (``SeriesSegmenter``); None: received
    series are only filed and queued (segmented later, when a segmenter runs). ``on_series(entry)`` is
    called when a series changes state (queued, segmented, failed), from a background thread."""

    def __init__(self, workspace_root: str | Path, config: PacsConfig, segment: Callable[[Path], str] | None = None,
                 on_series: Callable[[SeriesEntry], None] | None = None, outbox_poll_s: float = 1.0):
        self.workspace_root = Path(workspace_root)
        self.config = config
        self.on_series = on_series
        self.inbox = Inbox(workspace_root)
        self.outbox = Outbox(workspace_root)
        self.consumer = SeriesConsumer(self.inbox, segment, on_done=self._changed) if segment else None
        self.listener = Listener(workspace_root, config, on_complete=self._on_complete)
        self.sender = OutboxSender(self.outbox, lambda: self.config, poll_s=outbox_poll_s)

    def _changed(self, entry: SeriesEntry) -> None:
        if self.on_series is not None:
            self.on_series(entry)

    def _on_complete(self, entry: SeriesEntry) -> None:
        self._changed(entry)
        if self.consumer is not None:
            self.consumer.submit(entry)

    @property
    def listening(self) -> bool:
        return self.listener.running

    def start(self, listen: bool = True) -> "PacsService":
        """Start the segmentation consumer (resuming what an earlier run left queued), the outbox sender
        and, with ``listen``, the listener."""
        if self.consumer is not None:
            self.consumer.start()
            resumed = self.consumer.resume()
            if resumed:
                log.info("%d series queued by an earlier run will be segmented", resumed)
        self.sender.start()
        if listen:
            self.listener.start()
        return self

    def set_config(self, config: PacsConfig) -> None:
        """New settings: the outbox uses them at once; the listener after a restart (``restart_listener``)."""
        self.config = config
        self.listener.config = config

    def restart_listener(self) -> None:
        was = self.listener.running
        self.listener.stop()
        if was:
            self.listener.start()

    def retrieve(self, study_uid: str, series_uid: str | None = None, progress=None, cancel=None,
                 mode: str | None = None) -> RetrieveResult:
        """Pull a study (or series) from the query node; its series are queued for segmentation as soon as
        the transfer ends."""
        mode = mode or self.config.retrieve
        result = retrieve(self.config, study_uid, series_uid, workspace_root=self.workspace_root, mode=mode,
                          progress=progress, cancel=cancel)
        if mode == "move":
            result.series = self.listener.complete_now(study_uid)  # (the listener queued them)
        else:
            for entry in result.series:
                self._on_complete(entry)
        return result

    def stop(self) -> None:
        self.listener.stop()
        self.sender.stop()
        if self.consumer is not None:
            self.consumer.stop()
