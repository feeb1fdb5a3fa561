"""Prompting one object on one frame: the operation behind the predictor's
``add_new_points_or_box`` / ``add_new_mask`` and behind training's simulated user.

Both call these functions, so a prompt means the same thing in training and at inference:
the frame is decoded without the upgrader window (the caller prepares it so), the user's prompts
alone decide, a lone click gets SAM's multimask output, a correction (a prompt on a frame that
already has an output) feeds that output back as SAM's mask prompt clamped to +-32 as SAM 2
does, and the frame gets a *prompted* memory entry.

Coordinates are in SAM's input pixels (after its resize, before padding): the predictor maps
video pixels there with SAM's transform, training scales the decoder's low-resolution pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from i2v.inference_state import LOGIT_CLAMP
from i2v.memory_bank import MemoryEntry
from i2v.model import DecodeOutput, FrameFeatures, ObjectPrompts, SamI2V
from i2v.tracking_ops import PROMPTED_PRESENCE, mask_prompt_logits, use_multimask

# SAM 2 clamps a previous output to this range before feeding it back as a correction prior.
PRIOR_CLAMP = LOGIT_CLAMP


@dataclass
class PromptedObject:
    """An object's output on a frame it was prompted on, and the memory that frame writes.

    Attributes:
        logits: (1, 1, 4h, 4w) output mask logits (with the decoder's graph when training).
        iou: (1,) predicted IoU (1 for a mask prompt).
        presence_logit: +-``PROMPTED_PRESENCE``: the user says whether the object is there.
        entry: the frame's prompted memory entry.
        decoded: the decoder's output (every candidate, for training's loss); None for a mask.
    """

    logits: torch.Tensor
    iou: torch.Tensor
    presence_logit: float
    entry: MemoryEntry
    decoded: Optional[DecodeOutput] = None


def correction_prior(previous: Optional[torch.Tensor], device: torch.device) -> Optional[torch.Tensor]:
    """The mask prompt of a correction: the frame's newest output (1, 1, 4h, 4w), detached,
    float32 and clamped to +-``PRIOR_CLAMP`` (an absent object's -1024 becomes -32); None
    for a first prompt."""
    if previous is None:
        return None
    return previous.detach().to(device).float().clamp(-PRIOR_CLAMP, PRIOR_CLAMP)


def prompt_with_points(
    model: SamI2V,
    frame: FrameFeatures,
    frame_idx: int,
    points: Optional[torch.Tensor] = None,
    labels: Optional[torch.Tensor] = None,
    box: Optional[torch.Tensor] = None,
    previous: Optional[torch.Tensor] = None,
) -> PromptedObject:
    """Decode one object from clicks and/or a box and write its prompted memory entry.

    Args:
        frame: the frame's features, prepared without the upgrader window.
        points: (P, 2) XY in SAM's input pixels, or None; labels: (P,) 1 positive, 0 negative.
        box: (4,) XYXY in SAM's input pixels, or None.
        previous: (1, 1, 4h, 4w) the object's newest output on this frame when the prompt
            corrects it (see :func:`correction_prior`), else None.
    """
    dev = model.device
    if points is not None and points.numel() == 0:
        points, labels = None, None
    prior = correction_prior(previous, dev)
    prompts = ObjectPrompts(mask_inputs=prior)
    if points is not None:
        if labels is None:
            raise ValueError("points need labels (1 positive, 0 negative).")
        prompts.point_coords = points.to(dev, torch.float)[None]
        prompts.point_labels = labels.to(dev, torch.int)[None]
    if box is not None:
        prompts.boxes = box.to(dev, torch.float).reshape(1, 4)
    num_points = 0 if points is None else int(points.shape[0])
    multimask = use_multimask(num_points, box is not None, prior is not None)
    dec = model.decode(frame, prompts, 1, multimask=multimask)
    presence = torch.tensor([PROMPTED_PRESENCE], device=dev)
    entry = model.make_memory(frame, frame_idx, dec.low_res_logits, dec.iou, presence, prompted=True)[0]
    return PromptedObject(dec.low_res_logits, dec.iou, PROMPTED_PRESENCE, entry, dec)


def prompt_with_mask(model: SamI2V, frame: FrameFeatures, frame_idx: int, coverage: torch.Tensor) -> PromptedObject:
    """An object given by its mask: the mask is the output (nothing is decoded); an empty mask
    says the object is absent.

    Args:
        coverage: (1, 1, 4h, 4w) the fraction of each low-resolution cell the mask covers (or
            a bool mask at that resolution), in SAM's padded frame.
    """
    dev = model.device
    logits = mask_prompt_logits(coverage.to(dev))
    presence_logit = PROMPTED_PRESENCE if bool(coverage.any()) else -PROMPTED_PRESENCE
    iou = torch.ones(1)
    presence = torch.tensor([presence_logit], device=dev)
    entry = model.make_memory(frame, frame_idx, logits, iou, presence, prompted=True)[0]
    return PromptedObject(logits, iou, presence_logit, entry)
