"""A bounded per-object memory bank, and the memory a frame reads.

The bank never holds more than ``bank_size`` entries; which entries stay and which a frame
reads are both decided by :mod:`i2v.memory_filter`, so eviction and reading follow one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch

from i2v.adapters.memory_readout import ReadoutMemory, stack_memory
from i2v.memory_filter import MemoryFilterConfig, compute_scores, entries_to_evict, select_memory

# Entries a full bank drops beyond the one it must (amortises eviction over frames).
EVICTION_SLACK = 3


@dataclass
class MemoryEntry:
    """What one object remembers of one frame.

    Attributes:
        frame_idx: the frame it was written on.
        keys: (M, C) the frame's unit-norm memory keys (shared by every object on the frame).
        values: (M,) the object's mask probability on the read-out grid.
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
            self.frame_idx,
            self.keys.to(device),
            self.values.to(device),
            self.descriptor,
            self.iou,
            self.presence,
            self.prompted,  # scored on the CPU
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


def gather_memory(
    per_object: Sequence[Sequence[MemoryEntry]], frame_idx: int, short_term: int, device: torch.device
) -> ReadoutMemory:
    """The read-out input of N objects from the entries each selected.

    Entries of one frame share its keys (keys depend on the frame only), so each remembered
    frame appears once however many objects read it.

    Args:
        per_object: per object, its selected entries (``MemoryBank.select``); none may be empty.
        frame_idx: the frame being read (for the short-term test).
        short_term: unprompted entries at most this many frames away are short-term.
    """
    if not all(per_object):
        raise ValueError("gather_memory needs at least one entry per object; leave objects without memory out.")
    column: Dict[int, int] = {}
    keys: List[torch.Tensor] = []
    for entries in per_object:
        for e in entries:
            if e.frame_idx not in column:
                column[e.frame_idx] = len(keys)
                keys.append(e.keys)
    return stack_memory(
        frames=list(column),
        keys=keys,
        values=[[e.values for e in entries] for entries in per_object],
        reads=[[column[e.frame_idx] for e in entries] for entries in per_object],
        short_term=[
            [not e.prompted and abs(e.frame_idx - frame_idx) <= short_term for e in entries] for entries in per_object
        ],
        device=device,
    )
