"""A small multi-head cross-attention block shared by the adapters."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class CrossAttention(nn.Module):
    """Queries attend to a set of tokens; the output projection can start at zero.

    Args:
        query_dim: width of the queries (and of the output).
        context_dim: width of the attended tokens.
        dim: inner attention width (split over ``heads``).
        zero_init: start the output projection at zero so the block adds nothing at first.
    """

    def __init__(self, query_dim: int, context_dim: int, dim: int, heads: int, zero_init: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(query_dim, dim)
        self.to_kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, query_dim)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, key_padding: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        Args:
            x: (B, Lq, query_dim) queries.
            context: (B, Lk, context_dim) tokens to read.
            key_padding: (B, Lk) bool, True where a context token is padding.
        Returns:
            (B, Lq, query_dim)
        """
        q = rearrange(self.to_q(x), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        mask = None
        if key_padding is not None:
            mask = ~key_padding[:, None, None, :]  # (B, 1, 1, Lk): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))
