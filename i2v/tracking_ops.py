"""Per-frame tracking steps shared by the video predictor and training.

Inference (:mod:`i2v.video_predictor`) and training (:mod:`i2v.train.clip_step`) run a frame
through these same functions, so what the model is trained on is what it is asked at
inference: the same mask-prompt encoding, the same multimask rule, the same grouping of objects
by mask prior, the same presence gating of outputs and memory. How the objects of a frame are
tracked at inference is a tracking policy (:mod:`i2v.policies`): the default one runs
:func:`track_objects` as training does; motion-aware selection re-ranks the same decoder's
candidates and leaves what is trained untouched. What a prompt does to an object is
:mod:`i2v.prompting`, also shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange

from i2v.adapters.memory_prompt import MemoryPrompts, object_appearance, readout_prompts
from i2v.memory_bank import MemoryEntry, gather_memory
from i2v.model import FrameFeatures, ObjectPrompts, SamI2V, no_readout_stats, readout_stats

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


def logits_box(logits: torch.Tensor) -> Optional[torch.Tensor]:
    """The box around ``logits > 0`` of one mask, in the mask's own pixels.

    Args:
        logits: (..., H, W) one mask's logits (leading dimensions of size 1).
    Returns:
        (4,) float32 XYXY with exclusive maxima, on the mask's device; None when the mask is empty.
    """
    fg = logits.detach().reshape(logits.shape[-2:]) > 0
    if not bool(fg.any()):
        return None
    ys, xs = torch.nonzero(fg, as_tuple=True)
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


def prior_box(low_res_logits: torch.Tensor, image_size: int) -> Optional[torch.Tensor]:
    """The box prompt that goes with a mask prior: :func:`logits_box` of a (1, 1, 4h, 4w) mask,
    scaled to SAM's input pixels (side ``image_size``). Returns (1, 4) XYXY, or None when empty."""
    box = logits_box(low_res_logits)
    if box is None:
        return None
    return (box * (image_size / low_res_logits.shape[-1]))[None]


def use_multimask(num_points: int, has_box: bool, has_prior: bool) -> bool:
    """SAM's rule: a lone click with nothing else is ambiguous, so predict 3 candidates."""
    return num_points == 1 and not has_box and not has_prior


@dataclass
class PlannedPrompts:
    """How N tracked objects are prompted on one frame (:func:`plan_prompts`).

    Attributes:
        prompts: per object, its SAM prompts (tensors with a leading dimension of 1), or None
            when memory finds it nowhere (it is absent: nothing is decoded).
        sources: per object, "prior" (its previous mask and box), "memory" (memory's prompts)
            or "none" (neither: SAM decodes with no prompt).
        stats: (N, READOUT_STATS) what memory says of each object (for the presence head).
        readout_logits: (N, 1, 4h, 4w) logit of each object's read-out at the decoder's
            resolution (an object without memory: zeros), for the read-out's auxiliary loss.
        has_readout: (N,) bool, the object read memory.
        prototypes: (N, C) each object's remembered appearance (from its prompted entries, or
            from all it reads when none is prompted; zeros without memory).
    """

    prompts: List[Optional[ObjectPrompts]]
    sources: List[str]
    stats: torch.Tensor
    readout_logits: torch.Tensor
    has_readout: torch.Tensor
    prototypes: Optional[torch.Tensor]


