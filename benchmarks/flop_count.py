"""FLOP counting for the cost benchmark: ``torch.utils.flop_counter.FlopCounterMode`` plus the
scaled-dot-product attention it may not book (counted from the shapes when it does not)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode


def sdpa_flops(q: torch.Size, k: torch.Size, v: torch.Size) -> int:
    """FLOPs of softmax(q k^T) v, 2 per MAC: q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev)."""
    batch = 1
    for d in q[:-2]:
        batch *= int(d)
    lq, e, lk, ev = int(q[-2]), int(q[-1]), int(k[-2]), int(v[-1])
    return 2 * batch * lq * lk * (e + ev)


class AttentionTally(TorchFunctionMode):
    """Adds up the FLOPs of every ``F.scaled_dot_product_attention`` call from its shapes.

    FlopCounterMode knows SDPA only through the fused kernels registered for it, which differ
    between torch versions and devices; this tally lets the count be completed where it misses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is F.scaled_dot_product_attention:
            kwargs = kwargs or {}
            q, k, v = (args[i] if len(args) > i else kwargs[name] for i, name in enumerate(("query", "key", "value")))
            self.flops += sdpa_flops(q.shape, k.shape, v.shape)
        return func(*args, **(kwargs or {}))


@dataclass
class FlopCount:
    """FLOPs of one call: what the counter saw, and the attention FLOPs tallied from shapes.

    Attributes:
        counted: FlopCounterMode's total.
        attention: SDPA FLOPs computed from the call shapes.
        attention_in_counted: the part of ``counted`` the counter booked on SDPA kernels.
        attention_added: ``attention`` is added to the total (the counter misses SDPA here).
    """

    counted: int
    attention: int
    attention_in_counted: int
    attention_added: bool

    @property
    def total(self) -> int:
        return self.counted + (self.attention if self.attention_added else 0)


def counter_counts_attention(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether FlopCounterMode counts SDPA here, checked on a known size with a padding mask."""
    q = torch.randn(2, 4, 96, 32, device=device, dtype=dtype)
    kv = torch.randn(2, 4, 80, 32, device=device, dtype=dtype)
    mask = torch.ones(2, 1, 1, 80, dtype=torch.bool, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        F.scaled_dot_product_attention(q, kv, kv, attn_mask=mask)
    return counter.get_total_flops() == sdpa_flops(q.shape, kv.shape, kv.shape)


def count_flops(fn: Callable[[], object], attention_counted: bool) -> FlopCount:
    counter, tally = FlopCounterMode(display=False), AttentionTally()
    with counter, tally:
        fn()
    by_op = counter.get_flop_counts().get("Global", {})
    in_counted = sum(v for op, v in by_op.items() if "scaled_dot_product" in str(op))
    return FlopCount(counter.get_total_flops(), tally.flops, in_counted, attention_added=not attention_counted)
