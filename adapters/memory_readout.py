"""Memory read-out: each object's remembered masks, propagated to the current frame.

Every position of the current frame matches its key against the keys of the frames an object
remembers and reads the mask probabilities remembered there (label propagation, as STM, XMem and
Cutie read their memory). With cosine similarity over a sharp temperature this works before any
training; the learned parts (a residual on the keys, the temperature, the width of a locality
prior) start at values where the read-out is the training-free one.

Keys depend on the frame only (the frozen SAM embedding, pooled to ``grid`` x ``grid``), so the
affinity between the current frame and a remembered frame is computed once and shared by every
object that remembers that frame; only the softmax and the weighted sum are per object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import MemoryReadoutConfig


@dataclass
class ReadoutMemory:
    """The selected memory of N objects, over the F distinct frames any of them remembers.

    Attributes:
        keys: (F, M, D) unit-norm keys of the remembered frames (M = grid * grid positions).
        values: (N, F, M) remembered mask probabilities (0 where an object does not read a frame).
        selected: (N, F) bool, object n reads frame f.
        short_term: (N, F) bool, the locality prior applies (recent, unprompted entries).
    """

    keys: torch.Tensor
    values: torch.Tensor
    selected: torch.Tensor
    short_term: torch.Tensor


@dataclass
class Readout:
    """What memory says about N objects on the current frame.

    Attributes:
        prob: (N, 1, g, g) read-out probability that each position shows the object.
        peak: (N,) its maximum.
        mass: (N,) its mean over the grid (the object's expected size as a fraction).
    """

    prob: torch.Tensor
    peak: torch.Tensor
    mass: torch.Tensor


def grid_positions(g: int, device: torch.device) -> torch.Tensor:
    """(g*g, 2) cell centres in [0, 1], row-major (y, x)."""
    c = (torch.arange(g, device=device, dtype=torch.float32) + 0.5) / g
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([ys.flatten(), xs.flatten()], dim=1)


def propagate_masks(
    query: torch.Tensor,
    memory: ReadoutMemory,
    temperature: torch.Tensor,
    locality: torch.Tensor,
    positions: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """Soft-propagate N objects' remembered masks to the current frame.

    Args:
        query: (P, D) unit-norm keys of the current frame (P = M positions).
        memory: the objects' selected memory.
        temperature: () softmax temperature of the cosine affinity.
        locality: () std of the locality prior in grid units of [0, 1]; <= 0 disables it.
        positions: (P, 2) cell centres (:func:`grid_positions`).
        chunk: query positions per block.
    Returns:
        (N, P) read-out probabilities in [0, 1].
    """
    n, _, m = memory.values.shape
    # Each object reads only its own K frames: gather them (selected first, then padding), so
    # the per-object work grows with K, not with the number of frames all objects remember.
    k = int(memory.selected.sum(dim=1).max())
    cols = torch.argsort((~memory.selected).to(torch.int8), dim=1, stable=True)[:, :k]  # (N, K)
    valid = torch.gather(memory.selected, 1, cols)
    short = (torch.gather(memory.short_term, 1, cols) & valid)[:, None, :, None].to(query.dtype)  # (N, 1, K, 1)
    values = rearrange(torch.gather(memory.values, 1, cols[..., None].expand(-1, -1, m)), "n k m -> n (k m)")
    blocked = ~valid[:, None, :, None]
    use_locality = bool(locality > 0) and bool(short.any())
    out = []
    for start in range(0, query.shape[0], chunk):
        q = query[start : start + chunk]
        sim = torch.einsum("pd,fmd->pfm", q, memory.keys) / temperature  # (p, F, M), shared by all objects
        logits = rearrange(sim[:, cols], "p n k m -> n p k m")  # (N, p, K, M)
        if use_locality:
            d2 = torch.cdist(positions[start : start + chunk], positions).pow(2)  # (p, M)
            logits = logits - short * (d2[None, :, None, :] / (2 * locality**2))
        logits = logits.masked_fill(blocked, float("-inf"))
        weights = rearrange(logits, "n p k m -> n p (k m)").softmax(dim=-1)
        out.append(torch.einsum("npk,nk->np", weights, values))
    return torch.cat(out, dim=1).clamp(0.0, 1.0)


class MemoryReadout(nn.Module):
    """Keys of a frame, and the read-out of objects' memory at those keys.

    Args:
        embed_dim: SAM's embedding width C (the key width).
        embedding_size: (h, w) of SAM's embedding; keys are pooled to at most ``cfg.grid``.
        cfg: grid, temperature, locality prior.
    """

    def __init__(self, embed_dim: int, embedding_size: Sequence[int], cfg: MemoryReadoutConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = min(cfg.grid, *embedding_size)
        self.key_residual = nn.Conv2d(embed_dim, embed_dim, kernel_size=1)
        nn.init.zeros_(self.key_residual.weight)
        nn.init.zeros_(self.key_residual.bias)
        self.key_residual.requires_grad_(cfg.learn_keys)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.temperature)))
        self.log_locality = nn.Parameter(torch.tensor(math.log(max(cfg.locality, 1e-6))))
        self.register_buffer("positions", grid_positions(self.grid, torch.device("cpu")), persistent=False)

    @property
    def num_positions(self) -> int:
        return self.grid * self.grid

    def keys(self, raw: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) frozen embedding → (M, C) unit-norm keys at the read-out grid."""
        x = F.adaptive_avg_pool2d(raw, self.grid) if raw.shape[-1] != self.grid else raw
        x = x + self.key_residual(x)
        return F.normalize(rearrange(x, "1 c h w -> (h w) c"), dim=-1)

    def pool_masks(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(N, 1, H', W') mask logits → (N, M) probabilities averaged over each grid cell."""
        prob = F.adaptive_avg_pool2d(mask_logits.float().sigmoid(), self.grid)
        return rearrange(prob, "n 1 h w -> n (h w)")

    def forward(self, query: torch.Tensor, memory: ReadoutMemory) -> Readout:
        """
        Args:
            query: (M, C) keys of the current frame (:meth:`keys`).
            memory: N objects' memory; every object must read at least one frame.
        Returns:
            the N objects' read-out.
        """
        if not bool(memory.selected.any(dim=1).all()):
            raise ValueError("every object given to the memory read-out must have at least one memory entry.")
        locality = self.log_locality.exp() if self.cfg.locality > 0 else self.log_locality.new_zeros(())
        prob = propagate_masks(
            query.float(), ReadoutMemory(memory.keys.float(), memory.values.float(), memory.selected, memory.short_term),
            self.log_temperature.exp(), locality, self.positions.to(query.device), self.cfg.chunk,
        )
        g = self.grid
        return Readout(prob=rearrange(prob, "n (h w) -> n 1 h w", h=g, w=g), peak=prob.amax(dim=1), mass=prob.mean(dim=1))


def stack_memory(
    frames: Sequence[int],
    keys: Sequence[torch.Tensor],
    values: Sequence[Sequence[torch.Tensor]],
    reads: Sequence[Sequence[int]],
    short_term: Sequence[Sequence[bool]],
    device: torch.device,
) -> ReadoutMemory:
    """Assemble :class:`ReadoutMemory` for N objects.

    Args:
        frames: the F distinct remembered frame indices.
        keys: per frame, its (M, D) keys.
        values: per object, the (M,) mask probabilities of each frame it reads.
        reads: per object, the positions in ``frames`` of the frames it reads.
        short_term: per object, whether each frame it reads is short-term.
    """
    n, f = len(reads), len(frames)
    m = keys[0].shape[0]
    zero = torch.zeros(m, device=device, dtype=torch.float32)
    rows = []
    selected = torch.zeros(n, f, dtype=torch.bool, device=device)
    short = torch.zeros(n, f, dtype=torch.bool, device=device)
    for i, (cols, vs, st) in enumerate(zip(reads, values, short_term)):
        by_col = {col: v.to(device, torch.float32) for col, v in zip(cols, vs)}
        rows.append(torch.stack([by_col.get(col, zero) for col in range(f)]))
        for col, s in zip(cols, st):
            selected[i, col] = True
            short[i, col] = s
    return ReadoutMemory(torch.stack([k.to(device) for k in keys]), torch.stack(rows), selected, short)
