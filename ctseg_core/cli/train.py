"""``ctseg train``: fine-tune the workspace's model on its corrected and approved cases.

On a terminal: a progress bar with loss and ETA and a readable line per stage. With ``--json``, or when
stdout is not a terminal, JSON lines on stdout (the protocol the GUI reads). A one-line summary goes to
stderr. The same arguments work under ``torchrun --nproc-per-node N -m ctseg_core.train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctseg_core.training.args import add_arguments, request_from_args


def _run(args) -> int:
    from ctseg_core.train import event_output, run_with_signals

    return run_with_signals(request_from_args(args), event_output(args))


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
