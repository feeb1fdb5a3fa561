"""Training losses, as SAM 2 trains: focal + dice on masks, L1 on predicted IoU, BCE on
object presence; and, as STM, XMem and Cutie train their memory, focal + dice on the memory
read-out itself (an auxiliary term that gives memory a job of its own).

With multimask output (K = 3 candidates) only the candidate with the lowest mask loss is
supervised for the mask (a lone click is ambiguous: any of the candidates may be what the
user meant), while the IoU head learns on every candidate. Objects absent from the ground
truth on a frame get the presence loss only.

Losses are computed per (frame, object) pair (:class:`PairLosses`) and reduced once per clip
(:func:`reduce_losses`): mask and IoU terms are averaged over the supervised pairs where the
object is present, the presence term over all supervised pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F


@dataclass
class LossWeights:
    """Weights of the loss terms (SAM 2's defaults).

    Attributes:
        focal: sigmoid focal loss on mask logits (alpha 0.25, gamma 2), mean over pixels.
        dice: dice loss on mask probabilities.
        iou: L1 between the predicted IoU and the IoU of the thresholded mask with the truth.
        presence: binary cross-entropy of the object-presence logit.
        readout: weight of the memory read-out's own focal + dice loss (its focal term
            weighted by ``focal`` as the output's is), where the object is present.
    """

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    presence: float = 1.0
    readout: float = 1.0

    def __post_init__(self) -> None:
        for name in ("focal", "dice", "iou", "presence", "readout"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossWeights.{name} must be >= 0, got {getattr(self, name)}.")


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al.) of mask logits, averaged over the last two (pixel) dimensions.

    Args:
        logits: (..., H, W); targets: (..., H, W) bool or float in [0, 1].
    Returns:
        (...,) one value per mask.
    """
    t = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = logits.sigmoid()
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of sigmoid(logits) with the targets; ``smooth`` keeps empty masks finite.

    Args:
        logits: (..., H, W); targets: (..., H, W).
    Returns:
        (...,) one value per mask.
    """
    p = logits.sigmoid().flatten(-2)
    t = targets.to(p.dtype).flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + smooth) / (p.sum(-1) + t.sum(-1) + smooth)


@torch.no_grad()
def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with the targets, (..., H, W) → (...,); 0 when both are empty."""
    pred = (logits > 0).flatten(-2)
    t = targets.bool().flatten(-2)
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return inter / union.clamp(min=1.0)


@dataclass
class PairLosses:
    """Unweighted losses of M (frame, object) pairs.

    Attributes:
        focal, dice: (M,) of the supervised candidate (the lowest-loss one with multimask).
        iou: (M,) IoU-head L1, averaged over the candidates.
        presence: (M,) presence BCE.
        present: (M,) bool, the object is in the ground truth (and the pair is supervised).
        supervised: (M,) bool, the frame has ground truth.
        best: (M,) int64 index of the supervised candidate.
        readout: (M,) weighted focal + dice of the memory read-out, or None.
        has_readout: (M,) bool, the read-out term counts: the pair read memory, has ground
            truth and the object is in it.
    """

    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    presence: torch.Tensor
    present: torch.Tensor
    supervised: torch.Tensor
    best: torch.Tensor
    readout: Optional[torch.Tensor] = None
    has_readout: Optional[torch.Tensor] = None


def pair_losses(
    all_logits: torch.Tensor,
    all_iou: torch.Tensor,
    presence_logits: torch.Tensor,
    gt: torch.Tensor,
    weights: LossWeights,
    supervised: Optional[torch.Tensor] = None,
    readout_logits: Optional[torch.Tensor] = None,
    has_readout: Optional[torch.Tensor] = None,
    decoded: Optional[torch.Tensor] = None,
) -> PairLosses:
    """Losses of M predictions against their ground truth.

    Args:
        all_logits: (M, K, H, W) candidate mask logits (K = 1 without multimask).
        all_iou: (M, K) predicted IoUs.
        presence_logits: (M,) presence logits.
        gt: (M, H, W) bool ground truth; the object is present where it has a pixel.
        weights: used to pick the lowest-loss candidate (focal and dice weighted as in the total).
        supervised: (M,) bool, False for pairs without ground truth; default all True.
        readout_logits: (M, 1, H, W) logits of the memory read-out, or None.
        has_readout: (M,) bool, which pairs read memory (required with ``readout_logits``).
        decoded: (M,) bool, False for pairs the decoder never saw (memory found the object
            nowhere, so its output is a constant): their mask, IoU and presence terms carry no
            gradient and are left out; their read-out term stays. Default all True.
    """
    # float32 whatever the autocast dtype: focal's powers and dice's sums lose too much in 16 bits
    all_logits, all_iou, presence_logits = all_logits.float(), all_iou.float(), presence_logits.float()
    m, k = all_logits.shape[:2]
    if supervised is None:
        supervised = torch.ones(m, dtype=torch.bool, device=gt.device)
    readout_supervised = supervised
    if decoded is not None:
        supervised = supervised & decoded.to(supervised.device)
    target = gt[:, None].expand(-1, k, -1, -1)
    focal = sigmoid_focal_loss(all_logits, target)  # (M, K)
    dice = dice_loss(all_logits, target)
    best = (weights.focal * focal + weights.dice * dice).argmin(dim=1)
    rows = torch.arange(m, device=best.device)
    iou = (all_iou - mask_iou(all_logits, target).to(all_iou.dtype)).abs().mean(dim=1)
    presence_target = gt.flatten(1).any(dim=1)
    presence = F.binary_cross_entropy_with_logits(
        presence_logits, presence_target.to(presence_logits.dtype), reduction="none"
    )
    readout = flags = None
    if readout_logits is not None:
        r = readout_logits[:, 0].float()
        readout = weights.focal * sigmoid_focal_loss(r, gt) + weights.dice * dice_loss(r, gt)
        flags = has_readout.clone() if has_readout is not None else torch.ones(m, dtype=torch.bool, device=gt.device)
        flags = flags & readout_supervised & presence_target
    return PairLosses(
        focal=focal[rows, best],
        dice=dice[rows, best],
        iou=iou,
        presence=presence,
        present=presence_target & supervised,
        supervised=supervised.clone(),
        best=best,
        readout=readout,
        has_readout=flags,
    )


def reduce_losses(parts: Sequence[PairLosses], weights: LossWeights) -> Dict[str, torch.Tensor]:
    """Average pair losses into scalar terms and their weighted total.

    Mask terms (focal, dice, iou) are averaged over the supervised pairs where the object is
    present; the presence term over all supervised pairs. With nothing supervised every term
    is an exact 0 that still depends on the inputs, so ``backward`` works.

    Returns:
        {"focal", "dice", "iou", "presence", "readout", "total"}: scalar tensors ("readout"
        averaged over the present pairs that read memory).
    """
    if not parts:
        raise ValueError("reduce_losses needs at least one PairLosses.")
    cat = {
        name: torch.cat([getattr(p, name) for p in parts])
        for name in ("focal", "dice", "iou", "presence", "present", "supervised")
    }
    present, supervised = cat["present"], cat["supervised"]
    terms: Dict[str, torch.Tensor] = {}
    for name in ("focal", "dice", "iou"):
        # where() rather than multiplication: a NaN in an unsupervised row must not leak.
        v = torch.where(present, cat[name], torch.zeros_like(cat[name]))
        terms[name] = v.sum() / present.sum().clamp(min=1)
    v = torch.where(supervised, cat["presence"], torch.zeros_like(cat["presence"]))
    terms["presence"] = v.sum() / supervised.sum().clamp(min=1)
    with_readout = [p for p in parts if p.readout is not None]
    if with_readout:
        r = torch.cat([p.readout for p in with_readout])  # type: ignore[misc]
        keep = torch.cat([p.has_readout for p in with_readout])  # type: ignore[misc]
        terms["readout"] = torch.where(keep, r, torch.zeros_like(r)).sum() / keep.sum().clamp(min=1)
    else:
        terms["readout"] = terms["presence"] * 0.0
    terms["total"] = (
        weights.focal * terms["focal"]
        + weights.dice * terms["dice"]
        + weights.iou * terms["iou"]
        + weights.presence * terms["presence"]
        + weights.readout * terms["readout"]
    )
    return terms


def mask_prediction_loss(
    all_logits: torch.Tensor,
    all_iou: torch.Tensor,
    presence_logits: torch.Tensor,
    gt: torch.Tensor,
    weights: LossWeights,
    supervised: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """:func:`pair_losses` + :func:`reduce_losses` for one batch of predictions (shapes there)."""
    return reduce_losses([pair_losses(all_logits, all_iou, presence_logits, gt, weights, supervised)], weights)
