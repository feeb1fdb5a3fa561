"""Training clips: sampling from video datasets, consistent augmentation, mixing and batching.

:class:`ClipDataset` turns a :class:`~i2v.data.base.VideoDataset` into a torch ``Dataset`` of
:class:`TrainClip` items; :class:`MixedDataset` draws from several of them by weight;
:func:`collate_clips` batches clips whose object counts differ.

Determinism: every random choice for item ``i`` (video, start, stride, time reversal, objects,
augmentation) comes from ``numpy.random.default_rng([seed, epoch, i])`` and nothing else (no
global RNG), so an item depends only on (seed, epoch, i) and is the same in any worker process.
The epoch can be given two ways:

* call ``set_epoch(epoch)`` before iterating the DataLoader of that epoch (workers copy the
  dataset when an iterator starts, so this needs ``persistent_workers=False``); or
* index past the end: item ``epoch * len(ds) + i`` is item ``i`` of epoch ``epoch`` (on top of
  the ``set_epoch`` value), which works with persistent workers and makes resuming a run at global
  step ``s`` a matter of starting a sequential sampler at index ``s * batch_size``.

With ``shuffle=True`` the videos are visited in a per-epoch permutation, so use a sequential
sampler (DataLoader ``shuffle=False``) and let the dataset own the order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from i2v.data.base import VideoDataset
from i2v.errors import DatasetError


@dataclass
class TrainClip:
    """One training clip.

    Attributes:
        frames: (T, 3, H, W) uint8 RGB.
        masks: (T, N, H, W) bool; every object is visible on frame 0.
        annotated: (T,) bool, False on frames without ground truth (skip them in the loss).
        obj_ids: (N,) int64 ids as the source dataset names them.
        frame_indices: (T,) int64 frame indices in the source video (descending if reversed).
        name: source video name.
        video_index: index of the source video in its dataset.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    annotated: torch.Tensor
    obj_ids: torch.Tensor
    frame_indices: torch.Tensor
    name: str
    video_index: int


@dataclass
class ClipBatch:
    """B clips of the same T, H, W, with objects padded to the largest N in the batch.

    Attributes:
        frames: (B, T, 3, H, W) uint8.
        masks: (B, T, N, H, W) bool, all False in padded object slots.
        obj_valid: (B, N) bool, False for padded object slots.
        obj_ids: (B, N) int64, -1 in padded slots.
        annotated: (B, T) bool.
        frame_indices: (B, T) int64.
        names: the B video names.
        video_indices: (B,) int64.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    obj_valid: torch.Tensor
    obj_ids: torch.Tensor
    annotated: torch.Tensor
    frame_indices: torch.Tensor
    names: List[str]
    video_indices: torch.Tensor

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "ClipBatch":
        """A copy with every tensor moved to ``device``."""
        moved: Dict[str, Any] = {
            f.name: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return ClipBatch(**moved)


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation drawn once per clip and applied to all of its frames."""

    hflip: bool
    box: Tuple[int, int, int, int]  # top, left, height, width of the crop
    brightness: float
    contrast: float
    saturation: float
    hue: float


@dataclass(frozen=True)
class ClipAugment:
    """Clip-consistent augmentation: flip, random resized crop, colour jitter.

    Args:
        size: output (H, W); None keeps the input size and disables cropping.
        hflip_prob: probability of a horizontal flip.
        crop_scale: range of the crop area as a fraction of the frame ((1, 1): no crop, only
            resizing to ``size``).
        crop_ratio: range of the crop aspect ratio (width / height).
        brightness, contrast, saturation: jitter factors are drawn from [1 - x, 1 + x].
        hue: hue shift drawn from [-hue, hue] (in [0, 0.5]).
    """

    size: Optional[Tuple[int, int]] = None
    hflip_prob: float = 0.5
    crop_scale: Tuple[float, float] = (0.5, 1.0)
    crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def sample(self, rng: np.random.Generator, height: int, width: int) -> AugmentParams:
        """Draw the parameters for a clip of (height, width) frames."""
        return AugmentParams(
            hflip=bool(rng.random() < self.hflip_prob),
            box=self._crop_box(rng, height, width),
            brightness=float(rng.uniform(1 - self.brightness, 1 + self.brightness)),
            contrast=float(rng.uniform(1 - self.contrast, 1 + self.contrast)),
            saturation=float(rng.uniform(1 - self.saturation, 1 + self.saturation)),
            hue=float(rng.uniform(-self.hue, self.hue)),
        )

    def _crop_box(self, rng: np.random.Generator, h: int, w: int) -> Tuple[int, int, int, int]:
        # torchvision's RandomResizedCrop draws from the global torch RNG, which would break
        # (seed, epoch, index) determinism, so the same scheme is drawn from ``rng`` here.
        if self.size is None or self.crop_scale[0] >= 1.0:
            return 0, 0, h, w
        log_ratio = np.log(self.crop_ratio)
        for _ in range(10):
            area = h * w * rng.uniform(*self.crop_scale)
            ratio = math.exp(rng.uniform(*log_ratio))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
        return 0, 0, h, w

    def apply(self, frames: torch.Tensor, masks: torch.Tensor, p: AugmentParams) -> Tuple[torch.Tensor, torch.Tensor]:
        """Augment (T, 3, H, W) uint8 frames and (T, N, H, W) bool masks with the same params."""
        if p.hflip:
            frames, masks = TF.hflip(frames), TF.hflip(masks)
        if self.size is not None:
            top, left, ch, cw = p.box
            size = list(self.size)
            frames = TF.resized_crop(
                frames, top, left, ch, cw, size, interpolation=InterpolationMode.BILINEAR, antialias=True
            )
            t, n = masks.shape[:2]
            # resizing a (T*N, H, W) uint8 stack with nearest keeps masks binary
            m = masks.reshape(t * n, *masks.shape[2:]).to(torch.uint8)
            if t * n:
                m = TF.resized_crop(m, top, left, ch, cw, size, interpolation=InterpolationMode.NEAREST)
            masks = m.reshape(t, n, *size).bool()
        frames = TF.adjust_brightness(frames, p.brightness)
        frames = TF.adjust_contrast(frames, p.contrast)
        frames = TF.adjust_saturation(frames, p.saturation)
        frames = TF.adjust_hue(frames, p.hue)
        return frames, masks


