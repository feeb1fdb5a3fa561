"""I2VVideoPredictor: SAM 2 client code runs unchanged, on every video source, in streaming
mode, with every flag, and objects are independent of each other.

The model is a random tiny SAM, so masks mean nothing; what is tested is the contract
(shapes, dtypes, orders, absent-object logits, prompt bookkeeping) and exact equalities
between ways of computing the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image
from video_files import write_video

import i2v
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.errors import FrameIndexError, StateError, VideoError

T, H, W = 8, 64, 80
ABSENT = -1024.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor(tiny_sam_file: Path) -> i2v.I2VVideoPredictor:
    return i2v.build_i2v_video_predictor("tiny", sam_checkpoint=tiny_sam_file, device="cpu")


@pytest.fixture(scope="module")
def clip() -> Tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames and (T, 3, H, W) exact masks of 3 objects."""
    ds = SyntheticVideoDataset(
        "test", 1, config=SyntheticConfig(height=H, width=W, num_frames=T, min_objects=3, max_objects=3)
    )
    c = ds.clip(0, range(T))
    assert c.frames.shape == (T, H, W, 3) and c.masks.shape == (T, 3, H, W)
    return c.frames, c.masks


def inside_point(mask: np.ndarray) -> List[float]:
    """A pixel of ``mask`` close to its centroid, as [x, y]."""
    ys, xs = np.nonzero(mask)
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return [float(xs[i]), float(ys[i])]


def bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def write_frames(folder: Path, frames: np.ndarray, ext: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.{ext}")
    return folder


def write_mp4(path: Path, frames: np.ndarray) -> Path:
    return write_video(path, frames)


def check_masks(masks: torch.Tensor, num_objects: int, h: int = H, w: int = W) -> None:
    """The output contract: float32 logits (N, 1, H, W) at the video's resolution."""
    assert isinstance(masks, torch.Tensor)
    assert masks.dtype == torch.float32
    assert tuple(masks.shape) == (num_objects, 1, h, w)
    assert torch.isfinite(masks).all()


def run(predictor, state, **kwargs) -> Dict[int, torch.Tensor]:
    """Propagate; every frame is yielded once, with the state's object ids."""
    out: Dict[int, torch.Tensor] = {}
    for frame_idx, obj_ids, masks in predictor.propagate_in_video(state, **kwargs):
        assert frame_idx not in out, f"frame {frame_idx} yielded twice"
        assert obj_ids == state.obj_ids
        check_masks(masks, len(obj_ids), state.video_height, state.video_width)
        out[frame_idx] = masks.clone()
    return out


# -- 1. the SAM 2 notebook flow ----------------------------------------------------------------
def test_sam2_notebook_flow(predictor, clip, tmp_path: Path) -> None:
    frames, gt = clip
    video_dir = write_frames(tmp_path / "video", frames, "jpg")

    # -- written as SAM 2 client code (only the builder line differs) --
    inference_state = predictor.init_state(video_path=str(video_dir))
    predictor.reset_state(inference_state)
    assert inference_state["num_frames"] == T
    assert (inference_state["video_height"], inference_state["video_width"]) == (H, W)
    assert inference_state["obj_ids"] == []

    ann_frame_idx, ann_obj_id = 0, 1
    points = np.array([inside_point(gt[0, 0])], dtype=np.float32)
    labels = np.array([1], np.int32)
    frame_idx, out_obj_ids, out_mask_logits = predictor.add_new_points_or_box(
        inference_state=inference_state,
        frame_idx=ann_frame_idx,
        obj_id=ann_obj_id,
        points=points,
        labels=labels,
    )
    assert frame_idx == 0 and out_obj_ids == [1]
    check_masks(out_mask_logits, 1)
    first_click = out_mask_logits.clone()

    video_segments = {}
    logits = {}
    order = []
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagate_in_video(inference_state):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
        }
        logits[out_frame_idx] = out_mask_logits.clone()
        order.append(out_frame_idx)
        check_masks(out_mask_logits, 1)
    assert order == list(range(T))
    assert all(seg[1].shape == (1, H, W) and seg[1].dtype == bool for seg in video_segments.values())
    assert torch.equal(logits[0], first_click)  # a prompted frame keeps its prompted output

    # A second object, added after propagation, with a box on another frame ...
    box_frame = 3
    box = np.array(bbox(gt[box_frame, 1]), dtype=np.float32)
    frame_idx, out_obj_ids, out_mask_logits = predictor.add_new_points_or_box(
        inference_state=inference_state,
        frame_idx=box_frame,
        obj_id=2,
        box=box,
    )
    assert frame_idx == box_frame and out_obj_ids == [1, 2]
    check_masks(out_mask_logits, 2)
    # ... the other object's output on that frame is what propagation produced there
    assert torch.equal(out_mask_logits[0], logits[box_frame][0])

    # ... refined with a click that keeps the box
    click = np.array([inside_point(gt[box_frame, 1])], dtype=np.float32)
    _, out_obj_ids, out_mask_logits = predictor.add_new_points_or_box(
        inference_state,
        box_frame,
        2,
        points=click,
        labels=np.array([1], np.int32),
        clear_old_points=False,
    )
    assert out_obj_ids == [1, 2]
    check_masks(out_mask_logits, 2)
    prompt = inference_state.tracks[2].points[box_frame]
    assert prompt.box is not None and prompt.num_points == 1

    # Propagate again, for a bounded number of frames: k yields k + 1 frames.
    k = 4
    seg = run(predictor, inference_state, start_frame_idx=0, max_frame_num_to_track=k)
    assert list(seg) == list(range(k + 1))
    assert all(m.shape[0] == 2 for m in seg.values())

    # A third object from a mask on frame 5 (not reached by the last propagation).
    mask_frame = 5
    given = gt[mask_frame, 2] > 0
    frame_idx, out_obj_ids, out_mask_logits = predictor.add_new_mask(inference_state, mask_frame, 3, given)
    assert frame_idx == mask_frame and out_obj_ids == [1, 2, 3]
    check_masks(out_mask_logits, 3)
    assert iou(out_mask_logits[2, 0].numpy() > 0, given) > 0.95
    # As in SAM 2, object 1 shows its output of the first (full) propagation on frame 5, and
    # object 2, added after it, has no output there (the last propagation stopped at 4): absent.
    assert torch.equal(out_mask_logits[0], logits[mask_frame][0])
    assert (out_mask_logits[1] == ABSENT).all()
    # ... and object 3, whose only prompt is on frame 5, is absent on a frame it has no output.
    _, out_obj_ids, out_mask_logits = predictor.add_new_points_or_box(
        inference_state,
        7,
        1,
        points=np.array([inside_point(gt[7, 0])], np.float32),
        labels=np.array([1], np.int32),
    )
    assert out_obj_ids == [1, 2, 3]
    assert (out_mask_logits[1:] == ABSENT).all()

    # Propagate in reverse from frame 5: frames 5, 4, ..., 0, once each.
    seg = run(predictor, inference_state, start_frame_idx=mask_frame, reverse=True)
    assert list(seg) == list(range(mask_frame, -1, -1))
    assert iou(seg[mask_frame][2, 0].numpy() > 0, given) > 0.95

    # remove_object returns (obj_ids, updated_frames) like SAM 2: the remaining objects'
    # masks on the frames where the removed object had prompts.
    obj_ids, updated_frames = predictor.remove_object(inference_state, 2)
    assert obj_ids == [1, 3] == inference_state["obj_ids"]
    assert [f for f, _ in updated_frames] == [box_frame]
    check_masks(updated_frames[0][1], 2)
    assert torch.equal(updated_frames[0][1], seg[box_frame][[0, 2]])
    assert predictor.remove_object(inference_state, 2) == ([1, 3], [])  # not strict: no-op
    seg = run(predictor, inference_state, max_frame_num_to_track=1)
    assert list(seg) == [0, 1] and all(m.shape[0] == 2 for m in seg.values())

    predictor.reset_state(inference_state)
    assert inference_state["obj_ids"] == []
    with pytest.raises(StateError):
        predictor.propagate_in_video(inference_state)
    # The state is still usable after a reset.
    _, out_obj_ids, out_mask_logits = predictor.add_new_points_or_box(
        inference_state, 2, 5, points=points, labels=labels
    )
    assert out_obj_ids == [5]
    check_masks(out_mask_logits, 1)


