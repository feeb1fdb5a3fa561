"""Simulated interaction for training, as SAM and SAM 2 train: the user's prompts are drawn
from the ground truth, and corrective clicks from the model's own errors.

All functions work in the pixel frame of the masks they are given (training passes masks at
the decoder's low resolution) and draw every random number from one ``np.random.Generator``
(or a seed), so a clip's prompts are a function of the seed alone. Points are XY pixel
indices, as SAM takes them (its prompt encoder adds the half-pixel shift itself); boxes are
XYXY with inclusive maxima, as ``segment_anything.utils.amg.batched_mask_to_box`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Tuple, Union

import numpy as np
import torch
from scipy import ndimage

Seed = Union[np.random.Generator, int, None]
PromptKind = Literal["points", "box", "mask", "correction"]
PROMPT_KINDS: Tuple[PromptKind, ...] = ("points", "box", "mask")


@dataclass
class SimulatedPrompt:
    """What the simulated user gave one object on one frame (in the masks' pixel frame).

    Attributes:
        frame_idx: the frame; obj_index: the object's slot in the clip.
        kind: "points", "box", "mask" (the ground truth itself) or "correction" (clicks on a
            tracked frame, added to the tracked mask).
        points: (P, 2) float XY and labels (P,) int64 (1 positive, 0 negative), or None.
        box: (4,) float XYXY, or None.
    """

    frame_idx: int
    obj_index: int
    kind: PromptKind
    points: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    box: Optional[torch.Tensor] = None


@dataclass
class PromptSimConfig:
    """How simulated users prompt a training clip.

    Attributes:
        point_prob: chance that an object's prompt on a conditioning frame is clicks.
        box_prob: chance that it is a box.
        mask_prob: chance that it is the ground-truth mask itself. The three must sum to 1.
        max_points: clicks of a point prompt, drawn uniformly in [1, max_points]; a single
            click is decoded with multimask output, as SAM resolves ambiguity.
        second_cond_prob: chance of a second conditioning frame (frame 0 always is one), drawn
            among the clip's other annotated frames.
        box_noise: each box side is moved by Gaussian noise with this standard deviation, as a
            fraction of the box's width (x) or height (y), truncated at two deviations.
        correction_prob: chance that a clip gets a corrective-click frame: after tracking a
            random annotated frame, every object with an error is re-decoded with a click
            taken from that error, its tracked mask as prior (the predictor's correction path).
        max_correction_frames: the most frames of a clip that get corrections.
        correction_clicks: clicks per correction frame, each one re-decoding the object with
            all clicks so far and the previous output as prior (iterative refinement).
        click_jitter: a click is drawn uniformly among the error pixels at least
            ``(1 - click_jitter)`` times as deep (distance to the error's boundary) as the
            deepest one; 0 always clicks the deepest pixel.
        prior_dropout: chance that a tracked object's previous output is withheld on a frame,
            so that memory must find it (the read-out learns where the prior would have
            carried it). The prior is also always withheld on the frame after one where the
            object was hidden or gone, as after a real occlusion.
    """

    point_prob: float = 0.5
    box_prob: float = 0.3
    mask_prob: float = 0.2
    max_points: int = 2
    second_cond_prob: float = 0.3
    box_noise: float = 0.1
    correction_prob: float = 0.3
    max_correction_frames: int = 1
    correction_clicks: int = 1
    click_jitter: float = 0.3
    prior_dropout: float = 0.4

    def __post_init__(self) -> None:
        probs = {
            "point_prob": self.point_prob,
            "box_prob": self.box_prob,
            "mask_prob": self.mask_prob,
            "second_cond_prob": self.second_cond_prob,
            "correction_prob": self.correction_prob,
            "click_jitter": self.click_jitter,
            "prior_dropout": self.prior_dropout,
        }
        for name, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"PromptSimConfig.{name} must be in [0, 1], got {p}.")
        total = self.point_prob + self.box_prob + self.mask_prob
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"point_prob + box_prob + mask_prob must be 1, got {total:g}.")
        for name in ("max_points", "correction_clicks"):
            if getattr(self, name) < 1:
                raise ValueError(f"PromptSimConfig.{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_correction_frames < 0:
            raise ValueError(f"PromptSimConfig.max_correction_frames must be >= 0, got {self.max_correction_frames}.")
        if self.box_noise < 0:
            raise ValueError(f"PromptSimConfig.box_noise must be >= 0, got {self.box_noise}.")

    def sample_kind(self, generator: Seed) -> PromptKind:
        """Draw the kind of an object's prompt on a conditioning frame."""
        rng = np.random.default_rng(generator)
        return PROMPT_KINDS[int(rng.choice(len(PROMPT_KINDS), p=[self.point_prob, self.box_prob, self.mask_prob]))]


def _as_numpy(mask: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {m.shape}.")
    return m


def sample_points(mask: Union[torch.Tensor, np.ndarray], n: int, generator: Seed) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` clicks drawn uniformly inside a mask (positive), or, when the mask is empty, in the
    background (negative: "the object is not here"), as SAM 2 does for a missing object.

    Args:
        mask: (H, W) bool.
        n: number of clicks (distinct pixels while the region has enough of them).
    Returns:
        coords (n, 2) float XY pixel indices and labels (n,) int64 (1 positive, 0 negative).
    """
    m = _as_numpy(mask)
    rng = np.random.default_rng(generator)
    positive = bool(m.any())
    ys, xs = np.nonzero(m if positive else ~m)
    pick = rng.choice(len(ys), size=n, replace=len(ys) < n)
    coords = np.stack([xs[pick], ys[pick]], axis=1).astype(np.float32)
    labels = np.full(n, 1 if positive else 0, dtype=np.int64)
    return torch.from_numpy(coords), torch.from_numpy(labels)


def mask_box(mask: Union[torch.Tensor, np.ndarray]) -> Optional[np.ndarray]:
    """Tight XYXY box (inclusive maxima) of a mask, or None when it is empty."""
    m = _as_numpy(mask)
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def sample_box(mask: Union[torch.Tensor, np.ndarray], noise: float, generator: Seed) -> torch.Tensor:
    """A noisy box around a non-empty mask, as SAM trains on boxes.

    Each side moves by N(0, (noise * side length)^2), truncated at two deviations, and the
    box is clipped to the frame and kept at least one pixel wide and tall.

    Args:
        mask: (H, W) bool with at least one pixel set.
        noise: standard deviation as a fraction of the box's width / height.
    Returns:
        (4,) float XYXY.
    """
    m = _as_numpy(mask)
    box = mask_box(m)
    if box is None:
        raise ValueError("sample_box needs a non-empty mask (prompt an absent object with a mask or a click).")
    rng = np.random.default_rng(generator)
    h, w = m.shape
    side = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2, dtype=np.float64)
    shift = np.clip(rng.standard_normal(4), -2.0, 2.0) * noise * side
    out = box + shift
    out[[0, 2]] = np.clip(out[[0, 2]], 0, w - 1)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, h - 1)
    out[2] = max(out[2], min(out[0] + 1, w - 1))
    out[3] = max(out[3], min(out[1] + 1, h - 1))
    return torch.from_numpy(out.astype(np.float32))


def region_depth(region: np.ndarray) -> np.ndarray:
    """(H, W) bool → (H, W) float: each pixel's distance to the region's boundary (the frame
    edge counts as one), 0 outside the region; where a person clicks is deep inside."""
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def sample_corrective_click(
    pred: Union[torch.Tensor, np.ndarray],
    gt: Union[torch.Tensor, np.ndarray],
    generator: Seed,
    jitter: float = 0.3,
) -> Optional[Tuple[torch.Tensor, int]]:
    """The click a user would add to fix a prediction, or None when it is already exact.

    The click goes into the larger of the two error regions (by area): missed object pixels
    (false negatives) give a positive click, wrongly included ones (false positives) a
    negative click. It lands deep inside the region, where a person would click: uniformly
    among the pixels whose distance to the region's boundary (the frame edge counts as one) is
    at least ``(1 - jitter)`` of the largest. (Evaluation clicks deterministically on the
    deepest pixel instead: :func:`i2v.eval.vos.corrective_click`.)

    Args:
        pred, gt: (H, W) bool.
        jitter: 0 clicks the deepest pixel; 1 any error pixel.
    Returns:
        (xy (2,) float XY pixel indices, label 1 or 0), or None.
    """
    p, g = _as_numpy(pred), _as_numpy(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape.")
    fn, fp = g & ~p, p & ~g
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn == 0 and n_fp == 0:
        return None
    label = 1 if n_fn >= n_fp else 0
    depth = region_depth(fn if label == 1 else fp)
    ys, xs = np.nonzero(depth >= (1.0 - jitter) * depth.max())
    rng = np.random.default_rng(generator)
    k = int(rng.integers(len(ys)))
    return torch.tensor([float(xs[k]), float(ys[k])]), label
