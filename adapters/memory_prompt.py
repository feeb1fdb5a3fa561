"""Memory-as-prompt: selected memory → extra prompt tokens and a dense prior for SAM's decoder.

Two readers, both cheap because memory entries are pooled:
- dense readout: every position of the current frame matches its key against the memory keys
  and reads the memory values (a soft propagation of past masks); a zero-initialised 1x1 conv
  turns it into an addition to SAM's dense prompt embedding;
- sparse tokens: ``num_tokens`` learned queries read the memory values, then the current
  frame, and become extra sparse prompt tokens for SAM's original mask decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from .attention import CrossAttention
from .config import MemoryEncoderConfig, MemoryPromptConfig


@dataclass
class MemoryPrompt:
    """What memory adds to the prompts of N objects on one frame.

    Attributes:
        sparse: (N, num_tokens, C) extra sparse prompt tokens.
        dense: (N, C, h, w) addition to the dense prompt embedding, or None.
        summary: (N, C) pooled query state (input to the object-presence head).
    """

    sparse: torch.Tensor
    dense: Optional[torch.Tensor]
    summary: torch.Tensor


class MemoryAsPrompt(nn.Module):
    """Reads an object's selected memory and writes prompts for SAM's mask decoder.

    Args:
        embed_dim: SAM's embedding width C.
        mem_cfg: memory entry sizes (key/value widths).
        cfg: number of tokens, heads, and which readers are on.
    """

    def __init__(self, embed_dim: int, mem_cfg: MemoryEncoderConfig, cfg: MemoryPromptConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scale = mem_cfg.key_dim ** -0.5
        self.queries = nn.Parameter(torch.randn(cfg.num_tokens, embed_dim) * 0.02)
        self.read_memory = CrossAttention(embed_dim, mem_cfg.value_dim + mem_cfg.key_dim, embed_dim // 2, cfg.heads)
        self.read_frame = CrossAttention(embed_dim, embed_dim, embed_dim // 2, cfg.heads)
        self.norm = nn.LayerNorm(embed_dim)
        self.to_tokens = nn.Linear(embed_dim, embed_dim)
        nn.init.zeros_(self.to_tokens.weight)
        nn.init.zeros_(self.to_tokens.bias)
        self.readout_proj = nn.Conv2d(mem_cfg.value_dim, embed_dim, kernel_size=1)
        nn.init.zeros_(self.readout_proj.weight)
        nn.init.zeros_(self.readout_proj.bias)

    def dense_readout(self, query_keys: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Soft-propagate memory values to every position of the current frame.

        Args:
            query_keys: (1, Dk, h, w) keys of the current frame.
            keys: (N, L, Dk) memory keys; values: (N, L, Dv); padding: (N, L) bool.
        Returns:
            (N, Dv, h, w) read-out values.
        """
        h, w = query_keys.shape[-2:]
        q = rearrange(query_keys, "1 d h w -> (h w) d")
        affinity = torch.einsum("pd,nld->npl", q, keys) * self.scale  # (N, hw, L)
        if bool(padding.any()):  # objects with fewer entries than others
            affinity = affinity.masked_fill(padding[:, None, :], float("-inf"))
        readout = torch.einsum("npl,nld->npd", affinity.softmax(dim=-1), values)
        return rearrange(readout, "n (h w) d -> n d h w", h=h, w=w)

    def forward(
        self,
        embedding: torch.Tensor,
        query_keys: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        padding: torch.Tensor,
    ) -> MemoryPrompt:
        """
        Args:
            embedding: (1, C, h, w) current frame's (upgraded) embedding.
            query_keys: (1, Dk, h, w) current frame's memory keys.
            keys: (N, L, Dk), values: (N, L, Dv) the selected memory of N objects, L tokens
                each (padded); padding: (N, L) bool, True on padding tokens.
        Returns:
            MemoryPrompt for the N objects.
        """
        n = keys.shape[0]
        memory = torch.cat([values, keys], dim=-1)
        q = self.queries[None].expand(n, -1, -1)
        q = q + self.read_memory(q, memory, key_padding=padding)
        # Every query attends to the same frame independently, so all objects' queries go in
        # one batch row: the frame's keys and values are projected once, not once per object.
        frame_tokens = rearrange(embedding, "1 c h w -> 1 (h w) c")
        flat = rearrange(q, "n k c -> 1 (n k) c")
        q = q + rearrange(self.read_frame(flat, frame_tokens), "1 (n k) c -> n k c", n=n)
        q = self.norm(q)
        dense = None
        if self.cfg.dense_readout:
            dense = self.readout_proj(self.dense_readout(query_keys, keys, values, padding))
        return MemoryPrompt(sparse=self.to_tokens(q), dense=dense, summary=q.mean(dim=1))


class PresenceHead(nn.Module):
    """Object-presence logit from SAM's IoU token and the memory summary.

    The last layer starts at zero with a positive bias, so an untrained head says "present"
    and never hides a mask SAM predicted.

    Args:
        embed_dim: SAM's embedding width C.
        bias: initial logit.
    """

    def __init__(self, embed_dim: int, bias: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.constant_(self.mlp[-1].bias, bias)

    def forward(self, iou_token: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """(N, C) IoU-token output and (N, C) memory summary → (N,) presence logits."""
        return self.mlp(torch.cat([iou_token, summary], dim=-1)).squeeze(-1)
