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
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

# Half-width of a uniform distribution over [a, b] is sqrt(3) standard deviations: the soft box
# of a filled rectangle is that rectangle.
_BOX_STD = math.sqrt(3.0)
# Width of the soft threshold's edge, in probability.
_EDGE = 0.05
# 8-connectivity for the read-out's regions.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# Number of read-out statistics the presence head sees (peak, mass, agreement, has memory).
READOUT_STATS = 4
# Number of appearance statistics the presence head sees (the decoded mask's similarity to the
# object's remembered appearance, and 1 where there is one to compare with).
APPEARANCE_STATS = 2
# How steeply the presence logit falls below the calibrated similarity (per unit of cosine).
_GATE_SLOPE = 200.0
# The calibrated similarity of an uncalibrated head: no cosine is below it, so the gate is off.
GATE_OFF = -1.0


@dataclass
class MemoryPrompts:
    """SAM prompts of N objects derived from their read-out, in SAM's input pixels.

    Attributes:
        boxes: (N, 4) XYXY soft boxes around the read-out.
        point_coords: (N, P, 2) XY of the read-out's peak (then of the strongest competing
            response, with negative clicks on), or None (clicks off).
        point_labels: (N, P) 1 for the peak; 0 for a competitor, -1 where there is none.
        mask_inputs: (N, 1, 4h, 4w) the read-out as mask-prompt logits in [-10, 10].
        found: (N,) bool, the read-out reaches ``absent_below`` somewhere (else the object is absent).
    """

    boxes: torch.Tensor
    point_coords: Optional[torch.Tensor]
    point_labels: Optional[torch.Tensor]
    mask_inputs: torch.Tensor
    found: torch.Tensor