def _object_prompts(mp: MemoryPrompts, row: int) -> ObjectPrompts:
    """Object ``row``'s memory prompts, with a leading dimension of 1."""

    def one(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else t[row : row + 1]

    return ObjectPrompts(one(mp.point_coords), one(mp.point_labels), one(mp.boxes), one(mp.mask_inputs))


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) bool, (N, M) bool → (N,) IoU, 0 when both are empty."""
    inter = (a & b).sum(dim=1).float()
    union = (a | b).sum(dim=1).float()
    return inter / union.clamp(min=1.0)


def plan_prompts(
    model: SamI2V,
    frame: FrameFeatures,
    frame_idx: int,
    priors: Sequence[Optional[torch.Tensor]],
    memories: Sequence[Sequence[MemoryEntry]],
    box_prior: bool = True,
) -> PlannedPrompts:
    """Read N objects' memory on one frame and decide how each is prompted.

    An object keeps its previous output as the prompt (mask + its box, as per-frame SAM does)
    while memory agrees with it (IoU of the two at the read-out grid at least
    ``memory_prompt.agreement``). Without a previous output, or when the two disagree (the mask
    has drifted, or the object came back elsewhere), memory's own prompts are used: a soft box
    around the read-out, a click at its peak and the read-out as mask prompt. Memory that finds
    the object nowhere (its read-out peaks below ``memory_prompt.absent_below``) means absent,
    whatever the prior says.

    Args:
        priors: per object, (1, 1, 4h, 4w) logits of its latest output, or None (no output
            yet, the object was absent there, or the policy gives no mask prior).
        memories: per object, the entries it reads (``MemoryBank.select``).
        box_prior: give SAM the prior's box with the prior (what SAM needs to use a mask prompt).
    """
    cfg = model.config.memory_prompt
    n, dev, size = len(priors), model.device, model.low_res_size
    priors = [p.to(dev) if p is not None else None for p in priors]
    stats = no_readout_stats(n, dev)
    readout_logits = torch.zeros(n, 1, *size, device=dev)
    has_readout = torch.zeros(n, dtype=torch.bool, device=dev)
    mp: Optional[MemoryPrompts] = None
    row_of: Dict[int, int] = {}  # object -> its row in the read-out
    found: List[bool] = []
    use_memory: List[bool] = []
    with_memory = [i for i in range(n) if memories[i]]
    if with_memory:
        memory = gather_memory(
            [memories[i] for i in with_memory], frame_idx, model.config.memory_readout.short_term, dev
        )
        readout = model.read_memory(frame, memory)
        found_grid = rearrange(readout.prob > cfg.threshold, "n 1 h w -> n (h w)")
        prior_grid = torch.zeros_like(found_grid)
        for row, i in enumerate(with_memory):
            row_of[i] = row
            prior = priors[i]
            if prior is not None:
                prior_grid[row] = model.memory_readout.pool_masks(prior.detach())[0] > 0.5
        agreement = _mask_iou(found_grid, prior_grid)
        prob = F.interpolate(readout.prob, size=size, mode="bilinear", align_corners=False)
        mp = readout_prompts(
            prob,
            cfg.threshold,
            cfg.absent_below,
            model.image_size,
            cfg.click,
            grid_prob=readout.prob,
            focus=cfg.focus,
            negative_click=cfg.negative_click,
        )
        stats[with_memory] = readout_stats(readout, agreement)
        readout_logits[with_memory] = torch.logit(prob.clamp(1e-4, 1 - 1e-4))
        has_readout[with_memory] = True
        found = mp.found.detach().cpu().tolist()
        agree = agreement.detach().cpu().tolist()
        use_memory = [priors[i] is None or agree[row] < cfg.agreement for row, i in enumerate(with_memory)]
    prompts: List[Optional[ObjectPrompts]] = []
    sources: List[str] = []
    for i, prior in enumerate(priors):
        slot = row_of.get(i)  # its row in the read-out, if it read memory
        if mp is not None and slot is not None and not found[slot]:  # memory finds it nowhere: absent
            sources.append("memory")
            prompts.append(None)
        elif mp is not None and slot is not None and use_memory[slot]:
            sources.append("memory")
            prompts.append(_object_prompts(mp, slot))
        elif prior is not None:
            sources.append("prior")
            box = prior_box(prior, model.image_size) if box_prior else None
            prompts.append(ObjectPrompts(boxes=box, mask_inputs=prior))
        else:
            sources.append("none")
            prompts.append(ObjectPrompts())
    prototypes = _prototypes(memories, frame, dev) if model.presence_head.gate_on else None
    return PlannedPrompts(prompts, sources, stats, readout_logits, has_readout, prototypes)


def _prototypes(memories: Sequence[Sequence[MemoryEntry]], frame: FrameFeatures, device: torch.device) -> torch.Tensor:
    """(N, C) each object's remembered appearance (see :class:`PlannedPrompts`)."""
    out = torch.zeros(len(memories), frame.keys.shape[-1], device=device)
    for i, entries in enumerate(memories):
        chosen = [e for e in entries if e.prompted] or list(entries)
        if chosen:
            keys = torch.stack([e.keys.to(device).float() for e in chosen])
            values = torch.stack([e.values.to(device).float().detach() for e in chosen])
            out[i] = object_appearance(keys, values)
    return out


