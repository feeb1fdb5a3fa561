"""The ``sam-i2v`` command line: one sub-command per job."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from i2v.errors import I2VError
from i2v.version import __version__

# Sub-command modules; each has add_parser(subparsers) and sets ``func`` on its parser.
COMMAND_MODULES = (
    "i2v.quickstart",
    "i2v.segment_cli",
    "i2v.train.cli",
    "i2v.eval.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam-i2v", description="Upgrade a frozen SAM into a video segmenter.")
    parser.add_argument("--version", action="version", version=f"sam-i2v {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):  # a dependency missing inside it
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except I2VError as exc:
        print(f"sam-i2v {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
