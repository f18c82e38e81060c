"""``ctseg models [ACTION ...]``: the registered architectures (default action ``list``).

Other modules add actions with one line: ``ACTIONS["use"] = my_function`` where ``my_function(args)
-> int`` reads its own arguments from ``args.rest`` (everything after the action word, options
included), e.g. ``ctseg models use v3 --workspace W`` gives ``args.rest == ["v3", "--workspace", "W"]``.
"""

from __future__ import annotations

import argparse
import json


def list_action(args) -> int:
    """Print every registered model with its kind, parameter count and FLOPs at its example input (slice
    models: 3x512x512; slab models: 8 slices, scan models: 4 slices, also given per 512x512 slice; volume
    models: one 110^3 block, all members of an ensemble), and what its paper reports beside them."""
    from ctseg_core.models import list_models, model_info

    infos = [model_info(name, with_flops=not args.no_flops) for name in list_models()]
    if args.json:
        print(json.dumps([{"name": i.name, "kind": i.kind, "description": i.description, "parameters": i.parameters,
                           "flops": i.flops, "flops_input_shape": list(i.input_shape),
                           "flops_per_slice": None if i.kind == "volume" else i.flops_per_slice,
                           "paper": i.paper} for i in infos], indent=2))
        return 0
    print(f"{'model':<16}{'kind':<8}{'params (M)':>11}{'GFLOPs':>9}  {'at input':<16}{'GFLOPs/slice':>12}  description")
    for i in infos:
        flops = "-" if i.flops is None else f"{i.flops / 1e9:.1f}"
        per_slice = "-" if i.flops is None or i.kind == "volume" else f"{i.flops_per_slice / 1e9:.1f}"
        shape = "x".join(str(v) for v in i.input_shape[1:])
        print(f"{i.name:<16}{i.kind:<8}{i.parameters / 1e6:>11.2f}{flops:>9}  {shape:<16}{per_slice:>12}  "
              f"{i.description}")
    papers = [i for i in infos if i.paper]
    if papers:
        print("\nWhat the papers report:")
        for i in papers:
            print(f"  {i.name}: {i.paper}")
    return 0


from ctseg_core.cli.train import MODEL_VERSION_ACTIONS  # noqa: E402  (versions, use)

ACTIONS = {"list": list_action, **MODEL_VERSION_ACTIONS}


def _run(args) -> int:
    action = ACTIONS.get(args.action)
    if action is None:
        print(f"ctseg models: unknown action {args.action!r} (known: {', '.join(sorted(ACTIONS))})")
        return 2
    if args.action == "list" and args.rest:
        print(f"ctseg models list: unexpected arguments {' '.join(args.rest)}")
        return 2
    return int(action(args) or 0)


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list model architectures (kind, parameters, FLOPs) and more",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (faster)")
    p.add_argument("action", nargs="?", default="list", help="what to do (default: list)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the action")
    p.set_defaults(func=_run)
