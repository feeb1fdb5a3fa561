"""Memory relevance scoring and selection: pure functions with an explicit capacity."""

from .scores import MemoryScores, compute_scores, cosine_similarity
from .selection import (
    STRATEGIES,
    MemoryFilterConfig,
    entries_to_evict,
    quality_gated_priority,
    recency_priority,
    relevance_priority,
    select_memory,
)

__all__ = [
    "MemoryScores",
    "compute_scores",
    "cosine_similarity",
    "STRATEGIES",
    "MemoryFilterConfig",
    "entries_to_evict",
    "quality_gated_priority",
    "recency_priority",
    "relevance_priority",
    "select_memory",
]
