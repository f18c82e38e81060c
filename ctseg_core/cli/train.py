"""``ctseg train``: fine-tune the workspace's model on its corrected and approved cases; the one entry point
of a training process (the app starts ``python -m ctseg_core train ...``; on several GPUs or nodes
``torchrun --nproc-per-node N -m ctseg_core train ...`` with the same arguments).

On a terminal: a progress bar with loss and ETA and a readable line per stage. With ``--json``, or when
stdout is not a terminal, the JSON lines of ``ctseg_core.training.events`` on stdout (rank 0 only; the
protocol the app reads). A one-line summary goes to stderr. ``--rescore`` measures every model version on
the workspace's current validation set instead of training.

Signals: SIGTERM / SIGINT cancel cleanly (the training state is saved, a ``cancelled`` event is printed and
the process exits 0; continue with ``--resume``); SIGUSR1 pauses the run between two steps (it gives the
device to the app's inference of the open case, event ``paused``) and SIGUSR2 lets it continue.
Exit status: 0 done or cancelled, 2 a ctseg error (an ``error`` event names it), 1 anything else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from ctseg_core.errors import CtsegError
from ctseg_core.training.args import add_arguments, request_from_args


def _rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run_with_signals(request, emit, rescore: bool = False) -> int:
    """Run one fine-tune (or a re-scoring) with SIGTERM/SIGINT as cancel and SIGUSR1/SIGUSR2 as pause/continue."""
    from ctseg_core.jobs import CancelToken, PauseToken
    from ctseg_core.training import events as ev
    from ctseg_core.training.run import rescore as rescore_versions
    from ctseg_core.training.run import run_training

    cancel, pause = CancelToken(), PauseToken()
    handlers = {signal.SIGTERM: lambda *_: cancel.cancel(), signal.SIGINT: lambda *_: cancel.cancel(),
                signal.SIGUSR1: lambda *_: pause.pause(), signal.SIGUSR2: lambda *_: pause.resume()}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        if rescore:
            results = rescore_versions(request, emit)
            print(f"ctseg train: {len(results)} version(s) measured on the current validation set", file=sys.stderr)
            return 0
        result = run_training(request, emit, cancel, pause=pause)
    except CtsegError as exc:
        if _rank()[0] == 0:
            emit(ev.Error(str(exc)))
        print(f"ctseg train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    rank, world = _rank()
    if world > 1:
        print(f"ctseg train: rank {rank} of {world} finished ({result.name})", file=sys.stderr, flush=True)
    if rank != 0:
        return 0
    _audit_training(request, result)
    if isinstance(result, ev.Done):
        print(f"ctseg train: {result.reason}", file=sys.stderr)
    else:
        print(f"ctseg train: cancelled at step {result.step}; continue with --resume", file=sys.stderr)
    return 0


def _audit_training(request, result) -> None:
    """Log the run in the workspace's audit trail (who trained, which version came out, promoted or not)."""
    from ctseg_core.store.audit import AuditLog
    from ctseg_core.store.identity import default_reader

    try:
        AuditLog(request.workspace).append("train", who=default_reader(), model=str(getattr(result, "version", "")),
                                           result=result.name, promoted=getattr(result, "promoted", None),
                                           reason=getattr(result, "reason", ""))
    except CtsegError as exc:
        print(f"ctseg train: the audit log could not be written: {exc}", file=sys.stderr)


def event_output(args):
    """JSON lines (``--json`` or stdout not a terminal: the app, scripts) or a progress bar for a person."""
    from ctseg_core.terminal import EventOutput, json_output_wanted

    return EventOutput(json_output_wanted(args.json), desc="training")


def _run(args) -> int:
    return run_with_signals(request_from_args(args), event_output(args), rescore=args.rescore)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune the model on corrected cases (progress bar, or --json lines)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=_run)
# ---------------------------------------------------------------- ``ctseg models versions|use`` actions

def _versions_parser(prog: str, with_version: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    if with_version:
        p.add_argument("version", help="the version to make active (e.g. v3, or 'default' for the bundled model)")
    p.add_argument("--workspace", type=Path, help="the workspace folder (default: $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _store(workspace: Path | None):
    from ctseg_core.model_store import ModelStore
    from ctseg_core.store.workspace import default_root

    from ctseg_core.store import Workspace

    root = Workspace(workspace or default_root(), create=False).root  # a mistyped path is an error
    return ModelStore.for_workspace(root)


def versions_action(args) -> int:
    """``ctseg models versions [--workspace W] [--json]``: every model version, the active one marked."""
    import json

    opts = _versions_parser("ctseg models versions", False).parse_args(args.rest)
    store = _store(opts.workspace)
    active = store.active_version()
    rows = []
    for v in store.versions():
        val = v.card.metrics.get("validation", {})
        rows.append({"version": v.version, "active": v.version == active, "parent": v.parent,
                     "created": v.card.created, "strategy": v.card.extra.get("strategy"),
                     "mean_dice_before": val.get("mean_before"), "mean_dice_after": val.get("mean_after"),
                     "promoted": v.card.extra.get("promoted"), "reason": v.card.extra.get("promotion_reason"),
                     "path": str(v.path)})
    if opts.json:
        print(json.dumps(rows, indent=2))
        return 0
    fmt = "{:1} {:<9}{:<9}{:<26}{:<9}{:>8}{:>8}  {}"
    print(fmt.format("", "version", "parent", "created", "strategy", "Dice<", "Dice>", "promoted"))
    for r in rows:
        d = [("-" if r[k] is None else f"{r[k]:.3f}") for k in ("mean_dice_before", "mean_dice_after")]
        print(fmt.format("*" if r["active"] else "", r["version"], r["parent"] or "-", r["created"] or "-",
                         r["strategy"] or "-", *d, {True: "yes", False: "no", None: "-"}[r["promoted"]]))
    return 0


def use_action(args) -> int:
    """``ctseg models use VERSION [--workspace W]``: make a version active (promote or roll back)."""
    opts = _versions_parser("ctseg models use", True).parse_args(args.rest)
    entry = _store(opts.workspace).use(opts.version)
    print(f"{entry.version} is now the active model ({entry.path})")
    return 0


MODEL_VERSION_ACTIONS = {"versions": versions_action, "use": use_action}
