"""Temporal upgrader: turns SAM's per-image embedding into a video-aware one.

Frame t's embedding reads a short causal window of past frames' pooled features, so the
frozen encoder never runs again on old frames (the predictor caches what :meth:`pool` returns).
Both residual branches end in zero-initialised projections: untrained, E'_t == E_t exactly.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import CrossAttention
from .config import UpgraderConfig


class TemporalUpgrader(nn.Module):
    """E'_t = E_t + Δ_t, with Δ_t read from the last ``window`` frames.

    Args:
        embed_dim: SAM's embedding width C (256 for the official models).
        cfg: window, pooling and attention sizes.
    """

    def __init__(self, embed_dim: int, cfg: UpgraderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm_q = nn.LayerNorm(embed_dim)
        self.norm_kv = nn.LayerNorm(embed_dim)
        # Which past frame a token came from (1 = previous frame, ...).
        self.time_embed = nn.Parameter(torch.zeros(cfg.window, embed_dim))
        nn.init.normal_(self.time_embed, std=0.02)
        self.attn = CrossAttention(embed_dim, embed_dim, cfg.dim, cfg.heads, zero_init=True)
        hidden = max(1, int(embed_dim * cfg.mlp_ratio))
        norm, up, down = nn.LayerNorm(embed_dim), nn.Linear(embed_dim, hidden), nn.GELU()
        out = nn.Linear(hidden, embed_dim)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.mlp = nn.Sequential(norm, up, down, out)

    def pool(self, embedding: torch.Tensor) -> torch.Tensor:
        """What a frame leaves for later frames to read.

        Args:
            embedding: (B, C, h, w) SAM image embedding (the frozen encoder's output).
        Returns:
            (B, p*p, C) pooled tokens, p = cfg.pool (capped at h, w).
        """
        p = min(self.cfg.pool, embedding.shape[-2], embedding.shape[-1])
        pooled = F.adaptive_avg_pool2d(embedding, p)
        return rearrange(pooled, "b c h w -> b (h w) c")

    def forward(self, embedding: torch.Tensor, past: Optional[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            embedding: (B, C, h, w) embedding of the current frame.
            past: (B, W', p*p, C) pooled tokens of up to ``window`` previous frames, the most
                recent first; None or W' == 0 on a video's first frame.
        Returns:
            (B, C, h, w) upgraded embedding.
        """
        if not self.cfg.enabled or past is None or past.shape[1] == 0:
            return embedding
        past = past[:, : self.cfg.window]
        h, w = embedding.shape[-2:]
        x = rearrange(embedding, "b c h w -> b (h w) c")
        context = past + self.time_embed[: past.shape[1], None, :]
        context = rearrange(context, "b t n c -> b (t n) c")
        x = x + self.attn(self.norm_q(x), self.norm_kv(context))
        x = x + self.mlp(x)
        return rearrange(x, "b (h w) c -> b c h w", h=h, w=w)