def _structure(p: ObjectPrompts) -> Tuple[bool, bool, bool]:
    return (p.point_coords is not None, p.boxes is not None, p.mask_inputs is not None)


def batch_prompts(prompts: Sequence[ObjectPrompts]) -> ObjectPrompts:
    """Concatenate the prompts of objects that share one structure (SAM's prompt encoder
    cannot mix structures in one batch)."""

    def cat(name: str) -> Optional[torch.Tensor]:
        parts = [getattr(p, name) for p in prompts]
        return None if parts[0] is None else torch.cat(parts)

    return ObjectPrompts(cat("point_coords"), cat("point_labels"), cat("boxes"), cat("mask_inputs"))


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
        plan: how each object was prompted, and its memory read-out.
        decoded: (N,) bool, the object went through the decoder (False: memory found it
            nowhere and its output is the constant "absent").
    """

    logits: torch.Tensor
    raw_logits: torch.Tensor
    all_logits: torch.Tensor
    all_iou: torch.Tensor
    iou: torch.Tensor
    presence_logits: torch.Tensor
    entries: List[MemoryEntry]
    plan: PlannedPrompts
    decoded: torch.Tensor


def track_objects(
    model: SamI2V,
    frame: FrameFeatures,
    frame_idx: int,
    priors: Sequence[Optional[torch.Tensor]],
    memories: Sequence[Sequence[MemoryEntry]],
    box_prior: bool = True,
) -> TrackedObjects:
    """Segment N tracked objects on one frame and encode their new memory.

    Prompts come from :func:`plan_prompts`; objects are decoded in one batch per prompt
    structure. An object memory finds nowhere is absent without decoding.

    Args:
        frame: the frame's features (upgraded with the pass's window).
        frame_idx: its index (recorded in the memory entries).
        priors: per object, (1, 1, 4h, 4w) logits of its latest output, or None (no output
            yet, or the object was absent there).
        memories: per object, the entries it reads (``MemoryBank.select``).
        box_prior: see :func:`plan_prompts`.
    """
    plan = plan_prompts(model, frame, frame_idx, priors, memories, box_prior)
    n, dev, size = len(priors), model.device, model.low_res_size
    absent = model.config.absent_logit
    raw = torch.full((n, 1, *size), absent, device=dev)
    iou = torch.zeros(n, device=dev)
    presence = torch.full((n,), -PROMPTED_PRESENCE, device=dev)
    groups: Dict[Tuple[bool, bool, bool], List[int]] = {}
    for i, p in enumerate(plan.prompts):
        if p is not None:
            groups.setdefault(_structure(p), []).append(i)
    for idx in groups.values():
        group = [p for p in (plan.prompts[i] for i in idx) if p is not None]
        out = model.decode(
            frame,
            batch_prompts(group),
            len(idx),
            readout_stats=plan.stats[idx],
            prototypes=None if plan.prototypes is None else plan.prototypes[idx],
        )
        raw = raw.index_copy(0, torch.tensor(idx, device=dev), out.low_res_logits.to(raw.dtype))
        iou = iou.index_copy(0, torch.tensor(idx, device=dev), out.iou.to(iou.dtype))
        presence = presence.index_copy(0, torch.tensor(idx, device=dev), out.presence_logits.to(presence.dtype))
    present = presence > 0
    logits = torch.where(present[:, None, None, None], raw, torch.full_like(raw, absent))
    entries = model.make_memory(frame, frame_idx, logits, iou, presence, prompted=False)
    decoded = torch.tensor([p is not None for p in plan.prompts], device=dev)
    return TrackedObjects(logits, raw, raw, iou[:, None], iou, presence, entries, plan, decoded)
