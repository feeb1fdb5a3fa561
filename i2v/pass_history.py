"""The frames a propagation pass processed just before the current one: the temporal
upgrader's window, kept the same way by the predictor and by training."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Deque, List, Optional, Tuple

import torch


@dataclass
class PassHistory:
    """The frames processed just before the current one in this pass (for the upgrader).

    Attributes:
        direction: +1 forward, -1 reverse, 0 before the first frame.
        pooled: (frame_idx, (1, p*p, C) tokens), the most recent last.
    """

    window: int
    direction: int = 0
    pooled: Deque[Tuple[int, torch.Tensor]] = field(default_factory=collections.deque)

    def reset(self, direction: int = 0) -> None:
        self.direction = direction
        self.pooled.clear()

    def past(self, frame_idx: int) -> Optional[torch.Tensor]:
        """(1, W', p*p, C) tokens of the frames right before ``frame_idx`` in this pass."""
        tokens: List[torch.Tensor] = []
        expected = frame_idx - self.direction
        for idx, pooled in reversed(self.pooled):
            if idx != expected or len(tokens) == self.window:
                break
            tokens.append(pooled)
            expected -= self.direction
        if not tokens or self.direction == 0:
            return None
        return torch.stack(tokens, dim=1)

    def push(self, frame_idx: int, pooled: torch.Tensor) -> None:
        self.pooled.append((frame_idx, pooled))
        while len(self.pooled) > self.window:
            self.pooled.popleft()
