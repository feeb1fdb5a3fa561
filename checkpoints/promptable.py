"""SAM's promptable training recipe and held-out evaluation, as ``pretrain_tiny_sam.py`` runs
them on the tiny SAM (see that script's docstring for the recipe in words).

Images are preprocessed exactly as ``SamPredictor`` does (:class:`Prep`); ``Sam.forward`` runs
under ``no_grad``, so the prompt encoder and mask decoder are called directly (:func:`decode`),
once per image with that image's prompts batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from i2v.train.losses import dice_loss, sigmoid_focal_loss
from i2v.train.prompts import mask_box, region_depth, sample_box, sample_points

FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0


@dataclass
class Example:
    """One image and the masks of its targets, at the original resolution."""

    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) bool, N >= 1


# --------------------------------------------------------------------------------------------
# SAM's preprocessing, applied to images, masks and prompts


class Prep:
    """One image prepared for the model, plus the geometry to map prompts and masks."""

    def __init__(self, sam: Sam, transform: ResizeLongestSide, image: np.ndarray) -> None:
        self.original_size: Tuple[int, int] = (int(image.shape[0]), int(image.shape[1]))
        resized = transform.apply_image(image)
        self.input_size: Tuple[int, int] = (int(resized.shape[0]), int(resized.shape[1]))
        x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
        self.tensor = sam.preprocess(x)  # normalise + pad to (1, 3, S, S)
        self.transform = transform
        self.img_size = sam.image_encoder.img_size

    def coords(self, xy: np.ndarray) -> torch.Tensor:
        """(..., 2) pixel (x, y) in the original image → model input frame."""
        return torch.as_tensor(self.transform.apply_coords(xy, self.original_size), dtype=torch.float32)

    def boxes(self, xyxy: np.ndarray) -> torch.Tensor:
        """(N, 4) XYXY boxes in the original image → model input frame."""
        return torch.as_tensor(self.transform.apply_boxes(xyxy, self.original_size), dtype=torch.float32)

    def lowres_masks(self, masks: np.ndarray, low_res: int) -> torch.Tensor:
        """(N, H, W) bool → (N, 1, low_res, low_res) float {0, 1}: resize longest side, pad,
        area-downsample to the decoder's resolution, threshold 0.5."""
        m = torch.as_tensor(masks, dtype=torch.float32)[:, None]
        m = F.interpolate(m, self.input_size, mode="bilinear", align_corners=False)
        m = F.pad(m, (0, self.img_size - self.input_size[1], 0, self.img_size - self.input_size[0]))
        m = F.interpolate(m, (low_res, low_res), mode="area")
        return (m > 0.5).float()

    def upscale(self, sam: Sam, low_res_logits: torch.Tensor) -> torch.Tensor:
        """Decoder logits → logits at the original resolution (``Sam.postprocess_masks``)."""
        return sam.postprocess_masks(low_res_logits, self.input_size, self.original_size)


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool, none empty → (N, 4) XYXY with inclusive max, as segment_anything's mask_to_box."""
    boxes = np.zeros((len(masks), 4), dtype=np.float64)
    for i, m in enumerate(masks):
        box = mask_box(m)
        if box is None:
            raise ValueError(f"mask {i} is empty; every target has at least --min-area pixels.")
        boxes[i] = box
    return boxes


def noisy_boxes(masks: np.ndarray, rng: np.random.Generator, rel_std: float = 0.1) -> np.ndarray:
    """(N, H, W) bool → (N, 4) XYXY: tight boxes with Gaussian noise (std ``rel_std`` of the
    side, clipped at 2 std) on every coordinate, clipped to the image, at least 1 pixel wide."""
    return np.stack([sample_box(m, rel_std, rng).numpy() for m in masks]).astype(np.float64)