def test_normalized_coordinates_equal_pixels(predictor, clip) -> None:
    frames, gt = clip
    state = predictor.init_state(frames)
    x, y = inside_point(gt[0, 0])
    box = bbox(gt[0, 1])
    # Separate objects: a second prompt of the same object would be a correction of the first.
    _, _, pixels = predictor.add_new_points_or_box(state, 0, 1, points=[[x, y]], labels=[1])
    _, _, unit = predictor.add_new_points_or_box(
        state, 0, 2, points=[[x / W, y / H]], labels=[1], normalize_coords=False
    )
    torch.testing.assert_close(unit[1], pixels[0], atol=1e-5, rtol=0)
    _, _, pixels = predictor.add_new_points_or_box(state, 0, 3, box=box)
    unit_box = [box[0] / W, box[1] / H, box[2] / W, box[3] / H]
    _, _, unit = predictor.add_new_points_or_box(state, 0, 4, box=unit_box, normalize_coords=False)
    torch.testing.assert_close(unit[3], pixels[2], atol=1e-5, rtol=0)


def test_clear_all_prompts_in_frame(predictor, clip) -> None:
    frames, gt = clip
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[inside_point(gt[0, 0])], labels=[1])
    _, _, before = predictor.add_new_points_or_box(state, 2, 2, points=[inside_point(gt[2, 1])], labels=[1])
    assert predictor.clear_all_prompts_in_frame(state, 0, 1, need_output=False) is None
    frame_idx, obj_ids, masks = predictor.clear_all_prompts_in_frame(state, 2, 1)  # nothing there: harmless
    assert frame_idx == 2 and obj_ids == [1, 2]
    check_masks(masks, 2)
    assert (masks[0] == ABSENT).all() and torch.equal(masks[1], before[1])
    # Object 1 has no prompt left: it stays known (as in SAM 2) but is absent everywhere.
    seg = run(predictor, state, start_frame_idx=0, max_frame_num_to_track=3)
    assert list(seg) == [0, 1, 2, 3]
    assert all((m[0] == ABSENT).all() for m in seg.values())
    assert torch.equal(seg[2][1], before[1])


@pytest.mark.parametrize(
    "start, k, reverse, expected",
    [
        (2, 0, False, [2]),
        (2, 2, False, [2, 3, 4]),
        (5, 9, False, [5, 6, 7]),
        (4, 2, True, [4, 3, 2]),
        (1, 5, True, [1, 0]),
    ],
)
def test_max_frame_num_to_track_and_reverse(predictor, clip, start, k, reverse, expected) -> None:
    frames, gt = clip
    state = predictor.init_state(frames)
    predictor.add_new_mask(state, 3, 1, gt[3, 0])
    seg = run(predictor, state, start_frame_idx=start, max_frame_num_to_track=k, reverse=reverse)
    assert list(seg) == expected


def test_default_start_frames(predictor, clip) -> None:
    """No start: the earliest prompted frame, in both directions (as SAM 2 does)."""
    frames, gt = clip
    state = predictor.init_state(frames)
    predictor.add_new_mask(state, 2, 1, gt[2, 0])
    predictor.add_new_mask(state, 4, 2, gt[4, 1])
    assert list(run(predictor, state, max_frame_num_to_track=1)) == [2, 3]
    assert list(run(predictor, state, max_frame_num_to_track=1, reverse=True)) == [2, 1]


