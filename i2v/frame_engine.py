"""The predictor's per-frame engine: features, tracking one frame with the policy, outputs.

:class:`FrameEngine` is what :class:`i2v.video_predictor.I2VVideoPredictor` builds its SAM 2
API on: it reads a frame's encoder output (cached per video), prepares the frame (with the
pass's upgrader window when tracking, without it when prompting), hands the frame's tracked
objects to the tracking policy (:mod:`i2v.policies`), records what the policy returns in each
:class:`~i2v.inference_state.ObjectState`, and turns the objects' outputs on a frame into
video-resolution masks.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import torch

from i2v.errors import PromptError, StateError, VideoError
from i2v.inference_state import FrameOutput, InferenceState, ObjectState
from i2v.model import FrameFeatures, SamI2V
from i2v.policies import DefaultPolicy, ObjectInput, TrackingPolicy
from i2v.precision import PrecisionGuard
from i2v.streaming import StreamSource

# SAM 2's non-overlap rule clamps every object but the strongest of a pixel to at most this.
NON_OVERLAP_LOGIT = -10.0

FrameResult = Tuple[int, List[int], torch.Tensor]


class FrameEngine:
    """Per-frame steps of the video predictor (see the module docstring); its arguments are
    documented on :class:`i2v.video_predictor.I2VVideoPredictor`, the class users build.
    """

    def __init__(
        self,
        model: SamI2V,
        frame_cache_size: int = 8,
        feature_cache_size: int = 4,
        non_overlap_masks: bool = False,
        progress: bool = True,
        *,
        policy: Optional[TrackingPolicy] = None,
    ) -> None:
        self.model = model.eval()
        self.frame_cache_size = frame_cache_size
        self.feature_cache_size = feature_cache_size
        self.precision = PrecisionGuard()  # a caller's torch.autocast reaches the image encoder only
        self.non_overlap_masks = bool(non_overlap_masks)
        self.progress = bool(progress)
        self.policy: TrackingPolicy = DefaultPolicy.for_config(model.config) if policy is None else policy

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        """The side of SAM's square input in pixels (1024 for vit_b/l/h), as SAM 2's attribute."""
        return self.model.image_size

    def _step(self, state: InferenceState, t: int, image: Optional[np.ndarray] = None) -> torch.Tensor:
        """Segment every object on frame ``t`` of the current pass; (N, 1, H, W) logits."""
        raw, _ = self._features(state, t, image)
        frame = self.model.prepare_frame(raw, state.history.past(t))
        state.history.push(t, frame.pooled)
        tracked = []
        for track in state.tracks.values():
            if t in track.prompted_outputs:  # what the user gave stands, and restarts the policy
                track.resume_prompted(t, self.policy.restart(self.model, track.prompted_outputs[t]))
            elif track.prompted_frames:
                tracked.append(track)
        if tracked:
            self._track_objects(state, t, frame, tracked)
        return self._masks_on_frame(state, t)

    def _track_objects(self, state: InferenceState, t: int, frame: FrameFeatures, tracks: List[ObjectState]) -> None:
        objects = [
            ObjectInput(tr.prior(), tr.bank.select(t, frame.descriptor), tr.policy_state, tr.obj_id) for tr in tracks
        ]
        out = self.policy.track(self.model, frame, t, objects, self._extent(state))
        tracked = out.tracked
        for i, track in enumerate(tracks):
            output = FrameOutput(tracked.logits[i : i + 1], float(tracked.iou[i]), float(tracked.presence_logits[i]))
            track.record_tracked(t, output, tracked.entries[i], out.states[i])

    def _features(
        self, state: InferenceState, t: int, image: Optional[np.ndarray] = None
    ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        cached = state.cached_features(t)
        if cached is not None:
            return cached[0].to(self.device), cached[1]
        x, input_size = self.model.preprocess(state.read_frame(t) if image is None else image)
        with self.precision.encoder():
            raw = self.model.encode_images(x)
        state.cache_features(t, raw.to(state.storage_device), input_size)
        state.input_size = input_size
        return raw, input_size

    def _prepared(self, state: InferenceState, t: int) -> FrameFeatures:
        """A prompted frame's features: no upgrader window (as on a clip's first frame)."""
        if isinstance(state.video, StreamSource):
            state.video.require(t)  # prompting follows buffer_size, not the feature cache
        raw, _ = self._features(state, t)
        return self.model.prepare_frame(raw, None)

    def _check_frame_size(self, height: int, width: int) -> None:
        """VideoError if SAM's resize (long side to ``image_size``) leaves a side of 0 pixels."""
        h, w = self.model.transform.get_preprocess_shape(height, width, self.model.image_size)
        if min(h, w) < 1:
            raise VideoError(
                f"frames of {width}x{height} (WxH) are too elongated for this model: scaled to its "
                f"{self.model.image_size}-pixel input they would be {w}x{h}. Crop or pad them to an "
                f"aspect ratio below {2 * self.model.image_size}:1."
            )

    def _input_size(self, state: InferenceState) -> Tuple[int, int]:
        """(h', w') of the video's frames after SAM's resize, before padding."""
        if state.input_size is None:
            h, w = self.model.transform.get_preprocess_shape(
                state.video_height, state.video_width, self.model.image_size
            )
            state.input_size = (h, w)
        return state.input_size

    def _extent(self, state: InferenceState) -> Tuple[int, int]:
        """(h, w) of the picture in the decoder's mask pixels (the rest is SAM's padding)."""
        h, w = self._input_size(state)
        low_h, low_w = self.model.low_res_size
        s = self.model.image_size
        return math.ceil(h * low_h / s), math.ceil(w * low_w / s)

    def _masks_on_frame(self, state: InferenceState, t: int) -> torch.Tensor:
        """(N, 1, H, W) float32 logits of every object on frame ``t`` at video resolution."""
        h, w = state.video_height, state.video_width
        if not state.tracks:
            return torch.zeros(0, 1, h, w, device=self.device)
        low = []
        for track in state.tracks.values():
            out = track.output(t)
            if out is None:
                absent = self.model.config.absent_logit
                low.append(torch.full((1, 1, *self.model.low_res_size), absent, device=self.device))
            else:
                low.append(out.low_res_logits.to(self.device))
        masks = self.model.sam.postprocess_masks(torch.cat(low).float(), self._input_size(state), (h, w)).float()
        return self._apply_non_overlapping_constraints(masks) if self.non_overlap_masks else masks

    @staticmethod
    def _apply_non_overlapping_constraints(pred_masks: torch.Tensor) -> torch.Tensor:
        """SAM 2's method of this name: see :func:`apply_non_overlapping_constraints`."""
        return apply_non_overlapping_constraints(pred_masks)

    @staticmethod
    def _stream(state: InferenceState) -> StreamSource:
        if not isinstance(state.video, StreamSource):
            raise StateError(
                "this state reads a whole video; use propagate_in_video, or init_stream for frames that arrive one by one."
            )
        return state.video


def apply_non_overlapping_constraints(pred_masks: torch.Tensor) -> torch.Tensor:
    """Resolve overlaps between objects as SAM 2 does: on each pixel the object with the
    highest logit keeps its logit, every other object's is clamped to at most -10.

    Args:
        pred_masks: (N, 1, H, W) logits of N objects (any float dtype, any device).
    Returns:
        (N, 1, H, W) logits; at most one object is > 0 on each pixel.
    """
    if not isinstance(pred_masks, torch.Tensor) or pred_masks.ndim != 4 or pred_masks.shape[1] != 1:
        shape = tuple(pred_masks.shape) if hasattr(pred_masks, "shape") else type(pred_masks).__name__
        raise PromptError(f"pred_masks must be a tensor of shape (N, 1, H, W), got {shape}.")
    if pred_masks.shape[0] <= 1:
        return pred_masks
    winner = pred_masks.argmax(dim=0, keepdim=True)  # (1, 1, H, W)
    ids = torch.arange(pred_masks.shape[0], device=pred_masks.device).view(-1, 1, 1, 1)
    return torch.where(winner == ids, pred_masks, pred_masks.clamp(max=NON_OVERLAP_LOGIT))
