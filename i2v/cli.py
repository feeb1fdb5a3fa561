"""The ``sam-i2v`` command line: one sub-command per job."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from typing import List, Optional

from i2v.cli_checks import check_args
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
    # -v / -q work before or after the sub-command (sam-i2v -v train ..., sam-i2v train -q ...)
    for p, default in [(parser, 0)] + [(sub, argparse.SUPPRESS) for sub in subparsers.choices.values()]:
        p.add_argument("-v", "--verbose", action="count", default=default, help="more log messages (-v: debug details)")
        p.add_argument(
            "-q",
            "--quiet",
            action="count",
            default=default,
            help="fewer log messages (-q: warnings and errors only, -qq: errors only)",
        )
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (tests and notebooks swap it)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


_handler: Optional[logging.Handler] = None


def configure_logging(verbose: int = 0, quiet: int = 0) -> int:
    """Send the library's log records (logger ``i2v``) to stderr at the level ``-v`` / ``-q``
    choose: INFO by default, DEBUG with -v, WARNING with -q, ERROR with -qq. Returns the level."""
    global _handler
    level = min(max(logging.INFO + 10 * (quiet - verbose), logging.DEBUG), logging.ERROR)
    root = logging.getLogger("i2v")
    if _handler is None:
        _handler = _StderrHandler()
        _handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(level)
    return level


def error_line(exc: BaseException) -> str:
    """One line saying what went wrong (an I2VError's message; an OSError's file and cause)."""
    if isinstance(exc, OSError) and not isinstance(exc, I2VError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"out of disk space{where}; free some space or choose an output folder on another disk."
        return f"{exc.strerror or exc}{where}."
    return " ".join(str(exc).split())  # YAML and other messages can span lines


def main(argv: Optional[List[str]] = None) -> int:
    """Run one sub-command. Errors the user can fix end in one line on stderr, no traceback:
    exit code 2 for a bad argument, file or value, 1 for a failing file system, 130 for Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prefix = f"sam-i2v {args.command}"
    configure_logging(args.verbose, args.quiet)
    try:
        check_args(args)
        return int(args.func(args) or 0)
    except I2VError as exc:
        print(f"{prefix}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prefix}: error: {error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # a training run says where its checkpoint is
        print(f"{prefix}: {error_line(exc) or 'interrupted.'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
