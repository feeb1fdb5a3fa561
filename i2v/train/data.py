"""Training data from a recipe: dataset readers, clip sampling, and a resumable order.

Every reader is wrapped in :class:`KeyedVideos`, which takes an optional fixed subset and
names each video ``"<dataset key>/<video name>"``; a clip's name then says exactly which
video of which dataset it came from, which is what the feature cache files it under.

The order of clips is a pure function of the global item counter (see
:mod:`i2v.data.clips`): micro-step ``m`` of process ``r`` out of ``W`` reads items
``position + (m * W + r) * B + b``, so resuming at a saved position replays the same order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import InterpolationMode

from i2v.data.base import VideoClip, VideoDataset
from i2v.data.clips import AugmentParams, ClipAugment, ClipDataset, MixedDataset, TrainClip
from i2v.train.config import DataSpec, TrainConfig

# Fields of a DataSpec that do not change what a video's frames are.
_NOT_CONTENT = ("weight", "num_videos")


def dataset_key(spec: DataSpec) -> str:
    """A short name that changes whenever the frames a spec produces could change."""
    content = {k: v for k, v in asdict(spec).items() if k not in _NOT_CONTENT}
    if spec.root:
        content["root"] = str(Path(spec.root).expanduser().resolve())
    if spec.annotations:
        content["annotations"] = str(Path(spec.annotations).expanduser().resolve())
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{spec.type}-{spec.split}-{digest}"


class KeyedVideos(VideoDataset):
    """A reader, optionally cut to its first ``num_videos``, with videos named ``key/name``."""

    def __init__(self, dataset: VideoDataset, key: str, num_videos: Optional[int] = None) -> None:
        self.dataset, self.key = dataset, key
        self.size = len(dataset) if num_videos is None else min(num_videos, len(dataset))

    def __len__(self) -> int:
        return self.size

    def _check(self, index: int) -> int:
        if not 0 <= index < self.size:
            raise IndexError(f"video index {index} out of range for {self.size} videos of {self.key}.")
        return index

    def video_name(self, index: int) -> str:
        return f"{self.key}/{self.dataset.video_name(self._check(index))}"

    def num_frames(self, index: int) -> int:
        return self.dataset.num_frames(self._check(index))

    def obj_ids(self, index: int) -> List[int]:
        return self.dataset.obj_ids(self._check(index))

    def frame(self, index: int, t: int) -> np.ndarray:
        return self.dataset.frame(self._check(index), t)

    def masks(self, index: int, t: int) -> np.ndarray:
        return self.dataset.masks(self._check(index), t)

    def is_annotated(self, index: int, t: int) -> bool:
        return self.dataset.is_annotated(self._check(index), t)

    def clip(self, index: int, frame_indices: Sequence[int]) -> VideoClip:
        return replace(self.dataset.clip(self._check(index), frame_indices), name=self.video_name(index))


def split_clip_name(name: str) -> Tuple[str, str]:
    """``"key/video"`` → (dataset key, video name)."""
    key, _, video = name.partition("/")
    return key, video


def open_reader(spec: DataSpec, split: Optional[str] = None, num_videos: Optional[int] = None) -> VideoDataset:
    """The raw reader of a spec (``split`` and ``num_videos`` override the spec's)."""
    from i2v.data.registry import dataset_entry, make_dataset

    options = {option: getattr(spec, name) for option, name in dataset_entry(spec.type).recipe_options.items()}
    if num_videos is not None and "num_videos" in options:  # a generator: make this many
        options["num_videos"] = num_videos
    return make_dataset(spec.type, str(spec.root) if spec.root else None, split or spec.split, **options)


def open_videos(spec: DataSpec) -> KeyedVideos:
    """The videos a training spec draws from."""
    return KeyedVideos(open_reader(spec), dataset_key(spec), spec.num_videos)


@dataclass(frozen=True)
class ResizeOnly(ClipAugment):
    """A deterministic resize to ``size``: no flip, crop or colour change (feature-cache safe)."""

    def sample(self, rng: np.random.Generator, height: int, width: int) -> AugmentParams:
        return AugmentParams(False, (0, 0, height, width), 1.0, 1.0, 1.0, 0.0)

    def apply(self, frames: torch.Tensor, masks: torch.Tensor, p: AugmentParams) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.size is None:
            return frames, masks
        return _resize(frames, masks, self.size)


def _resize(frames: torch.Tensor, masks: torch.Tensor, size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(T, 3, H, W) uint8 frames (bilinear) and (T, N, H, W) bool masks (nearest) → ``size``."""
    out = TF.resize(frames, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
    t, n = masks.shape[:2]
    m = masks.reshape(t * n, *masks.shape[2:]).to(torch.uint8)
    if t * n:
        m = TF.resize(m, list(size), interpolation=InterpolationMode.NEAREST)
    return out, m.reshape(t, n, *size).bool()


def clip_size(cfg: TrainConfig) -> Optional[Tuple[int, int]]:
    """The recipe's clip (H, W) as a tuple (a config built in Python may hold a list), or None."""
    size = cfg.clip.size
    return (size[0], size[1]) if size else None


def clip_augment(cfg: TrainConfig) -> Optional[ClipAugment]:
    """The clip transform of a recipe: random augmentation, or (with a feature cache, or
    augmentation off) only the resize to ``clip.size`` that the cache is keyed by."""
    size = clip_size(cfg)
    aug = cfg.clip.augment
    if cfg.feature_cache.enabled or not aug.enabled:
        return ResizeOnly(size=size) if size else None
    return ClipAugment(
        size=size,
        hflip_prob=aug.hflip_prob,
        crop_scale=(aug.crop_scale[0], aug.crop_scale[1]),
        brightness=aug.brightness,
        contrast=aug.contrast,
        saturation=aug.saturation,
        hue=aug.hue,
    )


def build_train_dataset(cfg: TrainConfig, videos: Optional[VideoDataset] = None) -> Dataset:
    """Clips drawn from the recipe's datasets by weight (one dataset: every video once per epoch),
    or from ``videos`` (a dataset object given instead of ``cfg.data``)."""
    augment = clip_augment(cfg)
    sources = (
        [open_videos(spec) for spec in cfg.data]
        if videos is None
        else [KeyedVideos(videos, f"custom-{type(videos).__name__}")]
    )
    clips = [
        ClipDataset(
            source,
            cfg.clip.num_frames,
            (cfg.clip.stride[0], cfg.clip.stride[1]),
            cfg.clip.reverse_prob,
            cfg.clip.max_objects,
            seed=cfg.seed,
            augment=augment,
        )
        for source in sources
    ]
    length = cfg.epoch_length or sum(len(c) for c in clips)
    if len(clips) == 1:
        clips[0].length = length
        return clips[0]
    return MixedDataset(clips, [spec.weight for spec in cfg.data], length, seed=cfg.seed)


class StepBatchSampler(Sampler[List[int]]):
    """Endless batches of item indices for one process, from a global item position.

    Args:
        position: global index of the first item of the first micro-step.
        batch_size: B, items per micro-step and process.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, position: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.position, self.batch_size, self.rank, self.world_size = position, batch_size, rank, world_size

    def __iter__(self) -> Iterator[List[int]]:
        b, m = self.batch_size, 0
        while True:
            first = self.position + (m * self.world_size + self.rank) * b
            yield list(range(first, first + b))
            m += 1


def _as_list(clips: List[TrainClip]) -> List[TrainClip]:
    return clips


def make_loader(
    dataset: Dataset, position: int, batch_size: int, rank: int, world_size: int, num_workers: int
) -> DataLoader:
    """A DataLoader yielding lists of :class:`TrainClip` (clips are processed one at a time)."""
    return DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(position, batch_size, rank, world_size),
        collate_fn=_as_list,
        num_workers=num_workers,
        persistent_workers=False,
    )
