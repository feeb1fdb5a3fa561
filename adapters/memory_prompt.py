"""Memory-as-prompt: an object's memory read-out → prompts SAM's own decoder understands.

SAM 1's frozen decoder, given a mask as its only prompt, barely uses it; given that mask's box
or one click inside the object it segments well. So the read-out reaches the decoder the way a
user would prompt it: a box around what memory finds, a positive click at its peak, and the
read-out itself as the mask prompt, all through SAM's frozen prompt encoder. The box is a soft
(differentiable) box, so the decoder's loss trains the read-out through it.

The presence head decides whether an object is on the frame from SAM's IoU token and what
memory says (the read-out's peak and mass, and whether it agrees with the previous output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Half-width of a uniform distribution over [a, b] is sqrt(3) standard deviations: the soft box
# of a filled rectangle is that rectangle.
_BOX_STD = math.sqrt(3.0)
# Width of the soft threshold's edge, in probability.
_EDGE = 0.05
# Number of read-out statistics the presence head sees (peak, mass, agreement, has memory).
READOUT_STATS = 4


@dataclass
class MemoryPrompts:
    """SAM prompts of N objects derived from their read-out, in SAM's input pixels.

    Attributes:
        boxes: (N, 4) XYXY soft boxes around the read-out.
        point_coords: (N, 1, 2) XY of the read-out's peak, or None (clicks off).
        point_labels: (N, 1) all 1, or None.
        mask_inputs: (N, 1, 4h, 4w) the read-out as mask-prompt logits in [-10, 10].
        found: (N,) bool, the read-out reaches ``absent_below`` somewhere (else the object is absent).
    """

    boxes: torch.Tensor
    point_coords: Optional[torch.Tensor]
    point_labels: Optional[torch.Tensor]
    mask_inputs: torch.Tensor
    found: torch.Tensor


def soft_box(prob: torch.Tensor, threshold: float, image_size: int) -> torch.Tensor:
    """Differentiable box around the part of ``prob`` above ``threshold``.

    Positions are weighted by a steep sigmoid of ``prob - threshold`` (about 1 inside, 0
    outside, with a gradient near the edge); the box is the weighted mean +- sqrt(3) weighted
    standard deviations per axis (exact for a filled rectangle).

    Args:
        prob: (N, 1, H, W) probabilities (the padded square input's frame).
        threshold: where the weights are 0.5.
        image_size: S, side of SAM's square input.
    Returns:
        (N, 4) XYXY in SAM input pixels.
    """
    h, w = prob.shape[-2:]
    weight = torch.sigmoid((prob[:, 0] - threshold) / _EDGE)  # (N, H, W)
    mass = weight.sum(dim=(1, 2)).clamp(min=1e-6)
    ys = torch.arange(h, device=prob.device, dtype=prob.dtype) + 0.5
    xs = torch.arange(w, device=prob.device, dtype=prob.dtype) + 0.5
    wy, wx = weight.sum(dim=2) / mass[:, None], weight.sum(dim=1) / mass[:, None]  # marginals
    my, mx = (wy * ys).sum(1), (wx * xs).sum(1)
    sy = ((wy * (ys - my[:, None]) ** 2).sum(1)).clamp(min=0.25).sqrt()
    sx = ((wx * (xs - mx[:, None]) ** 2).sum(1)).clamp(min=0.25).sqrt()
    box = torch.stack([mx - _BOX_STD * sx, my - _BOX_STD * sy, mx + _BOX_STD * sx, my + _BOX_STD * sy], dim=1)
    return box * (image_size / w)


def peak_click(prob: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, 1, H, W) probabilities → (N, 1, 2) XY of each map's maximum, in SAM input pixels."""
    n, _, h, w = prob.shape
    idx = prob.flatten(1).argmax(dim=1)
    xy = torch.stack([idx % w, idx // w], dim=1).to(prob.dtype) + 0.5
    return (xy * (image_size / w))[:, None]


def readout_prompts(prob: torch.Tensor, threshold: float, absent_below: float, image_size: int, click: bool) -> MemoryPrompts:
    """Prompts of N objects from their read-out upsampled to the decoder's mask resolution.

    Args:
        prob: (N, 1, 4h, 4w) read-out probabilities.
        threshold: probability from which a position counts as the object.
        absent_below: an object whose read-out peaks below this is not found.
        image_size: S, side of SAM's square input.
        click: add a positive click at the peak.
    """
    n = prob.shape[0]
    coords = labels = None
    if click:
        coords = peak_click(prob.detach(), image_size)
        labels = torch.ones(n, 1, dtype=torch.int, device=prob.device)
    return MemoryPrompts(
        boxes=soft_box(prob, threshold, image_size),
        point_coords=coords,
        point_labels=labels,
        mask_inputs=(prob * 2.0 - 1.0) * 10.0,
        found=prob.flatten(1).amax(dim=1) >= absent_below,
    )


class PresenceHead(nn.Module):
    """Object-presence logit from SAM's IoU token and the memory read-out's statistics.

    The last layer starts at zero with a positive bias, so an untrained head says "present"
    and never hides a mask SAM predicted.

    Args:
        embed_dim: SAM's embedding width C.
        bias: initial logit.
    """

    def __init__(self, embed_dim: int, bias: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(embed_dim + READOUT_STATS, embed_dim), nn.GELU(), nn.Linear(embed_dim, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.constant_(self.mlp[-1].bias, bias)

    def forward(self, iou_token: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(N, C) IoU-token output and (N, READOUT_STATS) read-out statistics → (N,) logits."""
        return self.mlp(torch.cat([iou_token, stats.to(iou_token.dtype)], dim=-1)).squeeze(-1)
