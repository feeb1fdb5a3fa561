"""Motion-aware mask selection: each object's box motion picks among SAM's candidate masks.

Training-free, after SAMURAI (Yang et al., 2024): a constant-velocity Kalman filter follows
each object's box. On every tracked frame SAM's decoder gives four masks (its single-mask
output and its three multimask candidates, from the usual prompts and memory, in one decoder
call), and the one scoring best on

    weight * IoU(candidate's box, the filter's predicted box) + (1 - weight) * predicted IoU

is kept. The predicted box is clipped to the picture first, so an object leaving the frame is
followed while a sliver of it shows. A candidate whose box area exceeds ``max_growth`` times
the object's size (the larger of the predicted box and the largest box of its last frames) is
never taken: a mask that swells suddenly has run onto an occluder or a neighbour, as SiamRPN's
scale-change penalty assumes.

Unlike SAMURAI, the filter also decides presence: when no candidate's box overlaps the
prediction by ``min_iou`` (once the filter has seen the object twice and knows its velocity),
the object is declared lost: its output is absent, and its memory entry for the frame carries
the absent mask with presence ~0 and IoU 0, as ``track_objects`` writes for an object its
presence head calls absent. On each following frame SAM is prompted with a box of the object's
size where the filter expects it, then where it was last seen (both clipped to the picture),
and takes the first candidate that lies inside a search region around that box, is no larger
than ``max_growth`` object sizes and has a predicted IoU of at least ``reacquire_score``. The
search region grows by ``search_growth`` object sizes per lost frame (up to ``max_search``):
objects come back from behind an occluder or into the frame some way from where they went.
While lost, the predicted velocity decays by ``damping`` per frame.

On the built-in synthetic videos the gain comes from hidden frames (the object is declared
absent while it is covered or out of the frame) and from finding objects again after they
come back; a mask that slides onto an occluder as it covers the object is still followed
(``benchmarks/accuracy_breakdown.py``).

Boxes are in the decoder's low-resolution mask pixels (``model.low_res_size``), XYXY with
exclusive maxima. This module holds the filter and the geometry; the decisions above are
:class:`i2v.policies.MotionAwarePolicy`, an inference-time tracking policy (off by default:
``build_i2v_video_predictor(..., motion=True)``), so training is unchanged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from i2v.config import MotionConfig
from i2v.model import FrameFeatures, ObjectPrompts, SamI2V
from i2v.tracking_ops import logits_box

__all__ = [
    "BoxKalman",
    "Candidate",
    "MotionConfig",
    "box_area",
    "box_iou",
    "choose_candidate",
    "clip_box",
    "logits_box_array",
    "sam_candidates",
    "search_boxes",
]


def logits_box_array(logits: torch.Tensor) -> Optional[np.ndarray]:
    """:func:`i2v.tracking_ops.logits_box` of a (..., H, W) mask as a float64 numpy XYXY box
    (exclusive maxima, mask pixels), or None if empty. (``i2v.train.prompts.mask_box`` is the
    tight box of a bool mask with inclusive maxima, SAM's convention for box prompts.)"""
    box = logits_box(logits)
    return None if box is None else box.cpu().numpy().astype(np.float64)


# A re-found candidate must have this fraction of its box inside the search region.
_INSIDE = 0.8
# How many of an object's last boxes its size is taken from.
_RECENT = 8


def box_area(box: Optional[np.ndarray]) -> float:
    """Area of an XYXY box; 0 for None or an inverted box."""
    if box is None:
        return 0.0
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


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

    State (cx, cy, w, h, vx, vy, vw, vh); measurements are boxes. The noise levels are set
    for a 64 px mask side (the tiny SAM's) and scale with ``unit`` = mask side / 64 (4 for the
    official models' 256 px masks), so they mean the same fraction of the frame for any SAM.

    Args:
        box: the first XYXY box.
        damping: velocity factor per frame while the object is lost.
        unit: the decoder's mask side divided by 64.
    """

    _F = np.block([[np.eye(4), np.eye(4)], [np.zeros((4, 4)), np.eye(4)]])
    _H = np.eye(4, 8)
    _Q = np.diag([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.2, 0.2])
    _R = np.diag([2.0, 2.0, 4.0, 4.0])
    _P0 = np.diag([4.0, 4.0, 4.0, 4.0, 25.0, 25.0, 4.0, 4.0])

    def __init__(self, box: np.ndarray, damping: float = 0.8, unit: float = 1.0) -> None:
        self.x = np.concatenate([self._measure(box), np.zeros(4)])
        self.Q, self.R = self._Q * unit**2, self._R * unit**2  # variances: squared pixels
        self.P = self._P0 * unit**2
        self.damping = damping
        self.last = np.asarray(box, dtype=np.float64)  # the last box the object was seen in
        self.lost = 0  # frames since it was last seen
        self.updates = 0  # boxes seen since the filter started
        self.recent = deque([self.last], maxlen=_RECENT)  # the last boxes it was seen in

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
        self.P = self._F @ self.P @ self._F.T + self.Q
        return self.box()

    def update(self, box: np.ndarray) -> None:
        """The object was seen in ``box`` on the frame just predicted."""
        s = self._H @ self.P @ self._H.T + self.R
        gain = self.P @ self._H.T @ np.linalg.inv(s)
        self.x = self.x + gain @ (self._measure(box) - self._H @ self.x)
        self.P = (np.eye(8) - gain @ self._H) @ self.P
        self.last = np.asarray(box, dtype=np.float64)
        self.lost = 0
        self.updates += 1
        self.recent.append(self.last)

    def reference_box(self) -> np.ndarray:
        """The largest of the object's last boxes: its size before an occluder or the frame's
        edge cut into it."""
        return max(self.recent, key=box_area)

    def centre(self) -> np.ndarray:
        """The current estimate of the box centre (after :meth:`predict`: the predicted one)."""
        return self.x[:2].copy()

    @property
    def knows_velocity(self) -> bool:
        """Whether the filter has seen the object move (two boxes since it started)."""
        return self.updates >= 2

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


def sam_candidates(
    model: SamI2V, frame: FrameFeatures, prompts: ObjectPrompts, stats: Optional[torch.Tensor]
) -> List[Candidate]:
    """SAM's single-mask output and its three multimask candidates for one object, from one
    decoder call (``stats``: its (1, READOUT_STATS) read-out statistics)."""
    dec = model.decode(frame, prompts, 1, all_candidates=True, readout_stats=stats)
    presence = float(dec.presence_logits[0].detach())
    out = []
    for k in range(dec.all_low_res_logits.shape[1]):
        logits = dec.all_low_res_logits[:, k : k + 1].float()
        out.append(Candidate(logits, float(dec.all_iou[0, k].detach()), presence, logits_box_array(logits)))
    return out


def choose_candidate(
    candidates: Sequence[Candidate],
    anchor: np.ndarray,
    weight: float,
    threshold: float,
    max_area: float = float("inf"),
    region: Optional[np.ndarray] = None,
    min_score: float = float("-inf"),
) -> Optional[Candidate]:
    """The best candidate whose box overlaps ``anchor`` by at least ``threshold`` (and whose
    presence logit says present), ranked by ``weight * IoU + (1 - weight) * predicted IoU``;
    None when no candidate qualifies. Ties keep the earlier candidate.

    Also skipped: candidates whose box area exceeds ``max_area``, whose predicted IoU is below
    ``min_score``, or (with ``region`` an XYXY box) that lie less than 80 % inside ``region``.
    """
    best, best_score = None, -np.inf
    for cand in candidates:
        overlap = box_iou(cand.box, anchor)
        if cand.box is None or cand.presence <= 0 or overlap < threshold:
            continue
        if box_area(cand.box) > max_area or cand.iou < min_score:
            continue
        if region is not None:
            inside = np.concatenate([np.maximum(cand.box[:2], region[:2]), np.minimum(cand.box[2:], region[2:])])
            if box_area(inside) < _INSIDE * box_area(cand.box):
                continue
        score = weight * overlap + (1.0 - weight) * cand.iou
        if score > best_score:
            best, best_score = cand, score
    return best


def clip_box(box: np.ndarray, extent: Tuple[int, int]) -> Optional[np.ndarray]:
    """``box`` clipped to the picture (``extent`` = its (h, w) in mask pixels) and grown to at
    least 2 px a side; None when it lies outside the picture."""
    h, w = extent
    x0, x1 = np.clip([box[0], box[2]], 0, w)
    y0, y1 = np.clip([box[1], box[3]], 0, h)
    if x1 <= x0 or y1 <= y0:
        return None
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = max(x1 - x0, 2.0) / 2, max(y1 - y0, 2.0) / 2
    return np.array([max(cx - hw, 0.0), max(cy - hh, 0.0), min(cx + hw, w), min(cy + hh, h)])


def search_boxes(kf: BoxKalman, extent: Tuple[int, int], cfg: MotionConfig) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Where a lost object is looked for on the frame just predicted: (prompt box, search
    region) pairs, first around the predicted centre, then around the last-seen centre, each
    centre moved into the picture. The prompt box has the object's size
    (:meth:`BoxKalman.reference_box`), clipped to the picture; the region is that size times
    ``min(1 + search_growth * frames lost, max_search)``."""
    h, w = extent
    ref = kf.reference_box()
    rw, rh = ref[2] - ref[0], ref[3] - ref[1]
    grow = min(1.0 + cfg.search_growth * kf.lost, cfg.max_search)
    out = []
    for centre in (kf.centre(), (kf.last[:2] + kf.last[2:]) / 2):
        cx, cy = float(np.clip(centre[0], 0, w)), float(np.clip(centre[1], 0, h))
        prompt = clip_box(np.array([cx - rw / 2, cy - rh / 2, cx + rw / 2, cy + rh / 2]), extent)
        if prompt is not None:
            region = np.array([cx - grow * rw / 2, cy - grow * rh / 2, cx + grow * rw / 2, cy + grow * rh / 2])
            out.append((prompt, region))
    return out
