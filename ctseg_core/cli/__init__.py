"""The ``ctseg`` command line. Each module in this package adds one sub-command through ``register``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from ctseg_core.errors import CtsegError


def output_file(text: str) -> Path:
    """An argument naming a file to write: a folder is refused before any work is done."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of the file to write")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctseg", description="Head-CT hemorrhage segmentation tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CtsegError as exc:
        print(f"ctseg: error: {exc}", file=sys.stderr)
        return 2
