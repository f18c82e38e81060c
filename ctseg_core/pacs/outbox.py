"""The persistent outbox: results waiting to be sent to a DICOM node, retried with back-off.

Layout under ``<workspace>/outbox/``::

    <item id>/item.json      what to send where, its state and attempts (``OutboxItem``), written atomically
    <item id>/seg.dcm        the files to send, written before the item appears
    <item id>/sr.dcm

An item is prepared in ``<item id>.partial`` and renamed into place complete, so a crash leaves either
nothing or a whole item. Items survive the app or the listener closing: whatever is still pending (or was
being sent) is sent by the next ``OutboxSender``. States: ``pending`` (waiting for its next try),
``sending``, ``sent``, ``failed`` (refused by the destination, or still unreachable after
``MAX_ATTEMPTS`` tries: the user retries or removes it). An unreachable destination is retried after
``backoff_s(attempts)``: 10 s, 20 s, 40 s ... at most 10 min apart.

``queue_case`` prepares an approved case's results: its DICOM SEG (final labels, else the model's
prediction) and, where one can be made, the DICOM SR measurement report referring to it.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import CaseLockedError, CtsegError, PacsError, StoreError
from ctseg_core.pacs.config import PacsConfig
from ctseg_core.pacs.inbox import now_iso
from ctseg_core.store.lock import CaseLock

log = logging.getLogger("ctseg.pacs")

ITEM_JSON = "item.json"
STATES = ("pending", "sending", "sent", "failed")
BACKOFF_BASE_S = 10.0
BACKOFF_CAP_S = 600.0
MAX_ATTEMPTS = 30  # about 4 hours of retrying at the cap


def backoff_s(attempts: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait after the ``attempts``-th failed try: base, 2 base, 4 base, ... at most ``cap``."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


@dataclass
class OutboxItem:
    id: str
    case_id: str
    destination: str  # a node name of the PACS settings
    files: list[str]  # file names in the item's folder
    description: str = ""
    created: str = ""
    state: str = "pending"
    attempts: int = 0
    next_try: float = 0.0  # time.time() of the next try
    last_error: str = ""
    sent_at: str = ""
    history: list[dict] = field(default_factory=list)  # {time, state, note}

    def status_text(self, now: float | None = None) -> str:
        if self.state == "pending" and self.attempts:
            wait = max(0, int(self.next_try - (time.time() if now is None else now)))
            return f"retrying in {wait} s (try {self.attempts + 1})"
        if self.state == "failed":
            return f"failed: {self.last_error}"
        if self.state == "sent":
            return f"sent {self.sent_at[:19].replace('T', ' ')}"
        return self.state


class Outbox:
    def __init__(self, workspace_root: str | Path):
        self.root = Path(workspace_root).expanduser() / "outbox"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    def folder(self, item: OutboxItem | str) -> Path:
        return self.root / (item if isinstance(item, str) else item.id)

    def paths(self, item: OutboxItem) -> list[Path]:
        return [self.folder(item) / name for name in item.files]

    # ---- adding ----
    def add(self, case_id: str, destination: str, write_files: Callable[[Path], list[Path]],
            description: str | Callable[[], str] = "") -> OutboxItem:
        """A new pending item; ``write_files(folder)`` writes the files to send into ``folder`` and returns
        them. Nothing appears in the outbox unless every file was written."""
        item_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        partial = self.root / f"{item_id}.partial"
        partial.mkdir(parents=True)
        try:
            files = [Path(p) for p in write_files(partial)]
            if not files:
                raise CtsegError("nothing to send")
            if callable(description):
                description = description()
            item = OutboxItem(item_id, case_id, destination, [p.name for p in files], description, now_iso(),
                              history=[{"time": now_iso(), "state": "pending", "note": "queued"}])
            atomic_write_text(partial / ITEM_JSON, json.dumps(asdict(item), indent=1))
            partial.rename(self.folder(item_id))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return item

    # ---- reading ----
    def get(self, item_id: str) -> OutboxItem:
        path = self.folder(item_id) / ITEM_JSON
        try:
            return OutboxItem(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise PacsError(f"no outbox item {item_id!r}", self.root) from exc
        except (OSError, ValueError, TypeError) as exc:
            raise PacsError(f"the outbox item is damaged ({exc})", path) from exc

    def items(self) -> list[OutboxItem]:
        """Every readable item, newest first."""
        out = []
        for path in self.root.glob(f"*/{ITEM_JSON}"):
            try:
                out.append(OutboxItem(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda i: i.id, reverse=True)

    def due(self, now: float | None = None) -> list[OutboxItem]:
        """Items to try now, oldest first (``sending`` ones were interrupted by a stop)."""
        now = time.time() if now is None else now
        due = [i for i in self.items() if i.state == "sending" or (i.state == "pending" and i.next_try <= now)]
        return sorted(due, key=lambda i: i.id)

    def latest_for_case(self, case_id: str) -> OutboxItem | None:
        return next((i for i in self.items() if i.case_id == case_id), None)

    # ---- changing ----
    def update(self, item: OutboxItem, state: str | None = None, note: str = "") -> OutboxItem:
        if state is not None:
            if state not in STATES:
                raise PacsError(f"unknown outbox state {state!r}")
            item.state = state
            item.history.append({"time": now_iso(), "state": state, "note": note})
        with self._lock:
            atomic_write_text(self.folder(item) / ITEM_JSON, json.dumps(asdict(item), indent=1))
        return item

    def retry_now(self, item_id: str) -> OutboxItem:
        item = self.get(item_id)
        if item.state == "sent":
            raise PacsError(f"outbox item {item_id} was sent already")
        item.attempts, item.next_try = 0, 0.0
        return self.update(item, "pending", "retry asked for")

    def remove(self, item_id: str) -> None:
        item = self.get(item_id)
        if item.state == "sending":
            raise PacsError(f"outbox item {item_id} is being sent now; remove it when the try has ended")
        shutil.rmtree(self.folder(item))


def send_item(outbox: Outbox, item: OutboxItem, config: PacsConfig,
              store: Callable | None = None) -> OutboxItem:
    """One try at sending ``item``: ``sent``; ``pending`` with the next try after the back-off when the
    destination could not be reached; ``failed`` when it refused the files (or after MAX_ATTEMPTS)."""
    from ctseg_core.pacs.sender import store_files

    store = store or store_files
    claim = CaseLock(outbox.folder(item), reader="sender")  # one sender per item, across processes too
    try:
        claim.acquire()
    except (CaseLockedError, StoreError):
        return item  # another sender (the app, ``ctseg listen``) is sending it
    try:
        item = outbox.get(item.id)
        if item.state not in ("pending", "sending") or (item.state == "pending" and item.next_try > time.time()):
            return item  # sent, failed or rescheduled meanwhile
        return _try_send(outbox, item, config, store)
    finally:
        claim.release()


def _try_send(outbox: Outbox, item: OutboxItem, config: PacsConfig, store: Callable) -> OutboxItem:
    outbox.update(item, "sending", f"try {item.attempts + 1}")
    try:
        node = config.node(item.destination, "destination")
        store(node, config, outbox.paths(item))
    except PacsError as exc:
        item.attempts += 1
        item.last_error = exc.problem
        if exc.transient and item.attempts < MAX_ATTEMPTS:
            item.next_try = time.time() + backoff_s(item.attempts)
            log.warning("outbox %s (case %s): %s; next try in %.0f s", item.id, item.case_id, exc.problem,
                        backoff_s(item.attempts))
            return outbox.update(item, "pending", exc.problem)
        log.error("outbox %s (case %s) failed: %s", item.id, item.case_id, exc.problem)
        return outbox.update(item, "failed", exc.problem)
    item.attempts += 1
    item.last_error, item.sent_at = "", now_iso()
    log.info("outbox %s: case %s sent to %s", item.id, item.case_id, item.destination)
    return outbox.update(item, "sent", f"sent to {item.destination}")


class OutboxSender:
    """A thread that sends due outbox items, one at a time, every ``poll_s`` seconds; ``config`` is read
    through ``get_config()`` at each round (settings changed in the app apply at once)."""

    def __init__(self, outbox: Outbox, get_config: Callable[[], PacsConfig], poll_s: float = 1.0,
                 on_change: Callable[[OutboxItem], None] | None = None):
        self.outbox = outbox
        self.get_config = get_config
        self.poll_s = poll_s
        self.on_change = on_change
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "OutboxSender":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ctseg-outbox", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the outbox now (an item was added or retried)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def send_due(self) -> list[OutboxItem]:
        done = []
        for item in self.outbox.due():
            if self._stop.is_set():
                break
            done.append(send_item(self.outbox, item, self.get_config()))
            if self.on_change is not None:
                try:
                    self.on_change(done[-1])
                except Exception:  # noqa: BLE001
                    log.exception("outbox on_change callback failed")
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
            except Exception:  # noqa: BLE001 - a damaged item or settings must not stop the sender
                log.exception("outbox round failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()


# ---------------------------------------------------------------- a case's results

def case_results(workspace_root: str | Path, case_id: str, folder: Path, include_sr: bool = True,
                 require_approved: bool = True) -> tuple[list[Path], list[str]]:
    """Write the case's DICOM SEG (and SR) into ``folder``: (files, notes)."""
    from ctseg_core.io.seg import write_dicom_seg
    from ctseg_core.store import Workspace

    case = Workspace(workspace_root, create=False).case(case_id)
    rec = case.record
    if require_approved and rec.status != "approved":
        raise StoreError(f"case {case_id} is {rec.status.replace('_', ' ')}, not approved: results are sent "
                         "after approval", case.folder)
    volume = case.load_volume()
    labels, which = case.load_final(volume), "final"
    if labels is None:
        labels, which = case.load_prediction(volume), "prediction"
    if labels is None:
        raise StoreError(f"case {case_id} has no label map to send", case.folder)
    version = rec.model_version or None
    seg = write_dicom_seg(labels, volume, folder / "seg.dcm", model_version=version,
                          content_creator=rec.annotator or None)
    files, notes = [seg], [f"DICOM SEG of the {which} labels"]
    if include_sr:
        from ctseg_core.io.sr import write_dicom_sr
        from ctseg_core.measure import measure_scan

        try:
            measurements = measure_scan(volume, labels, source=which, scan=rec.source.path)
            files.append(write_dicom_sr(measurements, volume, seg, folder / "sr.dcm", model_version=version))
            notes.append("DICOM SR measurement report")
        except CtsegError as exc:
            notes.append(f"no DICOM SR ({exc.problem})")
    return files, notes


def queue_case(workspace_root: str | Path, case_id: str, config: PacsConfig, include_sr: bool | None = None,
               require_approved: bool = True, destination: str | None = None) -> OutboxItem:
    """Prepare an approved case's results and put them in the outbox for the configured destination."""
    destination = destination or config.send_node
    config.node(destination, "send destination")
    include_sr = config.include_sr if include_sr is None else include_sr
    notes: list[str] = []

    def write(folder: Path) -> list[Path]:
        files, found = case_results(workspace_root, case_id, folder, include_sr, require_approved)
        notes.extend(found)
        return files

    return Outbox(workspace_root).add(case_id, destination, write, lambda: "; ".join(notes))
