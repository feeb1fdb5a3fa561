"""The data half of a training recipe: the datasets (``data:``) and how clips are cut from
them (``clip:``, with its pixel augmentation). Part of :class:`i2v.train.config.TrainConfig`;
importable from :mod:`i2v.train.config` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from i2v.data.registry import DATASETS
from i2v.data.synthetic import SyntheticConfig
from i2v.train.config_checks import (
    DAVIS_RESOLUTIONS,
    DAVIS_YEARS,
    MAX_CLIP_FRAMES,
    MAX_SIDE,
    SAV_ANNOTATIONS,
    in_range,
)


@dataclass
class DataSpec:
    """One training dataset. Fields after ``seed`` apply to the types named in their comment.

    Attributes:
        type: a reader registered in :data:`i2v.data.registry.DATASETS`, e.g. "davis", "sav",
            "sa1b" (one-frame videos), "sa1b_pseudo" (SA-1B images moved smoothly into
            pseudo-videos), "folder" (one's own videos: ``root/<video>/`` frames plus ``masks/``,
            see :mod:`i2v.data.folder`) or "coco" (a YouTube-VIS / OVIS style JSON, see
            :mod:`i2v.data.coco_video`). The registry says which fields below each one reads.
        root: the dataset folder (not used by "synthetic"; "coco": the folder its
            ``file_names`` are relative to, default the JSON's folder).
        split: split name ("train"; DAVIS "train"; SA-V "sav_train"; SA-1B and coco: unused;
            folder: the sub-folder ``root/<split>`` when it exists, else ``root`` itself).
        weight: sampling weight among the datasets.
        num_videos: synthetic: how many videos; others: use only the first this many (a fixed
            subset, e.g. 10k SA-1B images); None = all.
        seed: synthetic: dataset seed; sa1b_pseudo: seed of the motion.
        synthetic: synthetic: scene settings (frame size, frames per video, difficulty).
        year, resolution: davis: 2016 / 2017 and "480p" / "Full-Resolution".
        annotation, annotated_only: sav: "manual" / "auto" masklets, and whether to keep only
            the annotated 6 fps frames.
        annotation_dir, max_masks, min_area: sa1b / sa1b_pseudo: folder of the JSON files
            (default: root), masks kept per image (largest first), smallest mask area.
        frames_per_video, max_translate, max_scale, max_rotate: sa1b_pseudo: the motion.
        annotations: coco: the JSON file.
    """

    type: str
    root: Optional[str] = None
    split: str = "train"
    weight: float = 1.0
    num_videos: Optional[int] = None
    seed: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    year: int = 2017
    resolution: str = "480p"
    annotation: str = "manual"
    annotated_only: bool = True
    annotation_dir: Optional[str] = None
    max_masks: Optional[int] = 64
    min_area: float = 100.0
    frames_per_video: int = 8
    max_translate: float = 0.1
    max_scale: float = 0.2
    max_rotate: float = 15.0
    annotations: Optional[str] = None

    def __post_init__(self) -> None:
        if self.type not in DATASETS:
            raise ValueError(f"data type must be one of {', '.join(DATASETS)}; got {self.type!r}.")
        entry = DATASETS[self.type]
        for name, what in entry.required.items():
            if not getattr(self, entry.recipe_options.get(name, name)):
                raise ValueError(f"a {self.type!r} dataset needs {name}: {what}.")
        if entry.needs_root and not self.root:
            raise ValueError(f"a {self.type!r} dataset needs root: the folder it is stored in.")
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}.")
        if self.num_videos is not None and self.num_videos < 1:
            raise ValueError(f"num_videos must be >= 1 or null, got {self.num_videos}.")
        # checked whatever the type, so that a value meant for another dataset is not ignored silently
        if self.year not in DAVIS_YEARS:
            raise ValueError(f"year must be 2016 or 2017 (the DAVIS releases), got {self.year}.")
        if self.resolution not in DAVIS_RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(DAVIS_RESOLUTIONS)}; got {self.resolution!r}.")
        if self.annotation not in SAV_ANNOTATIONS:
            raise ValueError(f"annotation must be 'manual' or 'auto', got {self.annotation!r}.")
        if self.max_masks is not None and self.max_masks < 1:
            raise ValueError(f"max_masks must be >= 1 or null, got {self.max_masks}.")
        if self.frames_per_video < 1 or self.min_area < 0:
            raise ValueError("frames_per_video must be >= 1 and min_area >= 0.")


@dataclass
class AugmentConfig:
    """Pixel augmentation drawn once per clip and applied to all its frames.

    Not used with a feature cache: a crop, flip or colour change alters the encoder's output,
    which the cache has computed once for the unaugmented frames (time reversal, frame
    sampling and object sampling still vary from clip to clip).
    """

    enabled: bool = True
    hflip_prob: float = 0.5
    crop_scale: Tuple[float, float] = (0.5, 1.0)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def __post_init__(self) -> None:
        in_range("clip.augment.hflip_prob", self.hflip_prob, 0.0, 1.0)
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"clip.augment.crop_scale must satisfy 0 < low <= high <= 1, got {list(self.crop_scale)}.")
        for name in ("brightness", "contrast", "saturation"):
            in_range(f"clip.augment.{name}", getattr(self, name), 0.0, 1.0)
        in_range("clip.augment.hue", self.hue, 0.0, 0.5)


@dataclass
class ClipConfig:
    """How training clips are cut from the videos.

    Attributes:
        num_frames: T, frames per clip.
        stride: inclusive (min, max) frame step, drawn per clip.
        reverse_prob: chance of playing a clip backwards.
        max_objects: at most this many objects per clip, among those visible on frame 0.
        size: (H, W) frames are resized (and cropped, with augmentation) to; null keeps each
            video's own size (clips are processed one at a time, so sizes may differ).
        augment: pixel augmentation (ignored with a feature cache).
    """

    num_frames: int = 8
    stride: Tuple[int, int] = (1, 1)
    reverse_prob: float = 0.0
    max_objects: int = 3
    size: Optional[Tuple[int, int]] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.max_objects < 1 or not 1 <= self.stride[0] <= self.stride[1]:
            raise ValueError("clip needs num_frames >= 1, max_objects >= 1 and 1 <= stride[0] <= stride[1].")
        if self.num_frames > MAX_CLIP_FRAMES:
            raise ValueError(
                f"clip.num_frames is {self.num_frames}; at most {MAX_CLIP_FRAMES} frames fit one "
                "training clip (8 is usual)."
            )
        in_range("clip.reverse_prob", self.reverse_prob, 0.0, 1.0)
        if self.size is not None and (len(self.size) != 2 or not all(1 <= side <= MAX_SIDE for side in self.size)):
            raise ValueError(
                f"clip.size must be null or [height, width], each in 1..{MAX_SIDE}; got {list(self.size)}."
            )
