"""The video predictor: SAM 2's video-predictor API on top of an upgraded SAM.

Code written for SAM 2's ``SAM2VideoPredictor`` runs with the builder line changed::

    predictor = i2v.build_i2v_video_predictor("tiny")
    state = predictor.init_state("video.mp4")
    _, obj_ids, masks = predictor.add_new_points_or_box(state, 0, 1, points=[[x, y]], labels=[1])
    for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
        ...

Masks are float32 logits (num_objects, 1, H, W) at the video's resolution (threshold > 0);
an object absent on a frame gets ``config.absent_logit`` (-1024) everywhere.

A click on a frame that already has an output (a tracked frame, or a frame prompted before) is
decoded with that output's logits, clamped to +-32, as SAM's mask prompt, as in SAM 2. The
corrected frame then becomes a prompted frame: unlike SAM 2, which re-tracks it on the next
propagation, the correction is kept by every later pass until it is cleared.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from i2v.errors import PromptError, StateError, UnknownObjectError, VideoError
from i2v.frame_engine import FrameEngine, FrameResult, apply_non_overlapping_constraints
from i2v.inference_state import FrameOutput, InferenceState, PointPrompt
from i2v.io.video_source import VideoLike, open_video
from i2v.memory_bank import MemoryBank
from i2v.precision import float32_method
from i2v.prompt_inputs import (
    ArrayLike,
    check_box,
    check_frame_count,
    check_frame_index,
    check_mask,
    check_obj_id,
    check_points,
)
from i2v.prompting import PRIOR_CLAMP, PromptedObject, prompt_with_mask, prompt_with_points
from i2v.streaming import StreamSource
from i2v.tracking_ops import mask_to_low_res

__all__ = ["PRIOR_CLAMP", "FrameResult", "I2VVideoPredictor", "PromptArray", "apply_non_overlapping_constraints"]

# Clicks, labels, boxes and masks as users hold them: numpy arrays, torch tensors, nested lists.
PromptArray = ArrayLike


class I2VVideoPredictor(FrameEngine):
    """Promptable video segmentation with an upgraded SAM.

    Args:
        model: the upgraded SAM (frozen SAM + adapters).
        frame_cache_size: decoded frames kept per video (LRU).
        feature_cache_size: encoder outputs kept per video (LRU).
        non_overlap_masks: resolve overlaps in every returned set of masks as SAM 2's
            ``non_overlap_masks=True`` does (see :meth:`_apply_non_overlapping_constraints`).
            Memory is not affected: each object remembers its own mask.
        progress: show progress bars while ``init_state`` reads a frame folder and while
            ``propagate_in_video`` runs (tqdm, on stderr).
        policy: how the objects of a frame are tracked (:mod:`i2v.policies`): None for the
            default policy, ``MotionAwarePolicy()`` for motion-aware selection. To compare
            policies, build one predictor per policy on the same model.
    """

    # -- state -------------------------------------------------------------------------------
    def _new_state(self, video, **flags: Any) -> InferenceState:
        cfg = self.model.config
        return InferenceState(
            video,
            self.device,
            bank_size=cfg.memory.bank_size,
            make_bank=lambda: MemoryBank(cfg.memory.bank_size, cfg.memory.filter),
            window=cfg.upgrader.window,
            feature_cache_size=self.feature_cache_size,
            **flags,
        )

    @torch.inference_mode()
    def init_state(
        self,
        video_path: VideoLike,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> InferenceState:
        """Open a video (folder of JPEG frames, or of PNG frames when it holds no JPEG; video
        file, array, tensor or list of frames).

        Frames are decoded lazily; ``offload_state_to_cpu`` keeps memory entries and cached
        features in CPU memory; ``async_loading_frames`` decodes the next frame in a
        background thread during propagation. Frames are never stored on the GPU, so
        ``offload_video_to_cpu`` holds by construction.
        """
        video = open_video(
            video_path if not isinstance(video_path, Path) else str(video_path),
            cache_size=self.frame_cache_size,
            progress=self.progress,
        )
        if len(video) == 0:
            raise VideoError(f"{video_path!r} has no frames.")
        self._check_frame_size(video.height, video.width)
        del offload_video_to_cpu  # SAM 2's keyword: frames are never stored on the device here
        return self._new_state(
            video, offload_state_to_cpu=offload_state_to_cpu, async_loading_frames=async_loading_frames
        )

    def init_stream(self, buffer_size: int = 8, offload_state_to_cpu: bool = False) -> InferenceState:
        """A state for frames that arrive one at a time; feed them with :meth:`track`.

        Prompt a frame with the usual ``add_new_points_or_box`` / ``add_new_mask`` once it has
        been pushed (``add_frame`` pushes without segmenting). Memory stays constant.
        """
        state = self._new_state(StreamSource(buffer_size), offload_state_to_cpu=offload_state_to_cpu)
        state.history.reset(direction=1)
        return state

    def add_frame(self, state: InferenceState, frame: Any) -> int:
        """Push a frame onto a stream without segmenting it; returns its index."""
        t = self._stream(state).push(frame)
        self._check_frame_size(state.video_height, state.video_width)
        return t

    @torch.inference_mode()
    @float32_method
    def track(self, state: InferenceState, frame: Any) -> FrameResult:
        """Push the next frame of a stream and segment every object on it."""
        t = self._stream(state).push(frame)
        self._check_frame_size(state.video_height, state.video_width)
        if not state.tracks:
            return t, [], torch.zeros(0, 1, state.video_height, state.video_width, device=self.device)
        state.history.direction = 1
        return t, state.obj_ids, self._step(state, t)

    def reset_state(self, state: InferenceState) -> None:
        """Remove every object and prompt; the video stays open."""
        state.reset()

    # -- prompts -------------------------------------------------------------------------------
    @torch.inference_mode()
    @float32_method
    def add_new_points_or_box(
        self,
        inference_state: InferenceState,
        frame_idx: int,
        obj_id: int,
        points: Optional[PromptArray] = None,
        labels: Optional[PromptArray] = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Optional[PromptArray] = None,
    ) -> FrameResult:
        """Add clicks and/or a box for one object on one frame.

        Args:
            points: (P, 2) XY (pixels; in [0, 1] with ``normalize_coords=False``).
            labels: (P,) 1 positive, 0 negative.
            clear_old_points: replace this object's earlier clicks on this frame.
            box: [x0, y0, x1, y1].
        Returns:
            (frame_idx, obj_ids, masks (num_objects, 1, H, W) logits) for all objects.
        """
        state = inference_state
        t = check_frame_index(frame_idx, state.num_frames)
        obj = check_obj_id(obj_id)
        w, h = state.video_width, state.video_height
        coords, lab = check_points(points, labels, w, h, normalize_coords)
        box_px = check_box(box, w, h, normalize_coords)
        if coords is None and box_px is None:
            raise PromptError("give points with labels, or a box (or use add_new_mask).")
        track = state.tracks.get(obj)
        old = track.points.get(t) if track is not None else None
        if not clear_old_points and old is not None:
            if coords is not None and old.coords is not None:
                coords, lab = np.concatenate([old.coords, coords]), np.concatenate([old.labels, lab])
            elif coords is None:
                coords, lab = old.coords, old.labels
            box_px = box_px if box_px is not None else old.box
        prompt = PointPrompt(coords, lab, box_px)
        previous = track.output(t) if track is not None else None  # a correction: SAM 2 feeds it back
        frame = self._prepared(state, t)
        points, labels, box_in = self._input_pixels(state, prompt)
        prior = previous.low_res_logits if previous is not None else None
        done = prompt_with_points(self.model, frame, t, points, labels, box_in, prior)
        self._record_prompted(state, obj, t, prompt, done)
        return t, state.obj_ids, self._masks_on_frame(state, t)

    add_new_points = add_new_points_or_box  # SAM 2's older name

    @torch.inference_mode()
    @float32_method
    def add_new_mask(
        self, inference_state: InferenceState, frame_idx: int, obj_id: int, mask: PromptArray
    ) -> FrameResult:
        """Give an object's mask on one frame (any size; resized to the video's)."""
        state = inference_state
        t = check_frame_index(frame_idx, state.num_frames)
        obj = check_obj_id(obj_id)
        full = check_mask(mask, state.video_width, state.video_height).to(self.device)
        frame = self._prepared(state, t)
        m = self.model
        coverage = mask_to_low_res(full[None], self._input_size(state), m.image_size, m.low_res_size)
        self._record_prompted(state, obj, t, full, prompt_with_mask(m, frame, t, coverage))
        return t, state.obj_ids, self._masks_on_frame(state, t)

    @float32_method
    def clear_all_prompts_in_frame(
        self, inference_state: InferenceState, frame_idx: int, obj_id: int, need_output: bool = True
    ) -> Optional[FrameResult]:
        """Remove one object's prompts (and what they produced) on one frame."""
        state = inference_state
        t = check_frame_index(frame_idx, state.num_frames)
        state.track(check_obj_id(obj_id)).clear_frame(t)
        if not need_output:
            return None
        with torch.inference_mode():
            return t, state.obj_ids, self._masks_on_frame(state, t)

    @float32_method
    def remove_object(
        self, inference_state: InferenceState, obj_id: int, strict: bool = False, need_output: bool = True
    ) -> Tuple[List[int], List[Tuple[int, torch.Tensor]]]:
        """Forget an object. Returns (obj_ids, [(frame_idx, masks), ...]): as in SAM 2, the
        remaining objects' masks on the frames where the removed object had prompts."""
        state = inference_state
        obj_id = check_obj_id(obj_id)
        if obj_id not in state.tracks:
            if strict:
                raise UnknownObjectError(f"object id {obj_id} is not tracked; known ids: {state.obj_ids}.")
            return state.obj_ids, []
        frames = state.tracks.pop(obj_id).prompted_frames
        updated: List[Tuple[int, torch.Tensor]] = []
        if need_output and state.tracks:
            with torch.inference_mode():
                updated = [(f, self._masks_on_frame(state, f)) for f in frames]
        return state.obj_ids, updated

    # -- propagation ---------------------------------------------------------------------------
    def propagate_in_video(
        self,
        inference_state: InferenceState,
        start_frame_idx: Optional[int] = None,
        max_frame_num_to_track: Optional[int] = None,
        reverse: bool = False,
    ) -> Iterator[FrameResult]:
        """Yield (frame_idx, obj_ids, masks) for every frame from the start, end inclusive.

        The start defaults to the earliest prompted frame, also when ``reverse`` (as in SAM 2);
        ``max_frame_num_to_track=k`` yields k + 1 frames; reverse from frame 0 yields nothing
        (as in SAM 2). Arguments are checked before the first frame is produced, and nothing
        in the state changes until then. One propagation at a time per state: a generator
        whose pass was superseded (another propagation started, or ``reset_state``) raises
        StateError when advanced.
        """
        state = inference_state
        self.propagate_in_video_preflight(state)
        prompted = sorted({f for tr in state.tracks.values() for f in tr.prompted_frames})
        if start_frame_idx is None:
            start_frame_idx = prompted[0]  # SAM 2: the earliest prompted frame, in both directions
        start = check_frame_index(start_frame_idx, state.num_frames)
        span = state.num_frames if max_frame_num_to_track is None else check_frame_count(max_frame_num_to_track)
        end = max(start - span, 0) if reverse else min(start + span, state.num_frames - 1)
        step = -1 if reverse else 1
        frames = [] if reverse and start == 0 else list(range(start, end + step, step))
        return self._propagate(state, frames, step)

    def propagate_in_video_preflight(self, inference_state: InferenceState) -> None:
        """Check that ``inference_state`` can be propagated (SAM 2's method of that name).

        Nothing needs consolidating here (outputs are kept per object), so this only raises
        StateError for a stream state or a state without prompts, and changes nothing.
        """
        state = inference_state
        if not isinstance(state, InferenceState):
            raise StateError(f"expected the state returned by init_state, got {type(state).__name__}.")
        if state.is_stream:
            raise StateError(
                "propagate_in_video needs a whole video, but this state is a stream (init_stream): "
                "segment each new frame with predictor.track(state, frame) instead. The stream's "
                "memory is unchanged."
            )
        if not any(tr.prompted_frames for tr in state.tracks.values()):
            raise StateError("no prompts yet: call add_new_points_or_box or add_new_mask before propagate_in_video.")

    def _propagate(self, state: InferenceState, frames: Sequence[int], direction: int) -> Iterator[FrameResult]:
        if not frames:
            return
        pass_id = state.begin_pass()
        for track in state.tracks.values():
            track.start_pass()
        state.history.reset(direction)
        pool = ThreadPoolExecutor(max_workers=1) if state.async_loading_frames else None
        bar = tqdm(total=len(frames), desc="propagate in video", unit="frame", disable=not self.progress)
        try:
            pending: Dict[int, Future] = {}
            for i, t in enumerate(frames):
                if i > 0:
                    state.check_pass(pass_id)
                if pool is not None:
                    for nxt in frames[i : i + 2]:
                        if nxt not in pending:
                            pending[nxt] = pool.submit(state.read_frame, nxt)
                image = pending.pop(t).result() if pool is not None else None
                with torch.inference_mode(), self.precision.float32(self.device):
                    masks = self._step(state, t, image)
                bar.update(1)
                yield t, state.obj_ids, masks
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    # -- prompts, recorded -----------------------------------------------------------------------
    def _record_prompted(
        self,
        state: InferenceState,
        obj_id: int,
        t: int,
        prompt: Union[PointPrompt, torch.Tensor],
        done: PromptedObject,
    ) -> None:
        out = FrameOutput(done.logits, float(done.iou[0]), done.presence_logit)
        track = state.track(obj_id, create=True)
        track.record_prompted(t, prompt, out, done.entry, self.policy.restart(self.model, out))

    def _input_pixels(
        self, state: InferenceState, prompt: PointPrompt
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """A prompt's (P, 2) clicks, (P,) labels and (4,) box in SAM's input pixels (or None)."""
        size = (state.video_height, state.video_width)
        points = labels = box = None
        if prompt.coords is not None and prompt.labels is not None:
            points = torch.as_tensor(self.model.transform.apply_coords(prompt.coords.copy(), size))
            labels = torch.as_tensor(prompt.labels)
        if prompt.box is not None:
            box = torch.as_tensor(self.model.transform.apply_boxes(prompt.box[None].copy(), size))[0]
        return points, labels, box
