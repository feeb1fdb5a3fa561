"""Cross-frame correspondence for the tiny SAM's image embedding: pairs, cell labels, loss.

The memory read-out of sam-i2v compares image-embedding tokens of different frames by cosine
similarity, so an encoder whose tokens of one object look alike across frames (and unlike other
objects, look-alikes included) is what lets memory work. Real SAM features have that property
to a useful degree; a tiny SAM trained only with the promptable loss on synthetic data barely
has it. This module supplies the objective that teaches it, used by ``pretrain_tiny_sam.py``:

* :func:`sample_pair` draws two frames ``(t, t + k)`` of one synthetic train video, together
  with an instance map that labels EVERY blob (unannotated look-alikes and occluders too, so
  they are negatives of their own rather than background);
* :func:`cell_labels` turns an instance map into soft per-token class fractions on the
  embedding grid, in SAM's padded input frame (padding is a class of its own);
* :func:`correspondence_loss` is label propagation: each token of one frame reads the other
  frame's labels with ``softmax(cos / tau)`` over that frame's tokens, the read-out is scored
  by cross-entropy with its own labels, balanced over the instances both frames show. It acts
  on the L2-normalised embedding itself (no projection head), because that is what the
  library's read-out compares.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from i2v.data.synthetic import SyntheticVideoDataset
from i2v.data.synthetic_shapes import Scene, render_frame


@dataclass
class FramePair:
    """Two frames of one video with their annotated masks and full instance maps.

    ``instances`` hold ``0`` for background and ``i + 1`` for the blob ``scene.objects[i]``
    (annotated or not), the same id on both frames; ``masks`` are the annotated objects in
    ``obj_id`` order, as :meth:`SyntheticVideoDataset.masks` returns them.
    """

    images: Tuple[np.ndarray, np.ndarray]  # 2 x (H, W, 3) uint8
    masks: Tuple[np.ndarray, np.ndarray]  # 2 x (N, H, W) bool
    instances: Tuple[np.ndarray, np.ndarray]  # 2 x (H, W) int64
    num_classes: int  # background + every blob


def _every_blob_labelled(scene: Scene) -> Scene:
    """The same scene with blob ``i`` painted into the label map as ``i + 1`` (pixels unchanged:
    the id only reaches the label map)."""
    objects = [dataclasses.replace(o, obj_id=i + 1) for i, o in enumerate(scene.objects)]
    return dataclasses.replace(scene, objects=objects)


def render_instances(ds: SyntheticVideoDataset, index: int, t: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``t`` of video ``index``: image (H, W, 3) uint8, annotated masks (N, H, W) bool in
    ``obj_id`` order, and the instance map (H, W) int64 of every blob (0 = background)."""
    scene = ds.scene(index)
    image, instances = render_frame(_every_blob_labelled(scene), t)
    annotated = sorted((o.obj_id, i + 1) for i, o in enumerate(scene.objects) if o.obj_id > 0)
    masks = np.stack([instances == k for _, k in annotated]) if annotated else np.zeros((0,) + instances.shape, bool)
    return image, masks, instances.astype(np.int64)


def sample_pair(ds: SyntheticVideoDataset, rng: np.random.Generator, min_area: int, max_gap: int) -> FramePair:
    """Frames ``t`` and ``t + k`` (either order, ``k`` uniform in 1..``max_gap``) of a random
    video, each with at least one annotated object of ``min_area`` visible pixels (the
    promptable loss needs a target on both)."""
    while True:
        index = int(rng.integers(len(ds)))
        n = ds.num_frames(index)
        k = int(rng.integers(1, min(max_gap, n - 1) + 1))
        a = int(rng.integers(0, n - k))
        ta, tb = (a, a + k) if rng.random() < 0.5 else (a + k, a)
        frames = [render_instances(ds, index, t) for t in (ta, tb)]
        if all(len(m) and (m.reshape(len(m), -1).sum(1) >= min_area).any() for _, m, _ in frames):
            return FramePair(
                images=(frames[0][0], frames[1][0]),
                masks=(frames[0][1], frames[1][1]),
                instances=(frames[0][2], frames[1][2]),
                num_classes=len(ds.scene(index).objects) + 1,
            )


def cell_labels(
    instances: np.ndarray, num_classes: int, input_size: Tuple[int, int], img_size: int, grid: int
) -> torch.Tensor:
    """Soft class fractions of every embedding token, in SAM's padded input frame.

    The one-hot instance map is resized to ``input_size`` (SAM's ``ResizeLongestSide``), padded
    to ``img_size`` and area-pooled to ``grid x grid``; the padding gets the extra class
    ``num_classes``.

    Args:
        instances: (H, W) int instance map, values in ``[0, num_classes)``.
    Returns:
        (grid * grid, num_classes + 1) float, each row sums to 1.
    """
    one_hot = F.one_hot(torch.as_tensor(instances), num_classes).permute(2, 0, 1)[None].float()
    one_hot = F.interpolate(one_hot, input_size, mode="bilinear", align_corners=False)
    h, w = input_size
    one_hot = F.pad(one_hot, (0, img_size - w, 0, img_size - h))
    pad = 1.0 - one_hot.sum(1, keepdim=True)
    cells = F.adaptive_avg_pool2d(torch.cat([one_hot, pad], 1), grid)  # (1, C + 1, grid, grid)
    cells = cells.clamp(min=0)
    return (cells / cells.sum(1, keepdim=True)).flatten(2)[0].T


def label_propagation(query: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Each query token's labels read from the keys with ``softmax(cos / tau)``.

    Args:
        query: (Q, D) tokens; keys: (K, D) tokens (both normalised here);
        key_labels: (K, C) soft labels of the keys.
    Returns:
        (Q, C) read-out label distribution.
    """
    affinity = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T  # (Q, K)
    return (affinity / tau).softmax(-1) @ key_labels


def correspondence_loss(
    emb_a: torch.Tensor,
    emb_b: torch.Tensor,
    labels_a: torch.Tensor,
    labels_b: torch.Tensor,
    tau: float,
    min_cells: float = 0.5,
) -> torch.Tensor:
    """Label-propagation cross-entropy from frame a to frame b, balanced over instances.

    Frame b's tokens read frame a's labels (:func:`label_propagation`); the loss of class ``c``
    is the mean of ``-log p_c`` over frame b's cells of class ``c`` (weighted by their soft
    fraction), and the loss is the mean over the classes that both frames show with at least
    ``min_cells`` cells of area. The padding class (the last) carries labels but is not scored:
    it is trivially separable and would dilute the instance classes.

    Args:
        emb_a, emb_b: (D, h, w) image embeddings; labels_a, labels_b: (h * w, C) soft labels.
    Returns:
        () loss; 0 (with a graph) when no class is shared.
    """
    read = label_propagation(emb_b.flatten(1).T, emb_a.flatten(1).T, labels_a, tau)  # (hw, C)
    mass_a, mass_b = labels_a.sum(0), labels_b.sum(0)  # (C,)
    scored = (mass_a >= min_cells) & (mass_b >= min_cells)
    scored[-1] = False
    if not bool(scored.any()):
        return emb_a.sum() * 0.0
    nll = -(read.clamp(min=1e-6).log())  # (hw, C)
    per_class = (labels_b * nll).sum(0) / mass_b.clamp(min=1e-6)  # (C,)
    return per_class[scored].mean()