class ClipDataset(Dataset):
    """Random clips from a video dataset, one item per video per epoch (or ``length`` items).

    Args:
        dataset: the videos.
        num_frames: T, frames per clip.
        stride: frame step, or an inclusive (min, max) range drawn per clip; reduced for
            videos too short for it (and frames repeat at the end if even stride 1 is too long).
        reverse_prob: probability of playing the clip backwards.
        max_objects: at most this many objects per clip, drawn among those visible on the
            clip's first frame (which must be annotated).
        seed: base seed (see the module docstring for determinism).
        augment: clip-consistent augmentation, or None.
        length: items per epoch (default: number of videos).
        shuffle: visit the videos in a per-epoch random order.
        max_tries: clip attempts before giving up; a video without any usable first frame is
            replaced by a random other one.
    """

    def __init__(
        self,
        dataset: VideoDataset,
        num_frames: int = 8,
        stride: Union[int, Tuple[int, int]] = 1,
        reverse_prob: float = 0.0,
        max_objects: int = 3,
        seed: int = 0,
        augment: Optional[ClipAugment] = None,
        length: Optional[int] = None,
        shuffle: bool = True,
        max_tries: int = 20,
    ) -> None:
        lo, hi = (stride, stride) if isinstance(stride, int) else stride
        if num_frames < 1 or max_objects < 1 or not 1 <= lo <= hi:
            raise ValueError(
                f"need num_frames >= 1, max_objects >= 1, 1 <= stride; got {num_frames}, {max_objects}, {stride}"
            )
        if len(dataset) == 0:
            raise DatasetError("ClipDataset needs a dataset with at least one video.")
        self.dataset, self.num_frames, self.stride = dataset, num_frames, (lo, hi)
        self.reverse_prob, self.max_objects, self.seed = reverse_prob, max_objects, seed
        self.augment, self.length, self.shuffle = augment, length, shuffle
        self.max_tries, self.epoch = max_tries, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.dataset)

    def __getitem__(self, index: int) -> TrainClip:
        extra_epochs, i = divmod(int(index), len(self))
        epoch = self.epoch + extra_epochs
        n = len(self.dataset)
        if self.shuffle:
            video = int(np.random.default_rng([self.seed, epoch]).permutation(n)[i % n])
        else:
            video = i % n
        return self.sample(video, np.random.default_rng([self.seed, epoch, i]))

    def sample(self, video_index: int, rng: np.random.Generator) -> TrainClip:
        """A clip of video ``video_index`` (or of a random other video if it has no usable
        start), with all random choices drawn from ``rng``."""
        v = video_index
        for _ in range(self.max_tries):
            clip = self._try_video(v, rng)
            if clip is not None:
                return clip
            v = int(rng.integers(len(self.dataset)))
        raise DatasetError(
            f"No clip with an annotated first frame showing an object found in {self.max_tries} "
            f"tries (starting from video {self.dataset.video_name(video_index)!r})."
        )

    def _offsets(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(T,) frame offsets from the clip start, fitted into an n-frame video."""
        t = self.num_frames
        stride = int(rng.integers(self.stride[0], self.stride[1] + 1))
        if t > 1 and (t - 1) * stride >= n:
            stride = max(1, (n - 1) // (t - 1))
        return np.minimum(np.arange(t) * stride, n - 1)

    def _try_video(self, v: int, rng: np.random.Generator) -> Optional[TrainClip]:
        n = self.dataset.num_frames(v)
        offsets = self._offsets(rng, n)
        reverse = bool(rng.random() < self.reverse_prob)
        starts = np.arange(n - offsets[-1])
        firsts = starts + offsets[-1] if reverse else starts
        ok = [s for s, f in zip(starts, firsts) if self.dataset.is_annotated(v, int(f))]
        # a few starts per video: a video where none shows an object is likely hopeless
        for start in rng.permutation(ok)[:3] if ok else []:
            idx = start + offsets
            idx = idx[::-1] if reverse else idx
            first_masks = self.dataset.masks(v, int(idx[0]))
            visible = np.flatnonzero(first_masks.reshape(len(first_masks), -1).any(axis=1))
            if len(visible) == 0:
                continue
            chosen = np.sort(rng.choice(visible, size=min(self.max_objects, len(visible)), replace=False))
            clip = self._build(v, idx, chosen, rng)
            if clip is not None:
                return clip
        return None

    def _build(self, v: int, idx: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> Optional[TrainClip]:
        raw = self.dataset.clip(v, idx.tolist())
        frames = torch.from_numpy(raw.frames).permute(0, 3, 1, 2).contiguous()
        masks = torch.from_numpy(raw.masks[:, chosen])
        ids = torch.tensor([raw.obj_ids[k] for k in chosen], dtype=torch.int64)
        if self.augment is not None:
            h, w = frames.shape[-2:]
            for _ in range(5):  # redraw crops that lose every object on the first frame
                out = self.augment.apply(frames, masks, self.augment.sample(rng, h, w))
                if bool(out[1][0].any()):
                    break
            frames, masks = out
        # a crop (or downscaling) can push an object off the first frame: drop it
        keep = masks[0].flatten(1).any(dim=1)
        if not bool(keep.any()):
            return None
        return TrainClip(
            frames=frames,
            masks=masks[:, keep].contiguous(),
            annotated=torch.from_numpy(raw.annotated.copy()),
            obj_ids=ids[keep],
            frame_indices=torch.from_numpy(idx.copy()).to(torch.int64),
            name=raw.name,
            video_index=v,
        )


class MixedDataset(Dataset):
    """Draws each item from one of several clip datasets, chosen by weight.

    Item ``i`` of epoch ``e`` picks dataset ``k`` with probability ``weights[k] / sum(weights)``
    and a uniformly random video of it, all from ``default_rng([seed, e, i])``; the children's
    own seeds, lengths and shuffling are not used. Epochs work as for :class:`ClipDataset`.

    Args:
        datasets: the clip datasets.
        weights: one non-negative weight per dataset.
        length: items per epoch.
        seed: base seed.
    """

    def __init__(self, datasets: Sequence[ClipDataset], weights: Sequence[float], length: int, seed: int = 0) -> None:
        w = np.asarray(weights, dtype=float)
        if len(datasets) == 0 or w.shape != (len(datasets),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"need one non-negative weight per dataset with a positive sum; got "
                f"{len(datasets)} datasets and weights {list(weights)}"
            )
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.datasets, self.probs = list(datasets), w / w.sum()
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> TrainClip:
        extra_epochs, i = divmod(int(index), self.length)
        rng = np.random.default_rng([self.seed, self.epoch + extra_epochs, i])
        ds = self.datasets[int(rng.choice(len(self.datasets), p=self.probs))]
        return ds.sample(int(rng.integers(len(ds.dataset))), rng)


def collate_clips(clips: Sequence[TrainClip]) -> ClipBatch:
    """Stack clips into a :class:`ClipBatch`, padding object slots to the largest count.

    All clips must share T, H and W (use ``ClipAugment(size=...)`` for datasets of mixed sizes).
    """
    if not clips:
        raise ValueError("collate_clips needs at least one clip")
    shapes = {tuple(c.frames.shape) for c in clips}
    if len(shapes) > 1:
        raise ValueError(
            f"clips have different frame shapes {sorted(shapes)}; give ClipAugment a fixed size, or use batch size 1"
        )
    n_max = max(int(c.masks.shape[1]) for c in clips)
    t, _, h, w = clips[0].frames.shape
    b = len(clips)
    masks = torch.zeros((b, t, n_max, h, w), dtype=torch.bool)
    valid = torch.zeros((b, n_max), dtype=torch.bool)
    ids = torch.full((b, n_max), -1, dtype=torch.int64)
    for k, c in enumerate(clips):
        n = c.masks.shape[1]
        masks[k, :, :n] = c.masks
        valid[k, :n] = True
        ids[k, :n] = c.obj_ids
    return ClipBatch(
        frames=torch.stack([c.frames for c in clips]),
        masks=masks,
        obj_valid=valid,
        obj_ids=ids,
        annotated=torch.stack([c.annotated for c in clips]),
        frame_indices=torch.stack([c.frame_indices for c in clips]),
        names=[c.name for c in clips],
        video_indices=torch.tensor([c.video_index for c in clips], dtype=torch.int64),
    )
