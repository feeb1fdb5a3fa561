"""Per-video inference state: a small typed object instead of SAM 2's 18-key dict.

What grows with the video is bounded: decoded frames and encoder outputs live in small LRU
caches, each object's memory bank has a fixed size, and tracked outputs are kept only for
the frames still in memory. What the user gave (prompts, and the outputs on prompted frames)
is kept until the user clears it.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Tuple

import numpy as np
import torch

from i2v.errors import UnknownObjectError
from i2v.io.video_source import VideoSource
from i2v.memory_bank import MemoryBank

if TYPE_CHECKING:
    from i2v.motion import BoxKalman


@dataclass
class PointPrompt:
    """Clicks and/or a box on one frame, in video pixel coordinates.

    Attributes:
        coords: (P, 2) float XY, or None.
        labels: (P,) int (1 positive, 0 negative, 2/3 box corners), or None.
        box: (4,) float XYXY, or None.
    """

    coords: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    box: Optional[np.ndarray] = None

    @property
    def num_points(self) -> int:
        return 0 if self.coords is None else int(self.coords.shape[0])


@dataclass
class FrameOutput:
    """An object's prediction on one frame, at the model's low resolution.

    Attributes:
        low_res_logits: (1, 1, 4h, 4w) mask logits (absent objects already filled in).
        iou: predicted IoU; presence_logit: object-presence logit.
    """

    low_res_logits: torch.Tensor
    iou: float
    presence_logit: float

    @property
    def present(self) -> bool:
        return self.presence_logit > 0


class ObjectTrack:
    """Everything known about one object: its prompts, its memory, its recent outputs."""

    def __init__(self, obj_id: int, bank: MemoryBank, max_outputs: int) -> None:
        self.obj_id = obj_id
        self.bank = bank
        self.points: Dict[int, PointPrompt] = {}
        self.masks: Dict[int, torch.Tensor] = {}
        self.prompted_outputs: Dict[int, FrameOutput] = {}
        self._tracked: "collections.OrderedDict[int, FrameOutput]" = collections.OrderedDict()
        self._max_outputs = max_outputs
        self.last: Optional[FrameOutput] = None  # latest output of the current pass
        self.motion: Optional["BoxKalman"] = None  # its box's motion in this pass (ModelConfig.motion)

    @property
    def prompted_frames(self) -> List[int]:
        return sorted(set(self.points) | set(self.masks))

    def output(self, frame_idx: int) -> Optional[FrameOutput]:
        """The newest output on ``frame_idx``: a prompted one, else a recent tracked one."""
        out = self.prompted_outputs.get(frame_idx)
        return out if out is not None else self._tracked.get(frame_idx)

    def record_tracked(self, frame_idx: int, out: FrameOutput) -> None:
        self._tracked[frame_idx] = out
        self._tracked.move_to_end(frame_idx)
        while len(self._tracked) > self._max_outputs:
            self._tracked.popitem(last=False)
        self.last = out

    def start_pass(self) -> None:
        """Forget tracked results before a new propagation; prompts and their outputs stay."""
        self._tracked.clear()
        self.bank.remove_unprompted()
        self.last = None
        self.motion = None

    def clear_frame(self, frame_idx: int) -> None:
        self.points.pop(frame_idx, None)
        self.masks.pop(frame_idx, None)
        self.prompted_outputs.pop(frame_idx, None)
        self._tracked.pop(frame_idx, None)
        self.bank.discard(frame_idx)


@dataclass
class PassHistory:
    """The frames processed just before the current one in this pass (for the upgrader).

    Attributes:
        direction: +1 forward, -1 reverse, 0 before the first frame.
        pooled: (frame_idx, (1, p*p, C) tokens), the most recent last.
    """

    window: int
    direction: int = 0
    pooled: Deque[Tuple[int, torch.Tensor]] = field(default_factory=collections.deque)

    def reset(self, direction: int = 0) -> None:
        self.direction = direction
        self.pooled.clear()

    def past(self, frame_idx: int) -> Optional[torch.Tensor]:
        """(1, W', p*p, C) tokens of the frames right before ``frame_idx`` in this pass."""
        tokens = []
        expected = frame_idx - self.direction
        for idx, pooled in reversed(self.pooled):
            if idx != expected or len(tokens) == self.window:
                break
            tokens.append(pooled)
            expected -= self.direction
        if not tokens or self.direction == 0:
            return None
        return torch.stack(tokens, dim=1)

    def push(self, frame_idx: int, pooled: torch.Tensor) -> None:
        self.pooled.append((frame_idx, pooled))
        while len(self.pooled) > self.window:
            self.pooled.popleft()


class InferenceState:
    """The state of one video for :class:`i2v.video_predictor.I2VVideoPredictor`.

    SAM 2 client code may read ``state["num_frames"]``, ``state["video_height"]``,
    ``state["video_width"]`` and ``state["obj_ids"]``.
    """

    def __init__(
        self,
        video: VideoSource,
        device: torch.device,
        *,
        bank_size: int,
        make_bank,
        window: int,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
        feature_cache_size: int = 4,
    ) -> None:
        self.video = video
        self.device = device
        self.storage_device = torch.device("cpu") if offload_state_to_cpu else device
        self.offload_video_to_cpu = offload_video_to_cpu
        self.async_loading_frames = async_loading_frames
        # Sources are not thread-safe; async loading reads frames in a second thread.
        self._video_lock = threading.Lock()
        self.tracks: Dict[int, ObjectTrack] = {}
        self._make_bank = make_bank
        self._max_outputs = bank_size
        self.history = PassHistory(window)
        # frame_idx -> (raw embedding (1, C, h, w), input size before padding)
        self.features: "collections.OrderedDict[int, Tuple[torch.Tensor, Tuple[int, int]]]" = collections.OrderedDict()
        self.feature_cache_size = feature_cache_size
        self.input_size: Optional[Tuple[int, int]] = None  # frame size after SAM's resize

    # -- SAM 2 compatibility ---------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self.video)

    @property
    def video_height(self) -> int:
        return self.video.height

    @property
    def video_width(self) -> int:
        return self.video.width

    @property
    def obj_ids(self) -> List[int]:
        """Object ids in first-seen order."""
        return list(self.tracks)

    def __getitem__(self, key: str):
        if key in ("num_frames", "video_height", "video_width", "obj_ids"):
            return getattr(self, key)
        raise KeyError(
            f"{key!r}: the state is a typed object; read its attributes (tracks, video, ...) "
            "instead of SAM 2's internal keys."
        )

    @property
    def is_stream(self) -> bool:
        return type(self.video).__name__ == "StreamSource"

    def read_frame(self, frame_idx: int) -> np.ndarray:
        """Frame ``frame_idx`` as (H, W, 3) uint8; safe to call from the async loader thread."""
        with self._video_lock:
            return self.video.frame(frame_idx)

    # -- objects -----------------------------------------------------------------------------
    def track(self, obj_id: int, create: bool = False) -> ObjectTrack:
        if obj_id not in self.tracks:
            if not create:
                raise UnknownObjectError(
                    f"object id {obj_id} is not tracked in this state; known ids: {self.obj_ids}. "
                    "Add it with add_new_points_or_box or add_new_mask first."
                )
            self.tracks[obj_id] = ObjectTrack(obj_id, self._make_bank(), self._max_outputs)
        return self.tracks[obj_id]

    # -- caches ------------------------------------------------------------------------------
    def cached_features(self, frame_idx: int) -> Optional[Tuple[torch.Tensor, Tuple[int, int]]]:
        item = self.features.get(frame_idx)
        if item is not None:
            self.features.move_to_end(frame_idx)
        return item

    def cache_features(self, frame_idx: int, raw: torch.Tensor, input_size: Tuple[int, int]) -> None:
        self.features[frame_idx] = (raw, input_size)
        while len(self.features) > self.feature_cache_size:
            self.features.popitem(last=False)

    def reset(self) -> None:
        """Forget all objects and prompts; the video stays open."""
        self.tracks.clear()
        self.history.reset(self.history.direction if self.is_stream else 0)
        self.features.clear()
