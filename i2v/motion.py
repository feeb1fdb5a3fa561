"""Motion-aware mask selection: each object's box motion picks among SAM's candidate masks.

Training-free, after SAMURAI (Yang et al., 2024): a constant-velocity Kalman filter follows
each object's box. On every tracked frame SAM proposes four masks (its single-mask output and
its three multimask candidates, from the usual prompts and memory), and the one scoring best on

    weight * IoU(candidate's box, the filter's predicted box) + (1 - weight) * predicted IoU

is kept, so a mask that jumps to an occluder or a look-alike loses to one that moves as the
object moved. Unlike SAMURAI, the filter also decides presence: when no candidate's box
overlaps the prediction by ``min_iou``, the object is declared lost (absent from the output
and from memory), and on each following frame SAM is prompted with a box where the filter
expects the object (its predicted box, and the last box it was seen in) until a candidate
overlaps that box by ``reacquire_iou``. While lost, the predicted velocity decays by
``damping`` per frame.

Boxes are in the decoder's low-resolution mask pixels (``model.low_res_size``), XYXY with
exclusive maxima. Off by default (``ModelConfig.motion.enabled``); an inference-time policy,
so training is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from i2v.config import MotionConfig
from i2v.memory_bank import MemoryBatch, MemoryEntry
from i2v.model import FrameFeatures, ObjectPrompts, SamI2V
from i2v.tracking_ops import PROMPTED_PRESENCE, TrackedObjects, box_from_logits

__all__ = ["BoxKalman", "Candidate", "MotionConfig", "box_iou", "choose_candidate", "mask_box",
           "track_objects_with_motion"]


def mask_box(logits: torch.Tensor) -> Optional[np.ndarray]:
    """XYXY box (exclusive maxima) around ``logits > 0`` of a (..., H, W) mask, or None if empty."""
    fg = (logits.detach().reshape(logits.shape[-2:]) > 0).cpu()
    if not bool(fg.any()):
        return None
    ys, xs = torch.nonzero(fg, as_tuple=True)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def box_iou(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> float:
    """IoU of two XYXY boxes; 0 when either is None or both are empty."""
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class BoxKalman:
    """Constant-velocity Kalman filter on a box's centre and size.

    State (cx, cy, w, h, vx, vy, vw, vh); measurements are boxes. The noise levels are in
    low-resolution mask pixels and suit any SAM (the decoder's mask is 256 px for the official
    models).

    Args:
        box: the first XYXY box.
        damping: velocity factor per frame while the object is lost.
    """

    _F = np.block([[np.eye(4), np.eye(4)], [np.zeros((4, 4)), np.eye(4)]])
    _H = np.eye(4, 8)
    _Q = np.diag([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.2, 0.2])
    _R = np.diag([2.0, 2.0, 4.0, 4.0])

    def __init__(self, box: np.ndarray, damping: float = 0.8) -> None:
        self.x = np.concatenate([self._measure(box), np.zeros(4)])
        self.P = np.diag([4.0, 4.0, 4.0, 4.0, 25.0, 25.0, 4.0, 4.0])
        self.damping = damping
        self.last = np.asarray(box, dtype=np.float64)  # the last box the object was seen in
        self.lost = 0  # frames since it was last seen

    @staticmethod
    def _measure(box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in box)
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])

    def box(self) -> np.ndarray:
        """The current estimate as an XYXY box (sides at least one pixel)."""
        cx, cy = self.x[:2]
        w, h = max(self.x[2], 1.0), max(self.x[3], 1.0)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def predict(self) -> np.ndarray:
        """Advance one frame; returns the predicted box."""
        if self.lost:
            self.x[4:] *= self.damping
        self.x = self._F @ self.x
        self.P = self._F @ self.P @ self._F.T + self._Q
        return self.box()

    def update(self, box: np.ndarray) -> None:
        """The object was seen in ``box`` on the frame just predicted."""
        s = self._H @ self.P @ self._H.T + self._R
        gain = self.P @ self._H.T @ np.linalg.inv(s)
        self.x = self.x + gain @ (self._measure(box) - self._H @ self.x)
        self.P = (np.eye(8) - gain @ self._H) @ self.P
        self.last = np.asarray(box, dtype=np.float64)
        self.lost = 0

    def mark_lost(self) -> None:
        """The object was not found on the frame just predicted."""
        self.lost += 1


@dataclass
class Candidate:
    """One of SAM's masks for one object.

    Attributes:
        logits: (1, 1, 4h, 4w) mask logits; iou: predicted IoU; presence: presence logit.
        box: its XYXY box in low-resolution pixels (None when empty).
    """

    logits: torch.Tensor
    iou: float
    presence: float
    box: Optional[np.ndarray]


def _candidates(model: SamI2V, frame: FrameFeatures, prompts: ObjectPrompts, memory: MemoryBatch) -> List[Candidate]:
    """SAM's single-mask output and its three multimask candidates for one object."""
    out = []
    for multimask in (False, True):
        dec = model.decode(frame, prompts, memory, 1, multimask=multimask)
        for k in range(dec.all_low_res_logits.shape[1]):
            logits = dec.all_low_res_logits[:, k : k + 1]
            out.append(Candidate(logits, float(dec.all_iou[0, k].detach()), float(dec.presence_logits[0].detach()), mask_box(logits)))
    return out


