"""Relevance scores of stored memory frames with respect to the current frame.

Pure tensor functions, no model: they take what each memory entry recorded when it was
written (a pooled embedding, the predicted IoU, the object-presence score, the frame index)
and the current frame's pooled embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MemoryScores:
    """Per-entry scores of a memory bank of N entries.

    Attributes:
        frame_idx: (N,) int64, the frame each entry was written on.
        similarity: (N,) cosine similarity of the entry's pooled embedding to the current
            frame's, in [-1, 1].
        iou: (N,) predicted IoU of the mask the entry was made from, in [0, 1].
        presence: (N,) probability that the object was present on the entry's frame.
        prompted: (N,) bool, True for entries made on frames the user prompted.
    """

    frame_idx: torch.Tensor
    similarity: torch.Tensor
    iou: torch.Tensor
    presence: torch.Tensor
    prompted: torch.Tensor

    def __post_init__(self) -> None:
        n = self.frame_idx.shape[0]
        for name in ("similarity", "iou", "presence", "prompted"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise ValueError(f"MemoryScores.{name} has shape {tuple(t.shape)}; expected ({n},) to match frame_idx.")

    def __len__(self) -> int:
        return int(self.frame_idx.shape[0])

    def temporal_distance(self, current_frame: int) -> torch.Tensor:
        """(N,) absolute distance in frames to ``current_frame``."""
        return (self.frame_idx - current_frame).abs()


def cosine_similarity(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of one pooled embedding to N others.

    Args:
        query: (D,) pooled embedding of the current frame.
        keys: (N, D) pooled embeddings of the stored frames.
    Returns:
        (N,) similarities in [-1, 1] (0 for all-zero vectors).
    """
    if keys.shape[0] == 0:
        return keys.new_zeros(0)
    return F.cosine_similarity(keys.float(), query.float()[None, :], dim=-1, eps=1e-8)


def compute_scores(
    query: torch.Tensor,
    keys: torch.Tensor,
    frame_idx: torch.Tensor,
    iou: torch.Tensor,
    presence: torch.Tensor,
    prompted: torch.Tensor,
) -> MemoryScores:
    """Bundle the scores of N entries; see :class:`MemoryScores` for the shapes.

    Every field ends up on the similarities' device: callers typically pass descriptors on the
    model's device and per-entry scalars built on the CPU, and strategies mix the two.
    """
    similarity = cosine_similarity(query, keys)
    device = similarity.device
    return MemoryScores(
        frame_idx=frame_idx.to(device=device, dtype=torch.long),
        similarity=similarity,
        iou=iou.to(device=device, dtype=torch.float32),
        presence=presence.to(device=device, dtype=torch.float32),
        prompted=prompted.to(device=device, dtype=torch.bool),
    )