# -- 2. every video source -----------------------------------------------------------------------
def _track_source(predictor, video, gt) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
    state = predictor.init_state(video)
    assert (state["num_frames"], state["video_height"], state["video_width"]) == (T, H, W)
    _, _, first = predictor.add_new_points_or_box(state, 0, 1, points=[inside_point(gt[0, 0])], labels=[1])
    return first, run(predictor, state, max_frame_num_to_track=2)


def test_video_sources(predictor, clip, tmp_path: Path) -> None:
    frames, gt = clip
    lossless = {
        "png folder (Path)": write_frames(tmp_path / "png", frames, "png"),
        "png folder (str)": str(tmp_path / "png"),
        "numpy array": frames,
        "list of arrays": list(frames),
        "list of PIL images": [Image.fromarray(f) for f in frames],
        "torch uint8 tensor (T,H,W,3)": torch.from_numpy(frames.copy()),
    }
    reference = None
    for name, video in lossless.items():
        first, seg = _track_source(predictor, video, gt)
        assert list(seg) == [0, 1, 2], name
        if reference is None:
            reference = (first, seg)
        else:
            assert torch.equal(first, reference[0]), name
            assert all(torch.equal(seg[t], reference[1][t]) for t in seg), name
    # Lossy sources just run with the same contract.
    for video in (str(write_frames(tmp_path / "jpg", frames, "jpg")), str(write_mp4(tmp_path / "v.mp4", frames))):
        first, seg = _track_source(predictor, video, gt)
        check_masks(first, 1)
        assert list(seg) == [0, 1, 2]


