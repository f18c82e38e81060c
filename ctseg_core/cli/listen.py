"""``ctseg listen --workspace W [--ae-title CTSEG] [--port 11112]``: ctseg's DICOM node in the foreground.

Receives instances (C-STORE) into the workspace's inbox filed by study/series; a series with no new instance
for ``--settle`` seconds is complete and is segmented in the background with the workspace's active model
(``--model`` to use another checkpoint, ``--no-segment`` to only receive): its case appears in the case list
as "new, segmented". Non-CT and malformed instances are kept aside in ``inbox/set-aside`` with a note.
Approved results queued in the outbox (``ctseg pacs send``, the app) are sent with retries meanwhile.
Settings come from ``W/pacs.toml`` (see ``ctseg pacs config``); the options here override them.
Stops on Ctrl+C or SIGTERM (a series being segmented is queued again at the next start).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("listen", help="receive DICOM from the PACS/scanner, segment complete series, "
                              "send approved results", description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, help="the workspace folder (default $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--ae-title", help="this node's AE title (default from pacs.toml, else CTSEG)")
    p.add_argument("--port", type=int, help="port to listen on (default from pacs.toml, else 11112)")
    p.add_argument("--host", help="address to listen on (default from pacs.toml, else 0.0.0.0: every interface)")
    p.add_argument("--settle", type=float, help="seconds without a new instance after which a series is complete")
    p.add_argument("--model", type=Path, help="checkpoint to segment with (default: the workspace's active model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default %(default)s)")
    p.add_argument("--no-segment", action="store_true", help="only receive and queue; do not segment")
    p.add_argument("--tls", action="store_true", help="accept TLS connections only (tls.certificate/private_key)")
    p.add_argument("--config", type=Path, help="the PACS settings file (default W/pacs.toml)")
    p.set_defaults(func=run)


def load_settings(args):
    """(workspace root, PacsConfig) from --workspace / --config, with the command line's overrides."""
    from ctseg_core.pacs.config import config_path, load_config
    from ctseg_core.store import default_root

    root = (args.workspace or default_root()).expanduser()
    config = load_config(args.config or config_path(root))
    local = config.local
    for name in ("ae_title", "port", "host"):
        if getattr(args, name, None) is not None:
            setattr(local, name, getattr(args, name))
    if getattr(args, "settle", None) is not None:
        local.settle_s = args.settle
    if getattr(args, "tls", False):
        config.listener_tls = True
    return root, config.check()


def run(args) -> int:
    from ctseg_core.pacs.segmenter import SeriesSegmenter
    from ctseg_core.pacs.service import PacsService
    from ctseg_core.store import Workspace

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    root, config = load_settings(args)
    Workspace(root)  # created if needed
    segment = None
    if not args.no_segment and config.local.segment:
        segment = SeriesSegmenter(root, model=args.model, device=args.device)
        print(f"segmenting complete series with {segment.checkpoint()}", file=sys.stderr)
    service = PacsService(root, config, segment=segment)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    print(f"ctseg listening as {config.local.ae_title} on {config.local.host}:{config.local.port} "
          f"(workspace {root}); Ctrl+C stops", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        service.stop()
    return 0
