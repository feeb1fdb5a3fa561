"""Memory encoder: a frame's features and an object's mask → one compact memory entry.

An entry is a ``grid`` x ``grid`` set of (key, value) tokens plus a pooled descriptor, so the
cost of reading memory does not grow with SAM's embedding resolution (64x64 for vit_b).
Keys depend on the frame only and are shared by all objects on it; values carry the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import MemoryEncoderConfig


@dataclass
class EncodedMemory:
    """Memory of N objects on one frame.

    Attributes:
        keys: (N, g*g, key_dim) pooled keys (the same tensor rows for every object).
        values: (N, g*g, value_dim) pooled mask-aware values.
    """

    keys: torch.Tensor
    values: torch.Tensor


class MemoryEncoder(nn.Module):
    """Projects SAM embeddings to keys and (embedding, mask) pairs to values.

    Args:
        embed_dim: SAM's embedding width C.
        cfg: grid size and key/value widths.
    """

    def __init__(self, embed_dim: int, cfg: MemoryEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.key_proj = nn.Conv2d(embed_dim, cfg.key_dim, kernel_size=1)
        self.value_proj = nn.Conv2d(embed_dim, cfg.value_dim, kernel_size=1)
        # Two mask channels: foreground probability and its complement, so that "background
        # here" is a signal of its own rather than the absence of one.
        self.mask_embed = nn.Conv2d(2, cfg.value_dim, kernel_size=1)

    def key_map(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) embedding → (B, key_dim, h, w) keys, used for memory and queries."""
        return self.key_proj(embedding)

    def forward(self, embedding: torch.Tensor, key_map: torch.Tensor, mask_logits: torch.Tensor) -> EncodedMemory:
        """
        Args:
            embedding: (1, C, h, w) the frame's (upgraded) embedding.
            key_map: (1, key_dim, h, w) from :meth:`key_map`.
            mask_logits: (N, 1, H', W') low-resolution mask logits of N objects.
        Returns:
            EncodedMemory with N entries of g*g tokens.
        """
        h, w = embedding.shape[-2:]
        n = mask_logits.shape[0]
        prob = F.interpolate(mask_logits.sigmoid(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        mask_feat = self.mask_embed(torch.cat([prob, 1.0 - prob], dim=1))  # (N, Dv, h, w)
        values = self.value_proj(embedding) + mask_feat
        g = min(self.cfg.grid, h, w)
        values = rearrange(F.adaptive_avg_pool2d(values, g), "n d h w -> n (h w) d")
        keys = rearrange(F.adaptive_avg_pool2d(key_map, g), "b d h w -> b (h w) d")
        return EncodedMemory(keys=keys.expand(n, -1, -1), values=values)
