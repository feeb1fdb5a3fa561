"""A bounded per-object memory bank, and the batch of memory a frame reads.

The bank never holds more than ``bank_size`` entries; which entries stay and which a frame
reads are both decided by :mod:`i2v.memory_filter`, so eviction and reading follow one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from i2v.memory_filter import MemoryFilterConfig, compute_scores, entries_to_evict, select_memory


# Entries a full bank drops beyond the one it must (amortises eviction over frames).
EVICTION_SLACK = 3


@dataclass
class MemoryEntry:
    """What one object remembers of one frame.

    Attributes:
        frame_idx: the frame it was written on.
        keys: (L, Dk) pooled keys; values: (L, Dv) pooled values.
        descriptor: (C,) pooled frame embedding, for relevance scoring.
        iou: predicted IoU of the mask; presence: presence probability.
        prompted: made on a frame the user prompted.
    """

    frame_idx: int
    keys: torch.Tensor
    values: torch.Tensor
    descriptor: torch.Tensor
    iou: float
    presence: float
    prompted: bool

    def to(self, device: torch.device | str) -> "MemoryEntry":
        return MemoryEntry(
            self.frame_idx, self.keys.to(device), self.values.to(device),
            self.descriptor, self.iou, self.presence, self.prompted,  # scored on the CPU
        )


class MemoryBank:
    """The entries of one object, at most ``bank_size`` of them, one per frame."""

    def __init__(self, bank_size: int, filter_cfg: MemoryFilterConfig) -> None:
        self.bank_size = bank_size
        self.filter_cfg = filter_cfg
        self.entries: Dict[int, MemoryEntry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _scores(self, entries: Sequence[MemoryEntry], descriptor: torch.Tensor):
        # Scoring is a handful of scalars per entry: do it on the CPU, whatever the model's device.
        meta = torch.tensor([[e.frame_idx, e.iou, e.presence, e.prompted] for e in entries], dtype=torch.float64)
        return compute_scores(
            query=descriptor.detach().float().cpu(),
            keys=torch.stack([e.descriptor for e in entries]),  # CPU float, see make_memory
            frame_idx=meta[:, 0].long(),
            iou=meta[:, 1],
            presence=meta[:, 2],
            prompted=meta[:, 3].bool(),
        )

    def add(self, entry: MemoryEntry) -> None:
        """Store ``entry`` (replacing any entry of the same frame); a full bank evicts.

        A bank over ``bank_size`` evicts down to ``bank_size - EVICTION_SLACK`` (never below
        the read capacity) in one go, so eviction runs every few frames instead of every frame.
        """
        self.entries[entry.frame_idx] = entry
        if len(self.entries) <= self.bank_size:
            return
        entries = list(self.entries.values())
        keep = max(self.filter_cfg.capacity, self.bank_size - EVICTION_SLACK)
        drop = entries_to_evict(self._scores(entries, entry.descriptor), entry.frame_idx, self.filter_cfg, keep)
        for i in drop.tolist():
            del self.entries[entries[i].frame_idx]

    def select(self, frame_idx: int, descriptor: torch.Tensor, exclude_frame: bool = True) -> List[MemoryEntry]:
        """The entries frame ``frame_idx`` reads (never its own entry when ``exclude_frame``)."""
        entries = [e for e in self.entries.values() if not (exclude_frame and e.frame_idx == frame_idx)]
        if not entries:
            return []
        chosen = select_memory(self._scores(entries, descriptor), frame_idx, self.filter_cfg)
        return [entries[i] for i in chosen.tolist()]

    def remove_unprompted(self) -> None:
        """Forget tracked (non-prompted) entries, e.g. before a fresh propagation."""
        self.entries = {f: e for f, e in self.entries.items() if e.prompted}

    def discard(self, frame_idx: int) -> None:
        self.entries.pop(frame_idx, None)


@dataclass
class MemoryBatch:
    """The selected memory of N objects, padded to a common length.

    Attributes:
        keys: (N, L, Dk); values: (N, L, Dv); padding: (N, L) bool, True on padding.
    """

    keys: torch.Tensor
    values: torch.Tensor
    padding: torch.Tensor

    @staticmethod
    def stack(per_object: Sequence[Sequence[MemoryEntry]], device: torch.device) -> Optional["MemoryBatch"]:
        """Batch N objects' entry lists; None when no object has any memory."""
        if not any(per_object):
            return None
        ref = next(e for entries in per_object for e in entries)
        tokens, dk, dv = ref.keys.shape[0], ref.keys.shape[1], ref.values.shape[1]
        length = max(1, max(len(entries) for entries in per_object)) * tokens
        n = len(per_object)
        keys = torch.zeros(n, length, dk, device=device, dtype=ref.keys.dtype)
        values = torch.zeros(n, length, dv, device=device, dtype=ref.values.dtype)
        padding = torch.ones(n, length, dtype=torch.bool, device=device)
        for i, entries in enumerate(per_object):
            if not entries:
                # An object without memory reads one neutral token so softmax stays finite.
                padding[i, 0] = False
                continue
            k = torch.cat([e.keys for e in entries]).to(device)
            v = torch.cat([e.values for e in entries]).to(device)
            keys[i, : k.shape[0]] = k
            values[i, : v.shape[0]] = v
            padding[i, : k.shape[0]] = False
        return MemoryBatch(keys, values, padding)
