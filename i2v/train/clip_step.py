"""The training forward over one clip, built from the same model steps as inference.

A clip is played the way a user drives :class:`~i2v.video_predictor.I2VVideoPredictor`:

1. conditioning frames (frame 0, sometimes one more) are prompted first, each object with
   clicks, a box or its mask, by the functions ``add_new_points_or_box`` / ``add_new_mask``
   call (:mod:`i2v.prompting`): the frame is prepared without the upgrader window, the user's
   prompts alone decide, a lone click gets multimask output, and a prompted memory entry is
   written (so, as after prompting two frames in the predictor, frames between them read the
   later one's memory);
2. then every frame is visited in order, as ``propagate_in_video`` does: the upgrader reads
   the previous frames' pooled tokens (:class:`~i2v.pass_history.PassHistory`), each object
   selects its memory from its :class:`~i2v.memory_bank.MemoryBank`, its previous output is
   the mask prior, and all objects are decoded and remembered by the predictor's default
   tracking policy (:class:`i2v.policies.DefaultPolicy`, i.e.
   :func:`i2v.tracking_ops.track_objects`). Memory is given a
   job: some priors are withheld (``PromptSimConfig.prior_dropout``, and always after the
   object was hidden), so memory's own prompts must find the object, and the read-out gets
   an auxiliary loss of its own;
3. sometimes, right after a frame is tracked, objects are corrected with clicks sampled from
   their errors, as a user would with ``add_new_points_or_box`` on a propagated frame (the
   tracked mask, clamped to +-32 as the predictor does, is the prior; the corrected output
   replaces the frame's memory entry).

Gradients: memory entries keep their graph within the clip, so later frames' losses train the
memory read-out through what earlier frames wrote (back-propagation through time over T
frames). Mask priors are detached, as SAM and SAM 2 detach previous mask logits fed back as
prompts: a prior is the model's own hard decision passed through SAM's frozen mask-input path,
and a gradient chain through T decoder calls along it adds instability but no learning signal
the memory path does not already carry. Detaching also makes a corrective prior at training
time the same kind of input as at inference.

``clip_loss`` never runs the image encoder: the caller passes the frozen encoder's outputs
(from a feature cache or ``model.encode_images``), so cached and uncached training compute
the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from i2v.memory_bank import MemoryBank
from i2v.model import FrameFeatures, SamI2V
from i2v.pass_history import PassHistory
from i2v.policies import DefaultPolicy, ObjectInput
from i2v.prompting import PromptedObject, prompt_with_mask, prompt_with_points
from i2v.tracking_ops import PROMPTED_PRESENCE, mask_to_low_res
from i2v.train.losses import LossWeights, PairLosses, pair_losses, reduce_losses
from i2v.train.prompts import PromptSimConfig, SimulatedPrompt, sample_box, sample_corrective_click, sample_points

Seed = Union[np.random.Generator, int, None]


@dataclass
class PreparedClip:
    """A clip in the model's frames.

    Attributes:
        images: (T, 3, S, S) SAM-preprocessed inputs (normalised, padded), on the model's device.
        gt: (T, N, 4h, 4w) bool masks in SAM's padded frame at the decoder's resolution.
        presence: (T, N) bool, the object has a pixel in ``gt``.
        input_size: (h', w') frame size after SAM's resize (for ``sam.postprocess_masks``).
        original_size: (H, W) of the clip's frames.
    """

    images: torch.Tensor
    gt: torch.Tensor
    presence: torch.Tensor
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]


@dataclass
class ClipLossOutput:
    """Loss of one clip and what the model predicted on it.

    Attributes:
        total: scalar weighted loss, with graph.
        terms: detached scalar terms ("focal", "dice", "iou", "presence", "readout", "total").
        low_res_logits: (T, N, 1, 4h, 4w) detached output masks, as the predictor would return
            them (prompted outputs on conditioning / corrected frames, presence-gated tracked
            outputs elsewhere).
        presence_logits: (T, N) detached presence logits of those outputs.
        cond_frames: the conditioning frames; correction_frames: frames that got corrective
            clicks (sorted).
        prompts: every prompt the simulated user gave, in the order given, in the pixel frame
            of ``gt``.
        num_supervised: number of supervised (decode, object) pairs.
    """

    total: torch.Tensor
    terms: Dict[str, float]
    low_res_logits: torch.Tensor
    presence_logits: torch.Tensor
    cond_frames: List[int]
    correction_frames: List[int]
    prompts: List[SimulatedPrompt]
    num_supervised: int


@dataclass
class _Output:
    """An object's latest output: what the next frame takes as its mask prior."""

    logits: torch.Tensor  # (1, 1, 4h, 4w)
    presence: float

    def prior(self) -> Optional[torch.Tensor]:
        return self.logits.detach() if self.presence > 0 else None


