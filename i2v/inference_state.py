"""Per-video inference state: a small typed object instead of SAM 2's 18-key dict.

What grows with the video is bounded: decoded frames and encoder outputs live in small LRU
caches, each object's memory bank has a fixed size, and exact tracked outputs are kept only
for the frames still in memory. Every tracked frame also keeps a compact copy of its output
(:class:`CompactLogits`: the low-resolution logits clamped to +-32 and stored as int8 in CPU
memory, 1 byte per low-resolution pixel), so a correction click on any tracked frame is
decoded with that frame's mask as its prior, as SAM 2 does. What the user gave (prompts, and
the outputs on prompted frames) is kept until the user clears it.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from i2v.errors import StateError, UnknownObjectError
from i2v.io.video_source import VideoSource
from i2v.memory_bank import MemoryBank, MemoryEntry
from i2v.pass_history import PassHistory


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


# SAM 2 clamps a stored mask to this range before feeding it back as a correction prior; the
# compact copies of tracked outputs keep exactly that range.
LOGIT_CLAMP = 32.0
_INT8_STEP = LOGIT_CLAMP / 127.0


class CompactLogits:
    """A tracked output kept for the rest of the video in 1 byte per low-resolution pixel.

    The logits are clamped to +-``LOGIT_CLAMP`` and quantised to int8 (step 32/127, so at most
    0.126 off); a positive logit never rounds to 0, so ``> 0`` gives the same mask. Stored as
    ``bytes`` in CPU memory: 4 KiB per object and frame for the tiny model (64x64), 64 KiB for
    vit_b/l/h (256x256). (A bytes object costs its length in RSS; a small numpy or torch array
    per frame cost up to 4x that through allocator overhead.)
    """

    __slots__ = ("codes", "shape", "iou", "presence_logit")

    def __init__(self, out: FrameOutput) -> None:
        x = out.low_res_logits.detach().float().clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
        q = torch.round(x / _INT8_STEP)
        q = torch.where((x > 0) & (q < 1), torch.ones_like(q), q)  # keep the mask's sign
        self.codes = q.to(torch.int8).cpu().numpy().tobytes()
        self.shape = tuple(q.shape)
        self.iou, self.presence_logit = out.iou, out.presence_logit

    def expand(self) -> FrameOutput:
        """The stored output as a FrameOutput with (1, 1, 4h, 4w) float32 logits (CPU)."""
        codes = np.frombuffer(self.codes, dtype=np.int8).reshape(self.shape)
        logits = torch.from_numpy(codes.astype(np.float32)) * _INT8_STEP
        return FrameOutput(logits, self.iou, self.presence_logit)


class ObjectState:
    """Everything known about one object in one video: what the user gave, its memory, its
    outputs and what the tracking policy keeps for it.

    Its methods keep these together: a prompted frame's prompts, output, memory entry and
    policy state are recorded by :meth:`record_prompted` in one step, a tracked frame's by
    :meth:`record_tracked`; everything is stored on ``storage_device``. Read the attributes;
    change them only through the methods.

    Attributes:
        points, masks: frame -> the user's clicks / box, or mask (bool, CPU), on that frame.
        prompted_outputs: frame -> the output of the prompts there.
        last: the latest output of the current pass (the next frame's mask prior).
        policy_state: what the tracking policy keeps for the object in this pass (e.g. the
            motion-aware policy's box filter); None for the default policy.
    """

    def __init__(
        self, obj_id: int, bank: MemoryBank, max_outputs: int, storage_device: Optional[torch.device] = None
    ) -> None:
        self.obj_id = obj_id
        self.bank = bank
        self.storage_device = torch.device("cpu") if storage_device is None else storage_device
        self.points: Dict[int, PointPrompt] = {}
        self.masks: Dict[int, torch.Tensor] = {}
        self.prompted_outputs: Dict[int, FrameOutput] = {}
        # Exact outputs of the most recent tracked frames, and a compact copy of every one.
        self._tracked: "collections.OrderedDict[int, FrameOutput]" = collections.OrderedDict()
        self._compact: Dict[int, CompactLogits] = {}
        self._max_outputs = max_outputs
        self.last: Optional[FrameOutput] = None
        self.policy_state: Any = None

    @property
    def prompted_frames(self) -> List[int]:
        return sorted(set(self.points) | set(self.masks))

    def output(self, frame_idx: int) -> Optional[FrameOutput]:
        """The newest output on ``frame_idx``: a prompted one, else the tracked one (exact while
        the frame is recent, else from its compact copy), else None."""
        out = self.prompted_outputs.get(frame_idx)
        if out is None:
            out = self._tracked.get(frame_idx)
        if out is None and frame_idx in self._compact:
            out = self._compact[frame_idx].expand()
        return out

    @property
    def tracked_frames(self) -> List[int]:
        """Frames with a tracked (not prompted) output, sorted."""
        return sorted(self._compact)

    def prior(self) -> Optional[torch.Tensor]:
        """(1, 1, 4h, 4w) logits of the latest output of this pass when the object was present
        there, else None: the mask prior a tracked frame starts from."""
        last = self.last
        return last.low_res_logits if last is not None and last.present else None

    def _stored(self, out: FrameOutput) -> FrameOutput:
        return FrameOutput(out.low_res_logits.to(self.storage_device), out.iou, out.presence_logit)

    def record_prompted(
        self,
        frame_idx: int,
        prompt: Union[PointPrompt, torch.Tensor],
        out: FrameOutput,
        entry: MemoryEntry,
        policy_state: Any,
    ) -> None:
        """The user prompted the object on ``frame_idx`` with clicks / a box (a PointPrompt) or
        an (H, W) mask: these replace its earlier prompts there (clicks replace a mask and the
        other way round), ``out`` and the prompted memory ``entry`` replace what the frame held,
        ``out`` becomes the latest output and the policy restarts from ``policy_state``."""
        if isinstance(prompt, PointPrompt):
            self.masks.pop(frame_idx, None)
            self.points[frame_idx] = prompt
        else:
            self.points.pop(frame_idx, None)
            self.masks[frame_idx] = prompt.bool().cpu()
        self.bank.add(entry.to(self.storage_device))
        self.prompted_outputs[frame_idx] = self._stored(out)
        self.last = self.prompted_outputs[frame_idx]
        self.policy_state = policy_state

    def resume_prompted(self, frame_idx: int, policy_state: Any) -> None:
        """A pass reached prompted frame ``frame_idx``: its output stands and becomes the latest,
        and the policy restarts from ``policy_state``."""
        self.last = self.prompted_outputs[frame_idx]
        self.policy_state = policy_state

    def record_tracked(
        self, frame_idx: int, out: FrameOutput, entry: Optional[MemoryEntry] = None, policy_state: Any = None
    ) -> None:
        """The object was tracked on ``frame_idx``: ``out`` is its output there and the latest,
        ``entry`` (if any) its new memory, ``policy_state`` what the policy keeps from here."""
        if entry is not None:
            self.bank.add(entry.to(self.storage_device))
        out = self._stored(out)
        self._tracked[frame_idx] = out
        self._tracked.move_to_end(frame_idx)
        while len(self._tracked) > self._max_outputs:
            self._tracked.popitem(last=False)
        self._compact[frame_idx] = CompactLogits(out)
        self.last = out
        self.policy_state = policy_state

    def start_pass(self) -> None:
        """Reset the memory of tracked frames before a new propagation; prompts, their outputs
        and the outputs of earlier passes stay (each is replaced when its frame is tracked
        again). An object with no prompt left forgets its tracked outputs too."""
        if not self.prompted_frames:
            self._tracked.clear()
            self._compact.clear()
        self.bank.remove_unprompted()
        self.last = None
        self.policy_state = None

    def clear_frame(self, frame_idx: int) -> None:
        """Forget the object's prompts on ``frame_idx`` and everything they produced there."""
        self.points.pop(frame_idx, None)
        self.masks.pop(frame_idx, None)
        self.prompted_outputs.pop(frame_idx, None)
        self._tracked.pop(frame_idx, None)
        self._compact.pop(frame_idx, None)
        self.bank.discard(frame_idx)


class InferenceState:
    """The state of one video for :class:`i2v.video_predictor.I2VVideoPredictor`.

    SAM 2 client code may read the keys in ``SAM2_KEYS`` as from SAM 2's state dict
    (``state["video_height"]``, ``"obj_ids" in state``, ``state.keys()``, ``state.get(key)``).
    """

    SAM2_KEYS = (
        "num_frames",
        "video_height",
        "video_width",
        "obj_ids",
        "device",
        "offload_video_to_cpu",
        "offload_state_to_cpu",
    )

    def __init__(
        self,
        video: VideoSource,
        device: torch.device,
        *,
        bank_size: int,
        make_bank,
        window: int,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
        feature_cache_size: int = 4,
    ) -> None:
        self.video = video
        self.device = device
        self.storage_device = torch.device("cpu") if offload_state_to_cpu else device
        self._offload_state_to_cpu = offload_state_to_cpu
        self.async_loading_frames = async_loading_frames
        # Sources are not thread-safe; async loading reads frames in a second thread.
        self._video_lock = threading.Lock()
        self.tracks: Dict[int, ObjectState] = {}
        self._make_bank = make_bank
        self._max_outputs = bank_size
        self.history = PassHistory(window)
        # frame_idx -> (raw embedding (1, C, h, w), input size before padding)
        self.features: "collections.OrderedDict[int, Tuple[torch.Tensor, Tuple[int, int]]]" = collections.OrderedDict()
        self.feature_cache_size = feature_cache_size
        self.input_size: Optional[Tuple[int, int]] = None  # frame size after SAM's resize
        # Which propagation pass owns the state: a generator whose pass is no longer current
        # (another propagation started, or the state was reset) stops with StateError.
        self._pass_id = 0

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

    @property
    def offload_state_to_cpu(self) -> bool:
        return self._offload_state_to_cpu

    @property
    def offload_video_to_cpu(self) -> bool:
        """Always True: frames are decoded on demand into CPU memory and never kept on the
        device, whatever ``init_state`` was given (SAM 2's key, answered for its clients)."""
        return True

    def __getitem__(self, key: str):
        if isinstance(key, str) and key in self.SAM2_KEYS:
            return getattr(self, key)
        raise KeyError(
            f"{key!r} is not one of the SAM 2 state keys this state answers ({', '.join(self.SAM2_KEYS)}); "
            "the state is a typed object: read its attributes (tracks, video, ...) for the rest."
        )

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.SAM2_KEYS

    def __iter__(self):
        return iter(self.SAM2_KEYS)

    def keys(self) -> List[str]:
        """The SAM 2 state keys this state answers."""
        return list(self.SAM2_KEYS)

    def get(self, key: str, default=None):
        """``state[key]`` for a key in ``SAM2_KEYS``, else ``default`` (as ``dict.get``)."""
        return self[key] if key in self else default

    # -- propagation passes ---------------------------------------------------------------------
    def begin_pass(self) -> int:
        """Make a new propagation pass the current one; returns its id."""
        self._pass_id += 1
        return self._pass_id

    def check_pass(self, pass_id: int) -> None:
        """StateError unless ``pass_id`` is still the current pass."""
        if pass_id != self._pass_id:
            raise StateError(
                "this propagate_in_video generator is no longer current: another propagation was "
                "started on the same state (or the state was reset) after it. Run one propagation "
                "at a time per state: finish or drop the first loop before starting the next."
            )

    @property
    def is_stream(self) -> bool:
        return type(self.video).__name__ == "StreamSource"

    def read_frame(self, frame_idx: int) -> np.ndarray:
        """Frame ``frame_idx`` as (H, W, 3) uint8; safe to call from the async loader thread."""
        with self._video_lock:
            return self.video.frame(frame_idx)

    # -- objects -----------------------------------------------------------------------------
    def track(self, obj_id: int, create: bool = False) -> ObjectState:
        if obj_id not in self.tracks:
            if not create:
                raise UnknownObjectError(
                    f"object id {obj_id} is not tracked in this state; known ids: {self.obj_ids}. "
                    "Add it with add_new_points_or_box or add_new_mask first."
                )
            self.tracks[obj_id] = ObjectState(obj_id, self._make_bank(), self._max_outputs, self.storage_device)
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
        self._pass_id += 1
