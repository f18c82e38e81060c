"""The listener: a C-STORE SCP (pynetdicom) that files what it receives into the inbox, and notices
when a series is complete.

``Listener(workspace, config, on_complete=cb).start()`` accepts associations on ``config.local``'s port
(TLS when ``config.listener_tls``), for every storage SOP class and every transfer syntax pydicom knows,
plus C-ECHO. Each instance goes through ``Inbox.file_instance``: a CT image is filed by study/series;
anything else is kept aside with a note. The answer to the sender: success for a filed instance and for
a non-CT instance kept aside (a whole study may carry dose reports and secondary captures: refusing them
would make a C-MOVE report failures), 0xC210 "cannot understand" for a malformed one. Nothing a peer
sends can stop the listener: every error in the handler becomes a note and a status.

A series is complete when no instance of it arrived for ``settle_s`` seconds: it is then marked
``queued`` and handed to ``on_complete(entry)`` (from the listener's watcher thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ctseg_core.errors import PacsError
from ctseg_core.pacs.config import PacsConfig
from ctseg_core.pacs.inbox import Inbox, Received, SeriesEntry
from ctseg_core.pacs.net import make_ae, server_ssl_context

log = logging.getLogger("ctseg.pacs")

STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC210
STATUS_OUT_OF_RESOURCES = 0xA700


def storage_contexts():
    """Every storage SOP class with every transfer syntax pydicom knows (compressed ones included)."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AllStoragePresentationContexts, build_context

    return [build_context(cx.abstract_syntax, AllTransferSyntaxes) for cx in AllStoragePresentationContexts]


def get_storage_classes() -> list[str]:
    """The storage SOP classes a C-GET asks for (requested contexts are limited to 128): the CT image
    classes, and the usual companions of a CT study so that they reach the inbox and are kept aside
    with a note instead of failing the transfer."""
    from pynetdicom import sop_class as sc

    return [sc.CTImageStorage, sc.EnhancedCTImageStorage, sc.LegacyConvertedEnhancedCTImageStorage,
            sc.SecondaryCaptureImageStorage, sc.XRayRadiationDoseSRStorage, sc.EnhancedSRStorage,
            sc.ComprehensiveSRStorage, sc.Comprehensive3DSRStorage, sc.SegmentationStorage,
            sc.GrayscaleSoftcopyPresentationStateStorage, sc.MRImageStorage]


class Listener:
    def __init__(self, workspace_root: str | Path, config: PacsConfig,
                 on_complete: Callable[[SeriesEntry], None] | None = None,
                 on_received: Callable[[Received], None] | None = None, poll_s: float = 0.2):
        self.inbox = Inbox(workspace_root)
        self.config = config
        self.on_complete = on_complete
        self.on_received = on_received
        self.poll_s = poll_s
        self._last_seen: dict[tuple[str, str], float] = {}  # series -> monotonic time of its last instance
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = None
        self._watcher: threading.Thread | None = None
        self.counts = {"filed": 0, "set_aside": 0, "malformed": 0}

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        return (self.config.local.host, self.config.local.port)

    def start(self) -> "Listener":
        from pynetdicom import evt
        from pynetdicom.sop_class import Verification

        if self.running:
            return self
        ae = make_ae(self.config)
        ae.maximum_pdu_size = 0  # no limit
        for cx in storage_contexts():
            ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax)
        ae.add_supported_context(Verification)
        ae.require_called_aet = True
        ssl_context = server_ssl_context(self.config) if self.config.listener_tls else None
        for entry in self.inbox.entries():  # series a previous run left receiving: settle from now on
            if entry.state == "receiving":
                self._last_seen[entry.key] = time.monotonic()
        try:
            self._server = ae.start_server(self.address, block=False, ssl_context=ssl_context,
                                           evt_handlers=[(evt.EVT_C_STORE, self._handle_store)])
        except OSError as exc:
            raise PacsError(f"cannot listen on {self.address[0]}:{self.address[1]} ({exc.strerror or exc})") from exc
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="ctseg-series-watcher", daemon=True)
        self._watcher.start()
        log.info("listening as %s on %s:%d%s", self.config.local.ae_title, *self.address,
                 " (TLS)" if ssl_context else "")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    # ---- receiving ----
    def _handle_store(self, event) -> int:
        calling = ""
        try:
            calling = str(event.assoc.requestor.ae_title).strip()
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # noqa: BLE001 - a broken request must not reach pynetdicom as an error
            log.warning("a C-STORE request from %s could not be read: %s", calling or "?", exc)
            return STATUS_CANNOT_UNDERSTAND
        try:
            received = self.inbox.file_instance(data, calling)
        except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: refuse this instance, keep listening
            log.error("could not file an instance from %s: %s", calling or "?", exc)
            return STATUS_OUT_OF_RESOURCES
        if received.entry is None:
            self.counts["malformed" if received.malformed else "set_aside"] += 1
            log.warning("instance from %s kept aside as %s: %s", calling or "?", received.path.name, received.note)
        else:
            self.counts["filed"] += 1
            with self._lock:
                self._last_seen[received.entry.key] = time.monotonic()
        if self.on_received is not None:
            try:
                self.on_received(received)
            except Exception:  # noqa: BLE001
                log.exception("on_received callback failed")
        return STATUS_CANNOT_UNDERSTAND if received.malformed else STATUS_SUCCESS

    # ---- series completion ----
    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check_complete()
            except Exception:  # noqa: BLE001 - the watcher keeps running
                log.exception("series completion check failed")

    def complete_now(self, study_uid: str | None = None) -> list[SeriesEntry]:
        """Queue now, without waiting for the settle time, the receiving series of ``study_uid`` (all when
        None): a C-MOVE that ended has delivered every instance it will."""
        with self._lock:
            for key in self._last_seen:
                if study_uid is None or key[0] == study_uid:
                    self._last_seen[key] = float("-inf")
        return self.check_complete()

    def check_complete(self, now: float | None = None) -> list[SeriesEntry]:
        """Queue the series whose last instance is older than the settle time; returns them."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [k for k, t in self._last_seen.items() if now - t >= self.config.local.settle_s]
            for k in due:
                del self._last_seen[k]
        done = []
        for key in due:
            entry = self.inbox.entry(*key)
            if entry is None or entry.state != "receiving":
                continue
            entry = self.inbox.set_state(entry, "queued", f"complete: no instance for {self.config.local.settle_s:g} s")
            log.info("series complete: %s", entry.describe())
            done.append(entry)
            if self.on_complete is not None:
                self.on_complete(entry)
        return done
