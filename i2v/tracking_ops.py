"""Per-frame tracking steps shared by the video predictor and training.

Inference (:mod:`i2v.video_predictor`) and training (:mod:`i2v.train.clip_step`) run a frame
through these same functions, so what the model is trained on is what it is asked at
inference: the same mask-prompt encoding, the same multimask rule, the same grouping of objects
by mask prior, the same presence gating of outputs and memory. The one inference-only option,
motion-aware selection (:mod:`i2v.motion`, off by default), re-ranks the same decoder's
candidates and leaves what is trained untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from i2v.memory_bank import MemoryBatch, MemoryEntry
from i2v.model import FrameFeatures, ObjectPrompts, SamI2V

# Logit magnitude of a mask given as a prompt (SAM 2 uses the same +-10).
MASK_PROMPT_LOGIT = 10.0
# Presence logit recorded for outputs on prompted frames: the user said the object is there.
PROMPTED_PRESENCE = 10.0


def mask_to_low_res(
    masks: torch.Tensor, input_size: Tuple[int, int], image_size: int, low_res_size: Tuple[int, int]
) -> torch.Tensor:
    """Masks at a frame's own resolution → the fraction of each low-resolution cell they cover.

    The frame is placed as SAM places it: resized so its longer side is ``image_size`` (to
    ``input_size``), padded right and bottom to a square, then downsampled to the decoder's
    mask resolution.

    Args:
        masks: (N, H, W) bool or float in [0, 1].
        input_size: (h', w') frame size after SAM's resize, before padding.
        image_size: S, side of SAM's square input.
        low_res_size: (4h, 4w), the decoder's mask size.
    Returns:
        (N, 1, 4h, 4w) float in [0, 1].
    """
    h, w = input_size
    m = F.interpolate(masks[:, None].float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    m = F.pad(m, (0, image_size - w, 0, image_size - h))
    # S is a whole multiple of the low resolution, so "area" is an exact box average.
    return F.interpolate(m, size=low_res_size, mode="area").clamp_(0.0, 1.0)


def mask_prompt_logits(fraction: torch.Tensor) -> torch.Tensor:
    """Mask coverage in [0, 1] (or a bool mask) → SAM mask-prompt logits in [-10, 10]."""
    return (fraction.float() * 2.0 - 1.0) * MASK_PROMPT_LOGIT


def box_from_logits(low_res_logits: torch.Tensor, image_size: int) -> Optional[torch.Tensor]:
    """The box around ``logits > 0`` of a (1, 1, 4h, 4w) mask, in SAM input pixels.

    Returns (1, 4) XYXY, or None when the mask is empty.
    """
    fg = low_res_logits[0, 0] > 0
    if not bool(fg.any()):
        return None
    ys, xs = torch.nonzero(fg, as_tuple=True)
    scale = image_size / low_res_logits.shape[-1]
    return (torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() * scale)[None]


def use_multimask(num_points: int, has_box: bool, has_prior: bool) -> bool:
    """SAM's rule: a lone click with nothing else is ambiguous, so predict 3 candidates."""
    return num_points == 1 and not has_box and not has_prior


@dataclass
class TrackedObjects:
    """Outputs of N tracked objects on one frame, in the order they were given.

    Attributes:
        logits: (N, 1, 4h, 4w) the output masks, ``absent_logit`` where presence says absent
            (what the predictor returns, remembers and uses as the next prior).
        raw_logits: (N, 1, 4h, 4w) the decoder's chosen masks before presence gating.
        all_logits: (N, K, 4h, 4w) every candidate (K = 1: tracking never uses multimask).
        all_iou: (N, K) their predicted IoUs; iou: (N,) of the chosen masks.
        presence_logits: (N,) object-presence logits.
        entries: one new (unprompted) memory entry per object, still holding the graph.
    """

    logits: torch.Tensor
    raw_logits: torch.Tensor
    all_logits: torch.Tensor
    all_iou: torch.Tensor
    iou: torch.Tensor
    presence_logits: torch.Tensor
    entries: List[MemoryEntry]


def track_objects(
    model: SamI2V,
    frame: FrameFeatures,
    frame_idx: int,
    priors: Sequence[Optional[torch.Tensor]],
    memories: Sequence[Sequence[MemoryEntry]],
) -> TrackedObjects:
    """Segment N tracked objects on one frame and encode their new memory.

    Objects are decoded in batches of the same prompt structure (with or without a mask prior,
    with or without its box: SAM's prompt encoder cannot mix them in one batch).

    Args:
        frame: the frame's features (upgraded with the pass's window).
        frame_idx: its index (recorded in the memory entries).
        priors: per object, (1, 1, 4h, 4w) logits of its latest output, or None (no output
            yet, or the object was absent there). Ignored when the config disables priors.
        memories: per object, the entries it reads (``MemoryBank.select``).
    """
    cfg = model.config.memory_prompt
    # Each object's prompt: its latest mask (SAM's mask prompt) and, optionally, that mask's box.
    boxes: List[Optional[torch.Tensor]] = [None] * len(priors)
    groups: Dict[Tuple[bool, bool], List[int]] = {}
    for i, prior in enumerate(priors):
        has_prior = cfg.mask_prior and prior is not None
        if has_prior and cfg.box_prior:
            boxes[i] = box_from_logits(prior, model.image_size)
        groups.setdefault((has_prior, boxes[i] is not None), []).append(i)
    parts = []
    for (has_prior, has_box), idx in groups.items():
        prompts = ObjectPrompts()
        if has_prior:
            prompts.mask_inputs = torch.cat([priors[i].to(model.device) for i in idx])  # type: ignore[union-attr]
        if has_box:
            prompts.boxes = torch.cat([boxes[i] for i in idx]).to(model.device)  # type: ignore[misc]
        memory = MemoryBatch.stack([memories[i] for i in idx], model.device)
        parts.append((idx, model.decode(frame, prompts, memory, len(idx))))
    order = torch.tensor([i for idx, _ in parts for i in idx], device=model.device).argsort()

    def gather(name: str) -> torch.Tensor:
        return torch.cat([getattr(out, name) for _, out in parts])[order]

    raw = gather("low_res_logits")
    presence = gather("presence_logits")
    iou = gather("iou")
    present = presence > 0
    logits = torch.where(present[:, None, None, None], raw, torch.full_like(raw, model.config.absent_logit))
    entries = model.make_memory(frame, frame_idx, logits, iou, presence, prompted=False)
    return TrackedObjects(logits, raw, gather("all_low_res_logits"), gather("all_iou"), iou, presence, entries)
