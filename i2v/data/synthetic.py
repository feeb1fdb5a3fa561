"""Built-in synthetic videos with exact masks, for CPU training runs, tests and demos.

Each video is a textured background seen through a panning, zooming camera under drifting
lighting, with 1-3 annotated objects (textured blobs that move, turn, grow or shrink and change
shape) and, often, unannotated extras. The scenes are scripted to defeat a tracker that has no
memory of the first frame:

* **occlusion** - an object in front (annotated or not) slides over a target, swelling as if
  it came nearer, hides it fully for a few frames, then moves off;
* **exit** - a target leaves the frame for a few frames and comes back;
* **look-alike distractors** - unannotated blobs with nearly the same texture and colour as a
  target, held next to it (next to where it vanished, when it vanishes).

With the defaults about half the videos have a full occlusion or an exit, and half have a
look-alike. Every annotated object shows at least 60% of its area on frame 0, so a first-frame
prompt is always possible. Masks are the visible parts and exact by construction.

Frame size: 160 x 120 (W x H) by default. It has the 4:3 shape of most video, the tiny SAM's
128 px input takes it at 0.8x (objects of 24-48 px across become 2-5 tokens of its 8 px patch
grid), and a frame renders in a few milliseconds on one core, so data loading never bottlenecks
CPU training.

Everything is deterministic: video ``seed`` seeds one ``np.random.Generator`` for the scene, and
sensor noise of frame ``t`` comes from ``default_rng([noise_seed, t])``; no global RNG is used.
Dataset videos use :func:`video_seed`, which puts the split in the top bits, so train, val and
test never share a seed (nor with any seed below ``2**62`` given to :func:`generate_video`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Tuple

import numpy as np

from i2v.data import synthetic_scene
from i2v.data.base import VideoClip, VideoDataset
from i2v.data.synthetic_scene import SceneEvent
from i2v.data.synthetic_shapes import Scene, render_frame
from i2v.errors import ConfigError, FrameIndexError

__all__ = [
    "SPLITS",
    "SceneEvent",
    "SyntheticConfig",
    "SyntheticVideoDataset",
    "generate_video",
    "sample_scene",
    "video_seed",
]

SPLITS: Tuple[str, ...] = ("train", "val", "test")
_SPLIT_CODES: Dict[str, int] = {"train": 1, "val": 2, "test": 3}
_FIELD_BITS = 31


@dataclass
class SyntheticConfig:
    """How synthetic videos look and how hard they are. Sizes and speeds are fractions of
    ``min(height, width)`` so a config keeps its meaning at any resolution.

    Attributes:
        height, width: frame size in pixels (default 120 x 160, see the module docstring).
        num_frames: frames per video.
        min_objects, max_objects: annotated objects per video (uniform in the range).
        object_size: (low, high) semi-axis of an object.
        max_speed: largest object speed per frame.
        max_rotation: largest object spin, radians per frame.
        max_scale_change: largest log-size excursion of an object over the video.
        deformation: largest total amplitude of the outline's radial harmonics (shape wobble).
        camera_pan: largest camera pan per frame.
        camera_zoom: largest log-zoom excursion of the camera over the video.
        lighting: strength of brightness / contrast / colour / gradient drift.
        noise_std: sensor noise standard deviation in uint8 levels.
        occlusion_prob: chance a video has a target fully hidden by an object in front.
        exit_prob: chance a video has a target leave the frame and come back.
        distractor_prob: chance a video has look-alike distractors.
        max_distractors: look-alikes in such a video (uniform in 1..max_distractors).
        min_hidden_frames, max_hidden_frames: length of a full occlusion or an absence.
        min_color_distance: least RGB distance between an object's and the background's mean
            colour (0 allows camouflage).
    """

    height: int = 120
    width: int = 160
    num_frames: int = 24
    min_objects: int = 1
    max_objects: int = 3
    object_size: Tuple[float, float] = (0.1, 0.2)
    max_speed: float = 0.03
    max_rotation: float = 0.08
    max_scale_change: float = 0.35
    deformation: float = 0.2
    camera_pan: float = 0.012
    camera_zoom: float = 0.15
    lighting: float = 0.2
    noise_std: float = 2.0
    occlusion_prob: float = 0.35
    exit_prob: float = 0.3
    distractor_prob: float = 0.5
    max_distractors: int = 2
    min_hidden_frames: int = 2
    max_hidden_frames: int = 5
    min_color_distance: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "object_size":
                ok = isinstance(value, (tuple, list)) and len(value) == 2
                if not ok or not all(_is_real(x) for x in value):
                    raise ConfigError(
                        f"SyntheticConfig.object_size must be a (low, high) pair of numbers, got {value!r}."
                    )
                self.object_size = (float(value[0]), float(value[1]))
            elif f.type in ("int", int) and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
                raise ConfigError(f"SyntheticConfig.{f.name} must be an int, got {value!r}.")
            elif f.type in ("float", float) and not _is_real(value):
                raise ConfigError(f"SyntheticConfig.{f.name} must be a number, got {value!r}.")
        checks = [
            ("height", 32 <= self.height <= 4096, "must be in [32, 4096]"),
            ("width", 32 <= self.width <= 4096, "must be in [32, 4096]"),
            ("num_frames", self.num_frames >= 1, "must be >= 1"),
            ("min_objects", self.min_objects >= 1, "must be >= 1"),
            ("max_objects", self.min_objects <= self.max_objects <= 16, "must be in [min_objects, 16]"),
            (
                "object_size",
                0.02 <= self.object_size[0] <= self.object_size[1] <= 0.3,
                "must satisfy 0.02 <= low <= high <= 0.3",
            ),
            ("max_distractors", 0 <= self.max_distractors <= 16, "must be in [0, 16]"),
            (
                "max_distractors",
                self.distractor_prob == 0 or self.max_distractors >= 1,
                "must be >= 1 when distractor_prob > 0",
            ),
            ("min_hidden_frames", self.min_hidden_frames >= 1, "must be >= 1"),
            ("max_hidden_frames", self.max_hidden_frames >= self.min_hidden_frames, "must be >= min_hidden_frames"),
            ("deformation", 0.0 <= self.deformation <= 0.5, "must be in [0, 0.5]"),
            ("lighting", 0.0 <= self.lighting <= 1.0, "must be in [0, 1]"),
            ("min_color_distance", 0.0 <= self.min_color_distance <= 0.5, "must be in [0, 0.5]"),
        ]
        for name in ("occlusion_prob", "exit_prob", "distractor_prob"):
            checks.append((name, 0.0 <= getattr(self, name) <= 1.0, "must be in [0, 1]"))
        for name in ("max_speed", "max_rotation", "max_scale_change", "camera_pan", "camera_zoom", "noise_std"):
            checks.append((name, 0.0 <= getattr(self, name) <= 100.0, "must be in [0, 100]"))
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"SyntheticConfig.{name} {rule}, got {getattr(self, name)!r}.")


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def sample_scene(seed: int, config: Optional[SyntheticConfig] = None) -> Tuple[Scene, List[SceneEvent]]:
    """Sample the scene parameters of video ``seed`` and its scripted events; render a frame
    with :func:`i2v.data.synthetic_shapes.render_frame`."""
    return synthetic_scene.sample_scene(seed, config if config is not None else SyntheticConfig())


def video_seed(split: str, index: int, seed: int = 0) -> int:
    """Seed of video ``index`` of ``split`` in a dataset built with ``seed``.

    The split code (1-3) fills bits 62-63, ``seed`` bits 31-61 and ``index`` bits 0-30, so the
    map is injective and different splits can never share a video seed.
    """
    if not isinstance(split, str) or split not in _SPLIT_CODES:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}.")
    for name, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < 2**_FIELD_BITS:
            raise ConfigError(f"{name} must be in [0, 2**31), got {value!r}.")
    return (_SPLIT_CODES[split] << (2 * _FIELD_BITS)) | (int(seed) << _FIELD_BITS) | int(index)


class SyntheticVideoDataset(VideoDataset):
    """``num_videos`` synthetic videos of one split, rendered frame by frame on demand.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; splits never share a video seed.
        num_videos: number of videos.
        config: scene settings (default :class:`SyntheticConfig`).
        seed: dataset seed in [0, 2**31); another seed gives other videos of the same split.
        cache_size: scenes kept in memory (a scene is a few kB; sampling one costs 5-10 ms).
    """

    def __init__(
        self,
        split: str = "train",
        num_videos: int = 100,
        config: Optional[SyntheticConfig] = None,
        seed: int = 0,
        cache_size: int = 16,
    ) -> None:
        if not isinstance(num_videos, int) or not 0 <= num_videos <= 2**_FIELD_BITS:
            raise ConfigError(f"num_videos must be an int in [0, 2**31], got {num_videos!r}.")
        if config is not None and not isinstance(config, SyntheticConfig):
            raise ConfigError(f"config must be a SyntheticConfig, got {type(config).__name__}.")
        video_seed(split, 0, seed)  # validates split and seed
        self.split, self.seed, self.config = split, int(seed), config if config is not None else SyntheticConfig()
        self._num_videos, self._cache_size = num_videos, max(1, int(cache_size))
        self._scenes: "OrderedDict[int, Tuple[Scene, List[SceneEvent]]]" = OrderedDict()
        # frame() and masks() of the same t usually come in pairs: render once for both.
        self._frames: "OrderedDict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]]" = OrderedDict()

    def __len__(self) -> int:
        return self._num_videos

    def video_seed(self, index: int) -> int:
        """The seed :func:`generate_video` would take to render video ``index``."""
        self._check_index(index)
        return video_seed(self.split, index, self.seed)

    def video_name(self, index: int) -> str:
        self._check_index(index)
        return f"synthetic-{self.split}-{self.seed}-{index:05d}"

    def num_frames(self, index: int) -> int:
        self._check_index(index)
        return self.config.num_frames

    def obj_ids(self, index: int) -> List[int]:
        scene = self.scene(index)
        return sorted(o.obj_id for o in scene.objects if o.obj_id > 0)

    def scene(self, index: int) -> Scene:
        """The (cached) scene parameters of video ``index``."""
        return self._scene_and_events(index)[0]

    def events(self, index: int) -> List[SceneEvent]:
        """The scripted occlusions, exits and look-alike passes of video ``index``."""
        return list(self._scene_and_events(index)[1])

    def frame(self, index: int, t: int) -> np.ndarray:
        return self._render(index, t)[0].copy()

    def masks(self, index: int, t: int) -> np.ndarray:
        label = self._render(index, t)[1]
        ids = np.asarray(self.obj_ids(index), dtype=np.int16)
        return label[None] == ids[:, None, None]

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._num_videos:
            raise IndexError(f"video index {index} out of range for {self._num_videos} videos.")

    def _scene_and_events(self, index: int) -> Tuple[Scene, List[SceneEvent]]:
        self._check_index(index)
        if index in self._scenes:
            self._scenes.move_to_end(index)
        else:
            self._scenes[index] = sample_scene(video_seed(self.split, index, self.seed), self.config)
            if len(self._scenes) > self._cache_size:
                self._scenes.popitem(last=False)
        return self._scenes[index]

    def _render(self, index: int, t: int) -> Tuple[np.ndarray, np.ndarray]:
        scene = self.scene(index)
        if not 0 <= t < scene.num_frames:
            raise FrameIndexError(f"frame {t} out of range for video {index} with {scene.num_frames} frames.")
        key = (index, int(t))
        if key not in self._frames:
            self._frames[key] = render_frame(scene, int(t))
            if len(self._frames) > 2:
                self._frames.popitem(last=False)
        return self._frames[key]


def generate_video(seed: int, config: Optional[SyntheticConfig] = None) -> VideoClip:
    """Render every frame of the synthetic video ``seed`` (any non-negative int).

    Returns:
        A :class:`VideoClip` with frames (T, H, W, 3) uint8 and masks (T, N, H, W) bool.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}.")
    scene, _ = sample_scene(int(seed), config)
    ids = np.array(sorted(o.obj_id for o in scene.objects if o.obj_id > 0), dtype=np.int16)
    rendered = [render_frame(scene, t) for t in range(scene.num_frames)]
    return VideoClip(
        name=f"synthetic-{seed}",
        frame_indices=np.arange(scene.num_frames, dtype=np.int64),
        frames=np.stack([f for f, _ in rendered]),
        masks=np.stack([lab[None] == ids[:, None, None] for _, lab in rendered]),
        obj_ids=[int(i) for i in ids],
        annotated=np.ones(scene.num_frames, dtype=bool),
    )