# -- 3. streaming ----------------------------------------------------------------------------------
def test_streaming(predictor, clip) -> None:
    frames, gt = clip
    buffer_size = 4
    state = predictor.init_stream(buffer_size=buffer_size)
    assert predictor.add_frame(state, frames[0]) == 0
    assert state["num_frames"] == 1 and (state["video_height"], state["video_width"]) == (H, W)
    frame_idx, obj_ids, masks = predictor.add_new_points_or_box(
        state, 0, 1, points=[inside_point(gt[0, 0])], labels=[1]
    )
    assert frame_idx == 0 and obj_ids == [1]
    check_masks(masks, 1)
    _, _, masks = predictor.add_new_mask(state, 0, 2, gt[0, 1])
    check_masks(masks, 2)

    bank_size = predictor.model.config.memory.bank_size
    n = 60
    for i in range(1, n + 1):
        frame = frames[i % T] if (i // T) % 2 == 0 else frames[T - 1 - i % T]  # back and forth
        frame_idx, obj_ids, masks = predictor.track(state, frame)
        assert frame_idx == i and obj_ids == [1, 2]
        check_masks(masks, 2)
    assert state["num_frames"] == n + 1

    # Memory stays bounded whatever the stream's length.
    for track in state.tracks.values():
        assert len(track.bank) <= bank_size
        assert len(track._tracked) <= bank_size
        assert len(track.prompted_outputs) == 1
    assert len(state.video._buffer) <= buffer_size
    assert len(state.features) <= state.feature_cache_size
    assert len(state.history.pooled) <= state.history.window

    # Frame 0 left the buffer: prompting it says so, and changes nothing.
    with pytest.raises(FrameIndexError, match="buffer"):
        predictor.add_new_points_or_box(state, 0, 3, points=[[10, 10]], labels=[1])
    assert state.obj_ids == [1, 2]
    # A recent frame can still be prompted.
    _, obj_ids, masks = predictor.add_new_points_or_box(state, n, 3, points=[[10, 10]], labels=[1])
    assert obj_ids == [1, 2, 3]
    check_masks(masks, 3)
    # Frames of another size are refused without breaking the stream.
    with pytest.raises(VideoError, match="size"):
        predictor.track(state, np.zeros((H + 2, W, 3), np.uint8))
    frame_idx, _, masks = predictor.track(state, frames[0])
    assert frame_idx == n + 1
    check_masks(masks, 3)


def test_stream_without_objects_and_misuse(predictor, clip) -> None:
    frames, _ = clip
    state = predictor.init_stream()
    frame_idx, obj_ids, masks = predictor.track(state, frames[0])
    assert (frame_idx, obj_ids) == (0, [])
    check_masks(masks, 0)
    video_state = predictor.init_state(frames)
    with pytest.raises(StateError):
        predictor.track(video_state, frames[0])
    with pytest.raises(StateError):
        predictor.add_frame(video_state, frames[0])


# -- 4. flags ----------------------------------------------------------------------------------------
def test_offload_and_async_flags_give_same_masks(predictor, clip, tmp_path: Path) -> None:
    frames, gt = clip
    folder = write_frames(tmp_path / "png", frames, "png")  # async loading matters for decoded sources

    def masks(**flags):
        state = predictor.init_state(str(folder), **flags)
        predictor.add_new_points_or_box(state, 0, 1, points=[inside_point(gt[0, 0])], labels=[1])
        predictor.add_new_mask(state, 2, 2, gt[2, 1])
        forward = run(predictor, state, max_frame_num_to_track=4)
        backward = run(predictor, state, start_frame_idx=4, reverse=True)
        return forward, backward

    reference = masks()
    for flags in ({"offload_state_to_cpu": True}, {"async_loading_frames": True}):
        got = masks(**flags)
        for ref, other in zip(reference, got):
            assert list(ref) == list(other), flags
            assert all(torch.equal(ref[t], other[t]) for t in ref), flags


# -- 5. objects are independent ----------------------------------------------------------------------
def test_multi_object_batching_equals_single_objects(predictor, clip) -> None:
    frames, gt = clip
    prompts = [
        lambda s: predictor.add_new_points_or_box(s, 0, 1, points=[inside_point(gt[0, 0])], labels=[1]),
        lambda s: predictor.add_new_points_or_box(s, 1, 2, box=bbox(gt[1, 1])),
        lambda s: predictor.add_new_mask(s, 2, 3, gt[2, 2]),
    ]
    state = predictor.init_state(frames)
    for prompt in prompts:
        prompt(state)
    span = 5  # frames 0..5: the prompted frames and tracking before and after them
    joint = run(predictor, state, start_frame_idx=0, max_frame_num_to_track=span)
    assert list(joint) == list(range(span + 1))
    for i, prompt in enumerate(prompts):
        alone = predictor.init_state(frames)
        prompt(alone)
        single = run(predictor, alone, start_frame_idx=0, max_frame_num_to_track=span)
        for t in joint:
            torch.testing.assert_close(joint[t][i], single[t][0], atol=1e-4, rtol=0, msg=f"object {i + 1} frame {t}")


def test_async_loading_with_prompts_inside_the_loop(predictor, clip, tmp_path: Path) -> None:
    """The loader thread and a prompt given mid-propagation never decode concurrently."""
    frames, gt = clip
    video = str(write_mp4(tmp_path / "v.mp4", frames))  # a decoder is the least thread-safe source

    def interleaved(**flags):
        state = predictor.init_state(video, **flags)
        predictor.add_new_points_or_box(state, 0, 1, points=[inside_point(gt[0, 0])], labels=[1])
        out = {}
        for frame_idx, _, masks in predictor.propagate_in_video(state, max_frame_num_to_track=3):
            far = T - 1 - frame_idx  # not cached: a seek while the loader decodes the next frame
            _, _, prompted = predictor.add_new_mask(state, far, 2, gt[far, 1])
            out[frame_idx], out[("mask", far)] = masks.clone(), prompted.clone()
        return out

    reference, got = interleaved(), interleaved(async_loading_frames=True)
    assert list(reference) == list(got)
    assert all(torch.equal(reference[k], got[k]) for k in reference)