@dataclass
class _Recorder:
    """Collects pair losses, prompts and the (T, N) outputs of a clip."""

    logits: torch.Tensor
    presence: torch.Tensor
    parts: List[PairLosses] = field(default_factory=list)
    prompts: List[SimulatedPrompt] = field(default_factory=list)

    def set(self, t: int, n: int, out: _Output) -> None:
        self.logits[t, n] = out.logits[0].detach()
        self.presence[t, n] = out.presence


def prepare_clip(model: SamI2V, frames: torch.Tensor, masks: torch.Tensor) -> PreparedClip:
    """Bring a training clip into the model's frames with SAM's own preprocessing.

    Args:
        frames: (T, 3, H, W) uint8 RGB.
        masks: (T, N, H, W) bool.
    Returns:
        the clip's encoder inputs and its ground truth at the decoder's resolution: each mask
        is resized and padded as its frame is, averaged over each low-resolution cell and
        thresholded at half coverage.
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or masks.ndim != 4 or masks.shape[0] != frames.shape[0]:
        raise ValueError(
            f"expected frames (T, 3, H, W) and masks (T, N, H, W); got {tuple(frames.shape)} and {tuple(masks.shape)}."
        )
    if masks.shape[-2:] != frames.shape[-2:]:
        raise ValueError(f"masks {tuple(masks.shape[-2:])} and frames {tuple(frames.shape[-2:])} differ in size.")
    t, n, h, w = masks.shape
    images, input_size = [], (0, 0)
    for image in frames.permute(0, 2, 3, 1).cpu().numpy():
        x, input_size = model.preprocess(np.ascontiguousarray(image))
        images.append(x)
    gt = torch.zeros(t, n, *model.low_res_size, dtype=torch.bool, device=model.device)
    if t * n:
        frac = mask_to_low_res(
            masks.reshape(t * n, h, w).to(model.device), input_size, model.image_size, model.low_res_size
        )
        gt = (frac[:, 0] > 0.5).reshape(t, n, *model.low_res_size)
    return PreparedClip(torch.cat(images), gt, gt.flatten(2).any(dim=2), input_size, (h, w))


def _plan(annotated: Sequence[bool], sim: PromptSimConfig, rng: np.random.Generator) -> Tuple[List[int], List[int]]:
    """(conditioning frames, correction frames) of a clip, both sorted."""
    later = [t for t in range(1, len(annotated)) if annotated[t]]
    cond = [0]
    if later and rng.random() < sim.second_cond_prob:
        cond.append(int(rng.choice(later)))
    free = [t for t in later if t not in cond]
    corrections: List[int] = []
    if free and sim.max_correction_frames > 0 and rng.random() < sim.correction_prob:
        k = int(rng.integers(1, min(sim.max_correction_frames, len(free)) + 1))
        corrections = sorted(int(t) for t in rng.choice(free, size=k, replace=False))
    return cond, corrections


def _withheld(present: torch.Tensor, t: int, sim: PromptSimConfig, rng: np.random.Generator) -> List[bool]:
    """Per object, whether its prior is withheld on tracked frame ``t``: at random with
    ``sim.prior_dropout``, and always when the object was hidden on frame ``t - 1``.

    Args:
        present: (T, N) bool, the object is in the ground truth.
    """
    draws = rng.random(present.shape[1]) < sim.prior_dropout
    after_gap = ~present[t - 1] if t > 0 else torch.zeros(present.shape[1], dtype=torch.bool)
    return [bool(d) or bool(g) for d, g in zip(draws, after_gap.tolist())]


def _clicks(
    model: SamI2V,
    frame: FrameFeatures,
    frame_idx: int,
    coords: torch.Tensor,
    labels: torch.Tensor,
    box: Optional[torch.Tensor],
    previous: Optional[torch.Tensor],
) -> PromptedObject:
    """One object prompted with clicks / a box given in the decoder's low-resolution pixels
    (mapped to SAM's input pixels), as ``add_new_points_or_box`` prompts it."""
    scale = model.image_size / model.low_res_size[1]
    points = coords.to(model.device, torch.float) * scale if coords.numel() else None
    box_in = box.to(model.device, torch.float) * scale if box is not None else None
    return prompt_with_points(model, frame, frame_idx, points, labels, box_in, previous)


def _prompt_frame(
    model: SamI2V,
    frame: FrameFeatures,
    c: int,
    gt: torch.Tensor,
    banks: List[MemoryBank],
    sim: PromptSimConfig,
    weights: LossWeights,
    rng: np.random.Generator,
    rec: _Recorder,
) -> List[_Output]:
    """Prompt every object on conditioning frame ``c``; gt: (N, 4h, 4w) bool on the device."""
    gt_cpu = gt.cpu()
    outputs = []
    for n, bank in enumerate(banks):
        kind = sim.sample_kind(rng)
        if kind == "box" and not bool(gt_cpu[n].any()):
            kind = "points"  # no box around an absent object: a negative click says "not here"
        if kind == "mask":  # add_new_mask: the mask is the output; nothing to decode
            rec.prompts.append(SimulatedPrompt(c, n, kind))
            done = prompt_with_mask(model, frame, c, gt[n][None, None])
        else:
            if kind == "points":
                coords, labels = sample_points(gt_cpu[n], int(rng.integers(1, sim.max_points + 1)), rng)
                box = None
            else:
                coords, labels, box = (
                    torch.zeros(0, 2),
                    torch.zeros(0, dtype=torch.long),
                    sample_box(gt_cpu[n], sim.box_noise, rng),
                )
            rec.prompts.append(
                SimulatedPrompt(c, n, kind, coords if box is None else None, labels if box is None else None, box)
            )
            done = _clicks(model, frame, c, coords, labels, box, None)
            _supervise(rec, done, gt[n : n + 1], weights)
        bank.add(done.entry)
        out = _Output(done.logits, done.presence_logit)
        rec.set(c, n, out)
        outputs.append(out)
    return outputs


def _supervise(rec: _Recorder, done: PromptedObject, gt: torch.Tensor, weights: LossWeights) -> None:
    """The loss of a decoded prompt against ``gt`` (1, 4h, 4w), over every candidate."""
    dec = done.decoded
    assert dec is not None  # clicks and boxes are decoded
    rec.parts.append(pair_losses(dec.all_low_res_logits, dec.all_iou, dec.presence_logits, gt, weights))


def _correct_frame(
    model: SamI2V,
    raw: torch.Tensor,
    k: int,
    gt: torch.Tensor,
    banks: List[MemoryBank],
    last: List[_Output],
    sim: PromptSimConfig,
    weights: LossWeights,
    rng: np.random.Generator,
    rec: _Recorder,
) -> None:
    """Corrective clicks on tracked frame ``k`` for every object with an error."""
    frame = model.prepare_frame(raw, None)  # the predictor prepares prompted frames this way
    gt_cpu = gt.cpu()
    for n, bank in enumerate(banks):
        coords: List[torch.Tensor] = []
        labels: List[int] = []
        current = last[n].logits
        done = None
        for _ in range(sim.correction_clicks):
            click = sample_corrective_click(current[0, 0].detach().cpu() > 0, gt_cpu[n], rng, sim.click_jitter)
            if click is None:
                break
            coords.append(click[0])
            labels.append(click[1])
            # a correction of what is there: the frame's newest output is the prior, as in the predictor
            done = _clicks(model, frame, k, torch.stack(coords), torch.tensor(labels), None, current)
            _supervise(rec, done, gt[n : n + 1], weights)
            current = done.logits
        if done is None:
            continue
        rec.prompts.append(SimulatedPrompt(k, n, "correction", torch.stack(coords), torch.tensor(labels)))
        bank.add(done.entry)
        last[n] = _Output(done.logits, done.presence_logit)
        rec.set(k, n, last[n])


def clip_loss(
    model: SamI2V,
    embeddings: torch.Tensor,
    gt: torch.Tensor,
    annotated: torch.Tensor,
    sim: PromptSimConfig,
    weights: LossWeights,
    generator: Seed,
) -> ClipLossOutput:
    """Simulate prompting and tracking on one clip and return its loss.

    Args:
        model: the upgraded SAM (adapters in train mode for training).
        embeddings: (T, C, h, w) frozen image-encoder outputs of the clip's frames.
        gt: (T, N, 4h, 4w) bool ground truth from :func:`prepare_clip`; every object must be
            on frame 0's ground truth for a prompt to make sense (a missing one gets a
            negative click or an empty mask).
        annotated: (T,) bool; frames without ground truth are tracked but not supervised,
            and are never conditioning or correction frames. Frame 0 must be annotated.
        sim: the simulated user.
        weights: loss weights.
        generator: an ``np.random.Generator`` or a seed; all of the clip's random choices
            come from it.
    """
    t_len, n_obj = gt.shape[:2]
    if embeddings.shape[0] != t_len or annotated.shape != (t_len,):
        raise ValueError(
            f"embeddings {tuple(embeddings.shape)}, gt {tuple(gt.shape)} and annotated {tuple(annotated.shape)} disagree on T."
        )
    if tuple(gt.shape[-2:]) != model.low_res_size:
        raise ValueError(
            f"gt must be at the decoder's resolution {model.low_res_size} (use prepare_clip); got {tuple(gt.shape[-2:])}."
        )
    ann = [bool(a) for a in annotated.tolist()]
    if n_obj == 0 or not ann[0]:
        raise ValueError("clip_loss needs at least one object and an annotated frame 0 to prompt on.")
    rng = np.random.default_rng(generator)
    cfg = model.config
    raw_all = embeddings.to(model.device, model.sam.pixel_mean.dtype)
    gt = gt.to(model.device).bool()
    rec = _Recorder(
        logits=torch.full((t_len, n_obj, 1, *model.low_res_size), cfg.absent_logit, device=model.device),
        presence=torch.full((t_len, n_obj), -PROMPTED_PRESENCE, device=model.device),
    )
    cond_frames, correction_frames = _plan(ann, sim, rng)
    policy = DefaultPolicy.for_config(cfg)  # the predictor's default policy tracks every frame
    banks = [MemoryBank(cfg.memory.bank_size, cfg.memory.filter) for _ in range(n_obj)]

    prompted: Dict[int, Tuple[FrameFeatures, List[_Output]]] = {}
    for c in cond_frames:
        frame = model.prepare_frame(raw_all[c : c + 1], None)
        prompted[c] = (frame, _prompt_frame(model, frame, c, gt[c], banks, sim, weights, rng, rec))

    gt_present = gt.flatten(2).any(dim=2).cpu()  # (T, N)
    history = PassHistory(cfg.upgrader.window, direction=1)
    last: List[_Output] = []
    for t in range(t_len):
        raw = raw_all[t : t + 1]
        if t in prompted:  # the prompted outputs stand; the frame still feeds the window
            frame, last = prompted[t][0], list(prompted[t][1])
            history.push(t, frame.pooled)
            continue
        frame = model.prepare_frame(raw, history.past(t))
        history.push(t, frame.pooled)
        priors = [None if withhold else o.prior() for o, withhold in zip(last, _withheld(gt_present, t, sim, rng))]
        objects = [ObjectInput(prior, bank.select(t, frame.descriptor)) for prior, bank in zip(priors, banks)]
        out = policy.track(model, frame, t, objects).tracked
        if ann[t]:
            rec.parts.append(
                pair_losses(
                    out.all_logits,
                    out.all_iou,
                    out.presence_logits,
                    gt[t],
                    weights,
                    readout_logits=out.plan.readout_logits,
                    has_readout=out.plan.has_readout,
                    decoded=out.decoded,
                )
            )
        presence = out.presence_logits.detach().float().cpu().tolist()
        for n, bank in enumerate(banks):
            bank.add(out.entries[n])
            last[n] = _Output(out.logits[n : n + 1], presence[n])
            rec.set(t, n, last[n])
        if t in correction_frames:
            _correct_frame(model, raw, t, gt[t], banks, last, sim, weights, rng, rec)

    if rec.parts:
        terms = reduce_losses(rec.parts, weights)
    else:  # nothing was decoded (one frame, mask prompts): a zero that still has a graph
        zero = torch.stack([p.sum() for p in model.trainable_parameters()]).sum() * 0.0
        terms = {name: zero for name in ("focal", "dice", "iou", "presence", "readout", "total")}
    return ClipLossOutput(
        total=terms["total"],
        terms={k: float(v.detach()) for k, v in terms.items()},
        low_res_logits=rec.logits,
        presence_logits=rec.presence,
        cond_frames=cond_frames,
        correction_frames=correction_frames,
        prompts=rec.prompts,
        num_supervised=int(sum(int(p.supervised.sum()) for p in rec.parts)),
    )
