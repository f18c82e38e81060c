"""``ctseg train``: fine-tune the workspace's model on its corrected and approved cases.

On a terminal: a progress bar with loss and ETA and a readable line per stage. With ``--json``, or when
stdout is not a terminal, JSON lines on stdout (the protocol the GUI reads). A one-line summary goes to
stderr. The same arguments work under ``torchrun --nproc-per-node N -m ctseg_core.train``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ctseg_core.training.recipe import STRATEGIES, Recipe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", required=True, type=Path, help="the workspace folder")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_version", metavar="VERSION",
                       help="model version to fine-tune (default: the active one)")
    start.add_argument("--from-scratch", action="store_true",
                       help="start from fresh weights of the same architecture (compared against the active version)")
    p.add_argument("--epochs", type=float, help="passes over the training slices (default %(default)s)",
                   default=Recipe.epochs)
    p.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="full fine-tune or decoder-only (frozen encoder); default: chosen for the device")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default %(default)s)")
    p.add_argument("--val-cases", nargs="+", default=(), metavar="CASE_ID",
                   help="validation case ids (default: a seeded random quarter of the cases)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run from its saved state")
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--accumulate", type=int, default=Recipe.accumulate, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=Recipe.lr, help="peak of the cyclic learning rate")
    p.add_argument("--checkpoint-every", type=int, default=Recipe.checkpoint_every,
                   help="steps between saved training states")
    p.add_argument("--num-workers", type=int, default=Recipe.num_workers, help="data loader processes")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout even on a terminal (always so when stdout is not a terminal)")


def request_from_args(args):
    from ctseg_core.training.run import TrainRequest

    recipe = dataclasses.replace(Recipe(), epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                                 accumulate=args.accumulate, lr=args.lr, checkpoint_every=args.checkpoint_every,
                                 num_workers=args.num_workers, compile=args.compile)
    return TrainRequest(workspace=args.workspace, from_version=args.from_version, from_scratch=args.from_scratch,
                        strategy=args.strategy, recipe=recipe, device=args.device, val_cases=tuple(args.val_cases),
                        seed=args.seed, resume=args.resume)


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

    return ModelStore.for_workspace(workspace or default_root())


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
