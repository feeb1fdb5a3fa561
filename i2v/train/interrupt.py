"""Ctrl-C during training: finish the step, save a checkpoint, say how to resume.

A first Ctrl-C (SIGINT) only asks the loop to stop: the step in progress completes, a
checkpoint of it is written, and :class:`TrainingInterrupted` says where it is. A second
Ctrl-C stops at once (the message then names the last checkpoint already on disk).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Optional, Type

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run; the message says where its last checkpoint is.

    A ``KeyboardInterrupt``, so code that lets Ctrl-C through keeps doing so.
    """


def interrupted_message(step: int, checkpoint: Optional[Path]) -> str:
    """What to tell the user when training stops at ``step`` with ``checkpoint`` the newest."""
    if checkpoint is None:
        return (
            f"interrupted at step {step}, before any checkpoint was written; run the command again "
            "with --overwrite to start over."
        )
    at = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint.name[-1:].isdigit() else step
    return (
        f"interrupted at step {step}; the last checkpoint is {checkpoint} (step {at}): continue from it "
        "by running the same command with --resume."
    )


class StopRequest:
    """While entered, a first SIGINT sets :attr:`requested` instead of raising.

    Args:
        enabled: False keeps Ctrl-C's plain ``KeyboardInterrupt`` (e.g. under DDP, where all
            processes would have to agree on the step to stop at). The handler is also left
            alone outside the main thread and when someone else installed their own.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "StopRequest":
        self.requested = False
        installable = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        if self.enabled and installable:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Ctrl-C: stopping after this step and saving a checkpoint (press it again to stop at once).")

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
