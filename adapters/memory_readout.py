"""Memory read-out: each object's remembered masks, propagated to the current frame.

Every position of the current frame matches its key against the keys of the frames an object
remembers and reads the mask probabilities remembered there (label propagation, as STM, XMem and
Cutie read their memory). With cosine similarity over a sharp temperature this works before any
training; the learned parts (a residual on the keys, the temperature, the width of a locality
prior) start at values where the read-out is the training-free one.

Keys depend on the frame only (the frozen SAM embedding, pooled to ``grid`` x ``grid``), so the
affinity between the current frame and a remembered frame is computed once and shared by every
object that remembers that frame; only the softmax and the weighted sum are per object.

Label propagation only copies what memory holds; it cannot tell a look-alike from the object
nor draw an edge memory never saw. A small learned refiner (:class:`ReadoutRefiner`) looks at
the read-out together with the frame's keys and their similarity to the object's remembered
foreground and background, and corrects the read-out's logits; its last layer starts at zero,
so before training the read-out is the training-free one.
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

    Each object's read-out at a position is a softmax over every (frame, position) it
    remembers. The exponentials are computed once per remembered frame and shared by all
    objects (with a locality variant for the frames that are short-term for some object); each
    object then only weights frames by a per-frame factor, so the per-object work is a matrix
    product rather than a softmax of its own. Each frame's exponentials are shifted by that
    frame's own maximum and each object's by the maximum over the frames it reads, so the
    result is the exact softmax without overflow or underflow.

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
    selected = memory.selected
    short = memory.short_term & selected
    use_locality = bool(locality > 0) and bool(short.any())
    # Which (object, frame) pairs read each variant of the exponentials.
    variants = [selected & ~short, short] if use_locality else [selected]
    values = rearrange(memory.values * selected[..., None].to(memory.values.dtype), "n f m -> f m n")
    out = []
    for start in range(0, query.shape[0], chunk):
        q = query[start : start + chunk]
        sim = torch.einsum("pd,fmd->fpm", q, memory.keys) / temperature  # (F, p, M), shared by all objects
        logits = [sim]
        if use_locality:
            d2 = torch.cdist(positions[start : start + chunk], positions).pow(2)  # (p, M)
            logits.append(sim - d2 / (2 * locality**2))
        parts = []
        for lg, reads in zip(logits, variants):
            peak = lg.amax(dim=-1).detach()  # (F, p): each frame's own shift
            e = torch.exp(lg - peak[..., None])
            parts.append((peak, torch.bmm(e, values), e.sum(dim=-1), reads))  # (F, p), (F, p, N), (F, p), (N, F)
        # Each object's shift: the largest frame maximum among the frames it reads.
        shift = torch.stack(
            [peak[None].masked_fill(~reads[..., None], float("-inf")).amax(dim=1) for peak, _, _, reads in parts]
        ).amax(dim=0)  # (N, p)
        # 0-dim zeros add like the literal 0.0: each sum keeps the dtype of its terms.
        num = den = shift.new_zeros(())
        for peak, weighted, mass, reads in parts:
            scale = torch.exp(peak[None] - shift[:, None]).masked_fill(~reads[..., None], 0.0)  # (N, F, p)
            num = num + torch.einsum("nfp,fpn->np", scale, weighted)
            den = den + torch.einsum("nfp,fp->np", scale, mass)
        out.append(num / den)
    return torch.cat(out, dim=1).clamp(0.0, 1.0)


def prototype_similarity(query: torch.Tensor, memory: ReadoutMemory) -> torch.Tensor:
    """Cosine similarity of each position to each object's remembered foreground and background.

    The prototypes are the means of the keys an object remembers, weighted by the remembered
    mask probability (foreground) or its complement (background), over the frames it reads.

    Args:
        query: (P, D) unit-norm keys of the current frame.
        memory: N objects' memory.
    Returns:
        (N, 2, P): similarity to the foreground, then the background prototype.
    """
    sel = memory.selected[..., None].to(memory.values.dtype)  # (N, F, 1)
    fg = memory.values * sel
    bg = (1.0 - memory.values) * sel
    protos = torch.stack([torch.einsum("nfm,fmd->nd", w, memory.keys) for w in (fg, bg)], dim=1)  # (N, 2, D)
    return torch.einsum("nkd,pd->nkp", F.normalize(protos, dim=-1), query)


def _zero_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` with weight and bias zeroed: a residual branch that starts as the identity."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ReadoutRefiner(nn.Module):
    """A learned correction of N objects' read-out logits on one frame.

    Sees, per position: the read-out logit, the similarity to the object's foreground and
    background prototypes (:func:`prototype_similarity`), and a projection of the frame's keys
    (shared by all objects). Two 3x3 convolutions and a zero-initialised 1x1 output, so an
    untrained refiner changes nothing.

    Args:
        key_dim: D, the keys' width.
        dim: hidden width.
    """

    def __init__(self, key_dim: int, dim: int) -> None:
        super().__init__()
        self.frame_proj = nn.Conv2d(key_dim, dim, kernel_size=1)
        self.body = nn.Sequential(
            nn.Conv2d(dim + 3, dim, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
            nn.GELU(),
        )
        self.out = _zero_conv(nn.Conv2d(dim, 1, kernel_size=1))

    def forward(self, logits: torch.Tensor, similarity: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: (N, 1, g, g) read-out logits.
            similarity: (N, 2, g*g) prototype similarities.
            query: (g*g, D) the frame's keys.
        Returns:
            (N, 1, g, g) corrected logits.
        """
        n, _, g, _ = logits.shape
        frame = self.frame_proj(rearrange(query, "(h w) d -> 1 d h w", h=g, w=g)).expand(n, -1, -1, -1)
        sim = rearrange(similarity, "n k (h w) -> n k h w", h=g, w=g)
        x = torch.cat([logits / _LOGIT_SCALE, sim, frame], dim=1)
        return logits + self.out(self.body(x))


# Read-out logits are divided by this before the refiner sees them (they reach about +-9).
_LOGIT_SCALE = 4.0
# Probabilities are clamped to [eps, 1 - eps] before taking logits.
_PROB_EPS = 1e-4


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
        self.key_residual = _zero_conv(nn.Conv2d(embed_dim, embed_dim, kernel_size=1))
        self.key_residual.requires_grad_(cfg.learn_keys)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.temperature)))
        self.log_locality = nn.Parameter(torch.tensor(math.log(max(cfg.locality, 1e-6))))
        self.refiner = ReadoutRefiner(embed_dim, cfg.refine_dim) if cfg.refine_dim > 0 else None
        self.positions: torch.Tensor  # (g*g, 2) cell centres of the pooled key grid (a buffer)
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
        query = query.float()
        memory = ReadoutMemory(memory.keys.float(), memory.values.float(), memory.selected, memory.short_term)
        prob = propagate_masks(
            query, memory, self.log_temperature.exp(), locality, self.positions.to(query.device), self.cfg.chunk
        )
        g = self.grid
        prob = rearrange(prob, "n (h w) -> n 1 h w", h=g, w=g)
        if self.refiner is not None:
            logits = torch.logit(prob.clamp(_PROB_EPS, 1.0 - _PROB_EPS))
            prob = self.refiner(logits, prototype_similarity(query, memory), query).sigmoid()
        flat = prob.flatten(1)
        return Readout(prob=prob, peak=flat.amax(dim=1), mass=flat.mean(dim=1))


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
