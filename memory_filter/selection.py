"""Selection of the memory entries a frame reads: a pure function of the scores.

Every strategy ranks the candidates; :func:`select_memory` then applies the rules that hold
for all of them: at most ``capacity`` entries, prompted frames kept first (at most
``max_prompted``, nearest in time first), then the most recent entry, then the strategy's
ranking. Ties are broken by temporal distance and then by frame index, so selection is
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List

import torch

from .scores import MemoryScores

# A strategy maps (scores, current_frame, filter config) to a priority per entry: higher first.
# Entries with priority -inf are dropped (never selected, not even to fill capacity).
Strategy = Callable[[MemoryScores, int, "MemoryFilterConfig"], torch.Tensor]


@dataclass(frozen=True)
class MemoryFilterConfig:
    """How a frame picks the memory entries it reads.

    Attributes:
        strategy: "recency" (SAM 2's FIFO), "relevance" (top-k by cosine similarity of pooled
            embeddings) or "quality_gated" (drop low-IoU / absent-object entries, then rank by
            similarity, IoU and recency, as SAM2Long / SAMURAI / DAM4SAM do).
        capacity: the most entries a frame reads (prompted and recent included).
        max_prompted: the most prompted-frame entries kept unconditionally.
        min_iou: quality_gated drops entries whose predicted IoU is below this.
        min_presence: quality_gated drops entries whose presence probability is below this.
        recency_weight: quality_gated adds ``recency_weight / (1 + distance)`` to each score,
            so that among equally relevant frames the closer one wins.
    """

    strategy: str = "quality_gated"
    capacity: int = 7
    max_prompted: int = 2
    min_iou: float = 0.5
    min_presence: float = 0.5
    recency_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown memory strategy {self.strategy!r}; choose one of {sorted(STRATEGIES)}.")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}.")
        if not 0 <= self.max_prompted <= self.capacity:
            raise ValueError(f"max_prompted must be in [0, capacity={self.capacity}], got {self.max_prompted}.")


def recency_priority(scores: MemoryScores, current_frame: int, cfg: MemoryFilterConfig) -> torch.Tensor:
    """Closest frames first: SAM 2's first-in-first-out memory."""
    return -scores.temporal_distance(current_frame).float()


def relevance_priority(scores: MemoryScores, current_frame: int, cfg: MemoryFilterConfig) -> torch.Tensor:
    """Most similar frames first (the SAM-I2V idea, deterministic top-k)."""
    return scores.similarity.float()


def quality_gated_priority(scores: MemoryScores, current_frame: int, cfg: MemoryFilterConfig) -> torch.Tensor:
    """Reliable frames only, ranked by similarity x quality with a small recency bonus."""
    distance = scores.temporal_distance(current_frame).float()
    priority = scores.similarity.float() * scores.iou.float() + cfg.recency_weight / (1.0 + distance)
    unreliable = (scores.iou < cfg.min_iou) | (scores.presence < cfg.min_presence)
    return priority.masked_fill(unreliable, float("-inf"))


STRATEGIES: Dict[str, Strategy] = {
    "recency": recency_priority,
    "relevance": relevance_priority,
    "quality_gated": quality_gated_priority,
}


def select_memory(scores: MemoryScores, current_frame: int, cfg: MemoryFilterConfig) -> torch.Tensor:
    """Choose which of N stored entries the current frame reads.

    Args:
        scores: the entries' scores (see :class:`MemoryScores`).
        current_frame: index of the frame being segmented.
        cfg: strategy and capacity.
    Returns:
        (k,) int64 indices into the entries, k <= cfg.capacity, sorted by frame index.
    """
    n = len(scores)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    chosen: List[int] = []
    # Plain lists: per-element tensor indexing would dominate the cost of these few entries.
    distance = scores.temporal_distance(current_frame).tolist()
    frames = scores.frame_idx.tolist()
    is_prompted = scores.prompted.tolist()

    prompted = [i for i in range(n) if is_prompted[i]]
    prompted.sort(key=lambda i: (distance[i], frames[i]))
    chosen.extend(prompted[: cfg.max_prompted])

    if len(chosen) < cfg.capacity:
        most_recent = min(range(n), key=lambda i: (distance[i], frames[i]))
        if most_recent not in chosen:
            chosen.append(most_recent)

    priority = STRATEGIES[cfg.strategy](scores, current_frame, cfg).tolist()
    ranked = sorted(range(n), key=lambda i: (-priority[i], distance[i], frames[i]))
    for i in ranked:
        if len(chosen) >= cfg.capacity:
            break
        if i not in chosen and priority[i] != float("-inf") and not is_prompted[i]:
            chosen.append(i)
    chosen = chosen[: cfg.capacity]
    chosen.sort(key=lambda i: frames[i])
    return torch.tensor(chosen, dtype=torch.long)


def entries_to_evict(scores: MemoryScores, current_frame: int, cfg: MemoryFilterConfig, bank_size: int) -> torch.Tensor:
    """Which entries a full bank drops so that at most ``bank_size`` remain.

    The bank keeps what a wide selection (capacity ``bank_size``) would read from the current
    frame, so eviction and reading follow the same rules.

    Returns:
        (m,) int64 indices of entries to drop (empty when the bank is not over capacity).
    """
    n = len(scores)
    if n <= bank_size:
        return torch.zeros(0, dtype=torch.long)
    wide = replace(cfg, capacity=bank_size, max_prompted=min(cfg.max_prompted, bank_size))
    keep = set(select_memory(scores, current_frame, wide).tolist())
    # quality_gated may keep fewer than bank_size; fill up with the most recent dropped ones
    # so a bank never forgets more than it must. Equal distances (frames on both sides of the
    # current one) go to the earlier frame, as in select_memory, so the result does not depend
    # on the order the entries are listed in.
    if len(keep) < bank_size:
        distance = scores.temporal_distance(current_frame).tolist()
        frames = scores.frame_idx.tolist()
        rest = sorted((i for i in range(n) if i not in keep), key=lambda i: (distance[i], frames[i]))
        keep.update(rest[: bank_size - len(keep)])
    return torch.tensor(sorted(set(range(n)) - keep), dtype=torch.long)
