"""Entry point of a training process: ``python -m ctseg_core.train ...`` or, on several GPUs / nodes,
``torchrun --nproc-per-node N -m ctseg_core.train ...`` (same arguments as ``ctseg train``).

Prints progress as JSON lines on stdout (rank 0 only) when stdout is not a terminal or with ``--json``
(the app reads them), else a progress bar with ETA and readable lines; SIGTERM / SIGINT cancel cleanly:
the training state is saved, a ``cancelled`` event is printed and the process exits 0 (continue with
``--resume``).
Exit status: 0 done or cancelled, 2 a ctseg error (an ``error`` event names it), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from ctseg_core.errors import CtsegError
from ctseg_core.jobs import CancelToken


def print_event(event: dict) -> None:
    print(json.dumps(event), flush=True)


def _rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run_with_signals(request, emit=print_event) -> int:
    """Run one fine-tune with SIGTERM/SIGINT as cancel; ``emit`` receives the events (JSON lines by default)."""
    from ctseg_core.training.run import run_training

    cancel = CancelToken()
    previous = {sig: signal.signal(sig, lambda *_: cancel.cancel()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = run_training(request, emit, cancel)
    except CtsegError as exc:
        if _rank()[0] == 0:
            emit({"event": "error", "message": str(exc)})
        print(f"ctseg train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    rank, world = _rank()
    if world > 1:
        print(f"ctseg train: rank {rank} of {world} finished ({result['event']})", file=sys.stderr, flush=True)
    if rank != 0:
        return 0
    _audit_training(request, result)
    if result["event"] == "done":
        print(f"ctseg train: {result['reason']}", file=sys.stderr)
    else:
        print(f"ctseg train: cancelled at step {result['step']}; continue with --resume", file=sys.stderr)
    return 0


def _audit_training(request, result: dict) -> None:
    """Log the run in the workspace's audit trail (who trained, which version came out, on which cases)."""
    from ctseg_core.store.audit import AuditLog
    from ctseg_core.store.identity import default_reader

    try:
        AuditLog(request.workspace).append("train", who=default_reader(), model=str(result.get("version", "")),
                                           result=result.get("event", ""), promoted=result.get("promoted"),
                                           reason=result.get("reason", ""))
    except CtsegError as exc:
        print(f"ctseg train: the audit log could not be written: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from ctseg_core.training.args import add_arguments, request_from_args

    parser = argparse.ArgumentParser(prog="python -m ctseg_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_with_signals(request_from_args(args), event_output(args))


def event_output(args):
    """JSON lines (``--json`` or stdout not a terminal: the app, scripts) or a progress bar for a person."""
    from ctseg_core.terminal import EventOutput, json_output_wanted

    return EventOutput(json_output_wanted(args.json), desc="training")


if __name__ == "__main__":
    sys.exit(main())