def peak_region(prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """The connected region of ``prob >= threshold`` (8-connectivity) that holds each map's peak.

    One connected-component labelling per map (``scipy.ndimage.label`` on the host: the maps
    are the read-out's small grid), then dilated once (3x3) so the region's soft edge is kept.

    Args:
        prob: (N, 1, g, g) probabilities.
        threshold: what counts as the object.
    Returns:
        (N, 1, g, g) float, 1 inside the region (the peak's cell even when it is below
        ``threshold``), 0 elsewhere.
    """
    n, _, h, w = prob.shape
    flat = prob.detach().flatten(1)
    peaks = flat.argmax(dim=1).cpu().numpy()
    inside = (prob.detach()[:, 0] >= threshold).cpu().numpy()
    region = np.zeros((n, h, w), dtype=np.float32)
    for i in range(n):
        py, px = divmod(int(peaks[i]), w)
        if inside[i, py, px]:
            labels, _ = ndimage.label(inside[i], structure=_EIGHT_CONNECTED)
            region[i] = labels == labels[py, px]
        else:
            region[i, py, px] = 1.0
    out = torch.from_numpy(region).to(device=prob.device, dtype=prob.dtype)[:, None]
    return F.max_pool2d(out, 3, stride=1, padding=1)


def competing_click(
    prob: torch.Tensor, region: torch.Tensor, threshold: float, image_size: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """A negative click at each map's strongest response outside its peak's region.

    Args:
        prob: (N, 1, g, g) probabilities.
        region: (N, 1, g, g) the peak's region (:func:`peak_region`).
        threshold: a response below this is not a competitor.
        image_size: S, side of SAM's square input.
    Returns:
        (N, 1, 2) XY in SAM input pixels, and (N, 1) labels: 0 (negative click) where a
        competitor reaches ``threshold``, -1 (SAM's "no point") elsewhere.
    """
    outside = prob * (1.0 - region)
    coords = peak_click(outside, image_size)
    strong = outside.flatten(1).amax(dim=1) >= threshold
    labels = torch.where(strong, 0, -1).to(torch.int)[:, None]
    return coords, labels


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


def readout_prompts(
    prob: torch.Tensor,
    threshold: float,
    absent_below: float,
    image_size: int,
    click: bool,
    grid_prob: Optional[torch.Tensor] = None,
    focus: bool = False,
    negative_click: bool = False,
) -> MemoryPrompts:
    """Prompts of N objects from their read-out upsampled to the decoder's mask resolution.

    Args:
        prob: (N, 1, 4h, 4w) read-out probabilities.
        threshold: probability from which a position counts as the object.
        absent_below: an object whose read-out peaks below this is not found.
        image_size: S, side of SAM's square input.
        click: add a positive click at the peak.
        grid_prob: (N, 1, g, g) the read-out at its own grid, where the peak's region is
            found (needed by ``focus`` and ``negative_click``).
        focus: the box covers the peak's region only (:func:`peak_region`).
        negative_click: add a negative click at the strongest response outside that region
            (with ``click``; a padding point when there is none).
    """
    n = prob.shape[0]
    coords = labels = None
    box_prob = prob
    if (focus or negative_click) and grid_prob is not None:
        region = peak_region(grid_prob.detach(), threshold)
        if focus:
            box_prob = prob * F.interpolate(region, size=prob.shape[-2:], mode="nearest")
    if click:
        coords = peak_click(prob.detach(), image_size)
        labels = torch.ones(n, 1, dtype=torch.int, device=prob.device)
        if negative_click and grid_prob is not None:
            neg_xy, neg_label = competing_click(grid_prob.detach(), region, threshold, image_size)
            coords = torch.cat([coords, neg_xy], dim=1)
            labels = torch.cat([labels, neg_label], dim=1)
    return MemoryPrompts(
        boxes=soft_box(box_prob, threshold, image_size),
        point_coords=coords,
        point_labels=labels,
        mask_inputs=(prob * 2.0 - 1.0) * 10.0,
        found=prob.flatten(1).amax(dim=1) >= absent_below,
    )


class PresenceHead(nn.Module):
    """Object-presence logit from SAM's IoU token, the memory read-out and the mask's appearance.

    An MLP over SAM's IoU token and the read-out's statistics, trained with the adapters; and
    an appearance gate: a decoded mask whose appearance (its mask-weighted mean key) is less
    similar to the object's remembered appearance than ``min_similarity`` is called absent
    (the occluder, a look-alike or background that the decoder segmented in the object's
    place). ``min_similarity`` is not learned by gradient (the gate is a threshold): training
    calibrates it on the training videos (:mod:`i2v.train.calibration`), because where the
    threshold lies depends on the SAM's feature space.

    The MLP's last layer starts at zero with a positive bias and the gate starts off
    (``GATE_OFF``), so an untrained head says "present" and never hides a mask SAM predicted.

    Args:
        embed_dim: SAM's embedding width C.
        bias: initial logit.
    """

    def __init__(self, embed_dim: int, bias: float) -> None:
        super().__init__()
        hidden, out = nn.Linear(embed_dim + READOUT_STATS, embed_dim), nn.Linear(embed_dim, 1)
        nn.init.zeros_(out.weight)
        nn.init.constant_(out.bias, bias)
        self.mlp = nn.Sequential(hidden, nn.GELU(), out)
        self.min_similarity = nn.Parameter(torch.tensor(GATE_OFF), requires_grad=False)

    def forward(self, iou_token: torch.Tensor, stats: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """(N, C) IoU-token output, (N, READOUT_STATS) read-out statistics and (N,
        APPEARANCE_STATS) appearance statistics (:func:`appearance_stats`) → (N,) logits."""
        logits = self.mlp(torch.cat([iou_token, stats.to(iou_token.dtype)], dim=-1)).squeeze(-1)
        return logits - self.gate(appearance).to(logits.dtype)

    @property
    def gate_on(self) -> bool:
        """The appearance gate is calibrated to a threshold (an untrained head's is off)."""
        return float(self.min_similarity) > GATE_OFF

    def gate(self, appearance: torch.Tensor) -> torch.Tensor:
        """(N, APPEARANCE_STATS) appearance statistics → (N,) what the appearance gate takes off
        the presence logit: 0 at or above ``min_similarity`` (or without evidence), steeply
        more below it."""
        below = F.relu(self.min_similarity.detach() - appearance[:, 0].float())
        return _GATE_SLOPE * below * appearance[:, 1].float()


def object_appearance(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """An object's remembered appearance: the mean of the keys it remembers weighted by its mask.

    Args:
        keys: (F, M, D) unit-norm keys of the frames it remembers.
        values: (F, M) its mask probability on each.
    Returns:
        (D,) unit-norm prototype (zeros when every mask is empty).
    """
    return F.normalize(torch.einsum("fm,fmd->d", values, keys), dim=-1)


def appearance_stats(keys: torch.Tensor, mask_prob: torch.Tensor, prototypes: Optional[torch.Tensor]) -> torch.Tensor:
    """How much each decoded mask looks like its object: (N, APPEARANCE_STATS).

    Args:
        keys: (M, D) unit-norm keys of the current frame.
        mask_prob: (N, M) each decoded mask's probability on the keys' grid.
        prototypes: (N, D) each object's :func:`object_appearance` (zeros where an object has
            none), or None: no object has one.
    Returns:
        the cosine similarity of the mask-weighted mean key with the prototype, and 1 where the
        object has a prototype and the mask covers at least half a grid cell (both 0 elsewhere).
    """
    n = mask_prob.shape[0]
    if prototypes is None:
        return mask_prob.new_zeros(n, APPEARANCE_STATS)
    prob = mask_prob.detach().float()
    pooled = F.normalize(prob @ keys.float(), dim=-1)  # (N, D)
    sim = (pooled * prototypes.float()).sum(dim=-1)
    has = (prototypes.abs().sum(dim=-1) > 0) & (prob.sum(dim=1) >= 0.5)
    return torch.stack([sim, torch.ones_like(sim)], dim=1) * has[:, None].to(sim.dtype)