def uniform_points(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One (x, y) pixel drawn uniformly inside each (non-empty) mask: (N, 2)."""
    return np.stack([sample_points(m, 1, rng)[0][0].numpy() for m in masks]).astype(np.float64)


def error_clicks(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """SAM's corrective click: uniform in the error region of each prediction; positive in a
    false negative, negative in a false positive; "not a point" (-1) where there is no error.

    Returns (N, 2) (x, y) and (N,) labels."""
    coords = np.zeros((len(gt), 2), dtype=np.float64)
    labels = np.full(len(gt), -1.0)  # uniform in the whole error, as SAM trains (not prompts.sample_corrective_click)
    for i in range(len(gt)):
        fn, fp = gt[i] & ~pred[i], pred[i] & ~gt[i]
        ys, xs = np.nonzero(fn | fp)
        if len(ys) == 0:
            continue
        j = int(rng.integers(len(ys)))
        coords[i] = (xs[j], ys[j])
        labels[i] = 1.0 if fn[ys[j], xs[j]] else 0.0
    return coords, labels


def farthest_interior_point(mask: np.ndarray) -> Tuple[np.ndarray, float]:
    """The pixel of ``mask`` farthest from its boundary (the image border counts as boundary),
    as (x, y), and that distance."""
    dist = region_depth(mask)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([x, y], dtype=np.float64), float(dist[y, x])


def eval_click(pred: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, float]:
    """The standard interactive-eval corrective click: the point farthest from the boundary of
    the larger error (false negatives → positive, false positives → negative)."""
    fn_pt, fn_d = farthest_interior_point(gt & ~pred)
    fp_pt, fp_d = farthest_interior_point(pred & ~gt)
    if fn_d == 0 and fp_d == 0:
        return np.zeros(2), -1.0
    return (fn_pt, 1.0) if fn_d >= fp_d else (fp_pt, 0.0)


# --------------------------------------------------------------------------------------------
# Model calls and losses


def decode(
    sam: Sam,
    embedding: torch.Tensor,
    coords: Optional[torch.Tensor],
    labels: Optional[torch.Tensor],
    boxes: Optional[torch.Tensor],
    mask_input: Optional[torch.Tensor],
    multimask: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder + mask decoder for the N prompts of ONE image (embedding (1, C, h, w)).

    Returns low-res logits (N, M, 4h, 4w) and predicted IoUs (N, M), M = 3 if multimask else 1.
    """
    points = (coords, labels) if coords is not None else None
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    return sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded logits with the target: (N, M, H, W) → (N, M); 1 if both empty
    (an object lost at the low resolution, correctly predicted empty, is a perfect answer for
    the IoU head; :func:`i2v.train.losses.mask_iou` says 0, which video training never meets)."""
    pred = (logits > 0).flatten(2)
    t = target.flatten(2) > 0.5
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """SAM's loss for N prompts, summed over prompts. ``target`` (N, 1, H, W).

    With several masks per prompt only the lowest mask loss counts; the IoU head is trained
    on every mask."""
    target = target.expand_as(logits)
    focal = sigmoid_focal_loss(logits, target)
    dl = dice_loss(logits, target)
    per_mask = FOCAL_WEIGHT * focal + DICE_WEIGHT * dl
    best = per_mask.argmin(dim=1, keepdim=True)
    mask_loss = per_mask.gather(1, best).squeeze(1)
    actual = mask_iou(logits.detach(), target)
    iou_loss = F.mse_loss(iou_pred, actual, reduction="none").mean(1)
    total = (mask_loss + IOU_WEIGHT * iou_loss).sum()
    stats = {
        "focal": focal.gather(1, best).sum().detach(),
        "dice": dl.gather(1, best).sum().detach(),
        "iou_mse": iou_loss.sum().detach(),
        "iou": actual.gather(1, best).sum(),
    }
    return total, stats


def pick_by_predicted_iou(logits: torch.Tensor, iou_pred: torch.Tensor) -> torch.Tensor:
    """(N, M, H, W) → (N, 1, H, W): the mask with the highest predicted IoU (SamPredictor's pick)."""
    idx = iou_pred.argmax(dim=1)
    return logits[torch.arange(len(logits)), idx][:, None]


# --------------------------------------------------------------------------------------------
# Training


class StepOutput(NamedTuple):
    """One promptable forward: the mean loss per prompt-round, its statistics, and what the
    correspondence loss reuses (the batch's embeddings (B, C, h, w) and preprocessing)."""

    loss: torch.Tensor
    stats: Dict[str, float]
    embeddings: torch.Tensor
    preps: List[Prep]


def train_step(
    sam: Sam,
    transform: ResizeLongestSide,
    batch: Sequence[Example],
    rng: np.random.Generator,
    max_corrections: int,
) -> StepOutput:
    """Forward one batch with SAM's interactive recipe."""
    preps = [Prep(sam, transform, ex.image) for ex in batch]
    embeddings = sam.image_encoder(torch.cat([p.tensor for p in preps]))
    low_res = embeddings.shape[-1] * 4
    n_corrections = int(rng.integers(1, max_corrections + 1))
    total = embeddings.new_zeros(())
    stats = {"focal": 0.0, "dice": 0.0, "iou_mse": 0.0, "iou_first": 0.0, "iou_last": 0.0}
    n_first = n_rounds = 0
    for b, (ex, prep) in enumerate(zip(batch, preps)):
        gt = ex.masks
        target = prep.lowres_masks(gt, low_res)
        use_box = bool(rng.random() < 0.5)
        boxes = prep.boxes(noisy_boxes(gt, rng)) if use_box else None
        pts: List[np.ndarray] = [] if use_box else [uniform_points(gt, rng)]
        lbl: List[np.ndarray] = [] if use_box else [np.ones(len(gt))]
        mask_input: Optional[torch.Tensor] = None
        for r in range(1 + n_corrections):
            if mask_input is not None:  # rounds after the first: click on the previous output's errors
                pred = (prep.upscale(sam, mask_input) > 0)[:, 0].numpy()
                clicks, click_labels = error_clicks(pred, gt, rng)
                pts.append(clicks)
                lbl.append(click_labels)
            coords = prep.coords(np.stack(pts, 1)) if pts else None
            labels = torch.as_tensor(np.stack(lbl, 1), dtype=torch.float32) if lbl else None
            multimask = not use_box and r == 0  # a lone point is ambiguous
            logits, iou_pred = decode(sam, embeddings[b : b + 1], coords, labels, boxes, mask_input, multimask)
            loss, s = sam_loss(logits, iou_pred, target)
            total = total + loss
            n_rounds += len(gt)
            for k in ("focal", "dice", "iou_mse"):
                stats[k] += float(s[k])
            if r == 0:
                stats["iou_first"] += float(s["iou"])
                n_first += len(gt)
            if r == n_corrections:
                stats["iou_last"] += float(s["iou"])
            chosen = pick_by_predicted_iou(logits, iou_pred) if multimask else logits
            mask_input = chosen.detach()  # SAM feeds back the previous low-res logits
    for k in ("focal", "dice", "iou_mse"):
        stats[k] /= n_rounds
    stats["iou_first"] /= n_first
    stats["iou_last"] /= n_first
    return StepOutput(total / n_rounds, stats, embeddings, preps)


# --------------------------------------------------------------------------------------------
# Evaluation


def _iou_at_original(sam: Sam, prep: Prep, low: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU at the original resolution of (N, M, h, w) decoder logits with (N, 1, H, W) masks: (N, M)."""
    return mask_iou(prep.upscale(sam, low), gt.float().expand(-1, low.shape[1], -1, -1))


@torch.no_grad()
def evaluate(sam: Sam, examples: Sequence[Example], max_instances: Optional[int] = None) -> Dict[str, float]:
    """Held-out mIoU at the original resolution, per object instance:

    * ``click1``: one positive click at the interior point farthest from the boundary,
      multimask output, the mask with the highest predicted IoU;
    * ``click1_oracle``: the same click, the best of the 3 masks;
    * ``click3``: two more standard corrective clicks (farthest point of the larger error),
      previous logits fed back as the mask prompt, single-mask output;
    * ``box``: the tight box, single-mask output.
    """
    was_training = sam.training
    sam.eval()
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    ious: Dict[str, List[float]] = {"click1": [], "click1_oracle": [], "click3": [], "box": []}
    n = 0
    for ex in examples:
        gt = ex.masks
        if max_instances is not None:
            if n >= max_instances:
                break
            gt = gt[: max_instances - n]
        n += len(gt)
        prep = Prep(sam, transform, ex.image)
        emb = sam.image_encoder(prep.tensor)
        gt_t = torch.as_tensor(gt)[:, None]
        pts = np.stack([farthest_interior_point(m)[0] for m in gt])[:, None]
        lbl = np.ones((len(gt), 1))
        logits, iou_pred = decode(
            sam, emb, prep.coords(pts), torch.as_tensor(lbl, dtype=torch.float32), None, None, True
        )
        all_iou = _iou_at_original(sam, prep, logits, gt_t)
        pick = iou_pred.argmax(1)
        ious["click1"] += all_iou[torch.arange(len(gt)), pick].tolist()
        ious["click1_oracle"] += all_iou.max(1).values.tolist()
        mask_input = pick_by_predicted_iou(logits, iou_pred)
        for _ in range(2):
            pred = (prep.upscale(sam, mask_input) > 0)[:, 0].numpy()
            new = [eval_click(pred[i], gt[i]) for i in range(len(gt))]
            pts = np.concatenate([pts, np.stack([c for c, _ in new])[:, None]], 1)
            lbl = np.concatenate([lbl, np.array([[label] for _, label in new])], 1)
            mask_input, _ = decode(
                sam, emb, prep.coords(pts), torch.as_tensor(lbl, dtype=torch.float32), None, mask_input, False
            )
        ious["click3"] += _iou_at_original(sam, prep, mask_input, gt_t)[:, 0].tolist()
        logits, _ = decode(sam, emb, None, None, prep.boxes(tight_boxes(gt)), None, False)
        ious["box"] += _iou_at_original(sam, prep, logits, gt_t)[:, 0].tolist()
    sam.train(was_training)
    out = {f"{k}_miou": float(np.mean(v)) for k, v in ious.items()}
    out["instances"] = n
    return out