def choose_candidate(candidates: Sequence[Candidate], anchor: np.ndarray, weight: float, threshold: float) -> Optional[Candidate]:
    """The best candidate whose box overlaps ``anchor`` by at least ``threshold`` (and whose
    presence logit says present), ranked by ``weight * IoU + (1 - weight) * predicted IoU``;
    None when no candidate qualifies. Ties keep the earlier candidate."""
    best, best_score = None, -np.inf
    for cand in candidates:
        overlap = box_iou(cand.box, anchor)
        if cand.box is None or cand.presence <= 0 or overlap < threshold:
            continue
        score = weight * overlap + (1.0 - weight) * cand.iou
        if score > best_score:
            best, best_score = cand, score
    return best


def _box_prompt(box: np.ndarray, model: SamI2V) -> Optional[torch.Tensor]:
    """A low-resolution XYXY box → (1, 4) SAM box prompt, or None if it is (nearly) off-frame."""
    size = model.low_res_size
    x0, x1 = np.clip([box[0], box[2]], 0, size[1])
    y0, y1 = np.clip([box[1], box[3]], 0, size[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    scale = model.image_size / size[1]
    return torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32, device=model.device) * scale


def track_objects_with_motion(
    model: SamI2V,
    frame: FrameFeatures,
    frame_idx: int,
    priors: Sequence[Optional[torch.Tensor]],
    memories: Sequence[Sequence[MemoryEntry]],
    filters: List[Optional[BoxKalman]],
) -> TrackedObjects:
    """:func:`i2v.tracking_ops.track_objects` with motion-aware selection.

    Args:
        priors, memories: as for ``track_objects``.
        filters: per object, its :class:`BoxKalman`, or None when it has none yet (then the
            candidate with the highest predicted IoU is kept and a filter is started from it);
            updated in place.
    """
    cfg = model.config.motion
    mp = model.config.memory_prompt
    absent = torch.full((1, 1, *model.low_res_size), model.config.absent_logit, device=model.device)
    logits, raw, ious, presence = [], [], [], []
    for i, prior in enumerate(priors):
        kf = filters[i]
        memory = MemoryBatch.stack([memories[i]], model.device)
        chosen: Optional[Candidate] = None
        if kf is None or not kf.lost:
            anchor = kf.predict() if kf is not None else None
            prompts = ObjectPrompts()
            if mp.mask_prior and prior is not None:
                prompts.mask_inputs = prior.to(model.device)
                if mp.box_prior:
                    prompts.boxes = box_from_logits(prompts.mask_inputs, model.image_size)
            cands = _candidates(model, frame, prompts, memory)
            if anchor is None:
                chosen = choose_candidate(cands, np.zeros(4), 0.0, 0.0)
            else:
                chosen = choose_candidate(cands, anchor, cfg.weight, cfg.min_iou)
        else:  # lost: look where the motion says, then where it was last seen
            predicted = kf.predict()
            for anchor in (predicted, kf.last):
                box = _box_prompt(anchor, model)
                if box is None:
                    continue
                cand = choose_candidate(_candidates(model, frame, ObjectPrompts(boxes=box), memory), anchor,
                                        cfg.weight, cfg.reacquire_iou)
                if cand is not None:
                    chosen = cand
                    break
        if chosen is None:
            if kf is not None:
                kf.mark_lost()
            logits.append(absent)
            raw.append(absent)
            ious.append(0.0)
            presence.append(-PROMPTED_PRESENCE)
            continue
        if kf is None:
            filters[i] = BoxKalman(chosen.box, cfg.damping)  # type: ignore[arg-type]
        else:
            kf.update(chosen.box)  # type: ignore[arg-type]
        logits.append(chosen.logits)
        raw.append(chosen.logits)
        ious.append(chosen.iou)
        presence.append(chosen.presence)
    out = torch.cat(logits)
    iou = torch.tensor(ious, device=model.device)
    presence_logits = torch.tensor(presence, device=model.device)
    entries = model.make_memory(frame, frame_idx, out, iou, presence_logits, prompted=False)
    return TrackedObjects(out, torch.cat(raw), out.clone(), iou[:, None], iou, presence_logits, entries)
