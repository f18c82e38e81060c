"""The arguments of a training run (``ctseg train``, also under torchrun)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ctseg_core.training.recipe import STRATEGIES, Recipe

# ctseg_core.losses.LOSSES (written out: building the parser imports no torch)
SEGMENTATION_LOSSES = ("focal", "dice", "focal_dice", "hybrid", "exp_ce")


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", required=True, type=Path, help="the workspace folder")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_version", metavar="VERSION",
                       help="model version to fine-tune (default: the active one)")
    start.add_argument("--from-scratch", action="store_true",
                       help="start from fresh weights of the same architecture (compared against the active version)")
    p.add_argument("--epochs", type=positive_float, help="passes over the training slices (default %(default)s)",
                   default=Recipe.epochs)
    p.add_argument("--steps", type=positive_int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="full fine-tune or decoder-only (frozen encoder); default: chosen for the device")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default %(default)s)")
    p.add_argument("--val-cases", nargs="+", default=(), metavar="CASE_ID",
                   help="make these cases the workspace's validation set (recorded in W/validation.json; default: "
                        "the set chosen on the first run, stratified by lesion class, then frozen)")
    p.add_argument("--rescore", action="store_true",
                   help="measure every model version on the current validation set instead of training")
    p.add_argument("--unreviewed", choices=("ignore", "train"), default=Recipe.unreviewed,
                   help="slices nobody reviewed: no loss (ignore) or the final map as truth (train); "
                        "default %(default)s")
    p.add_argument("--corrected-weight", type=positive_float, default=Recipe.corrected_weight,
                   help="loss weight of a voxel a person corrected (default %(default)s)")
    p.add_argument("--annotator", default="", help="who asks (recorded with a change of the validation set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run from its saved state")
    p.add_argument("--batch-size", type=positive_int, default=Recipe.batch_size)
    p.add_argument("--accumulate", type=positive_int, default=Recipe.accumulate,
                   help="micro-batches per optimizer step")
    p.add_argument("--lr", type=positive_float, default=Recipe.lr, help="peak of the cyclic learning rate")
    p.add_argument("--loss", choices=SEGMENTATION_LOSSES, default=Recipe.loss,
                   help="training loss (default %(default)s, the paper's; hybrid: FocusNet++'s; exp_ce: "
                        "exponentially weighted cross-entropy)")
    p.add_argument("--checkpoint-every", type=positive_int, default=Recipe.checkpoint_every,
                   help="steps between saved training states")
    p.add_argument("--num-workers", type=non_negative_int, default=Recipe.num_workers, help="data loader processes")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout even on a terminal (always so when stdout is not a terminal)")


def request_from_args(args):
    from ctseg_core.training.run import TrainRequest

    recipe = dataclasses.replace(Recipe(), epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                                 accumulate=args.accumulate, lr=args.lr, loss=args.loss,
                                 checkpoint_every=args.checkpoint_every,
                                 num_workers=args.num_workers, compile=args.compile, unreviewed=args.unreviewed,
                                 corrected_weight=args.corrected_weight)
    return TrainRequest(workspace=args.workspace, from_version=args.from_version, from_scratch=args.from_scratch,
                        strategy=args.strategy, recipe=recipe, device=args.device, val_cases=tuple(args.val_cases),
                        seed=args.seed, resume=args.resume, annotator=args.annotator)
