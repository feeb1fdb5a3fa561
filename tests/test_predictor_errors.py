"""Bad input to I2VVideoPredictor raises a documented exception with a helpful message, and the
inference state stays usable afterwards; random call sequences keep outputs well-formed.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import i2v
from i2v.errors import (
    FrameIndexError,
    I2VError,
    PromptError,
    StateError,
    UnknownObjectError,
    VideoError,
    VideoNotFoundError,
)

T, H, W = 6, 48, 64
ABSENT = -1024.0


@functools.lru_cache(maxsize=None)
def get_predictor() -> i2v.I2VVideoPredictor:
    """One predictor per module (hypothesis does not mix with function-scoped fixtures).

    The frozen encoder is deterministic, so its outputs are memoised by input: the tests
    here exercise the predictor's bookkeeping, not the encoder.
    """
    predictor = i2v.build_i2v_video_predictor("tiny", device="cpu", allow_random_sam=True)
    model = predictor.model
    encode = model.encode_images
    cache: Dict[str, torch.Tensor] = {}

    def cached_encode(images: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(images.detach().cpu().numpy().tobytes()).hexdigest()
        if key not in cache:
            cache[key] = encode(images)
        return cache[key].clone()

    model.encode_images = cached_encode  # type: ignore[method-assign]
    return predictor


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_frames(n: int = T, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: a bright square moving over noise."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((n, h, w, 3)) * 60).astype(np.uint8)
    for t in range(n):
        frames[t, 10:26, 8 + 3 * t : 26 + 3 * t] = 220
    return frames


FRAMES = make_frames()


def square(t: int = 0) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[10:26, 8 + 3 * t : 26 + 3 * t] = True
    return m


def write_folder(folder: Path, frames: np.ndarray, ext: str = "png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.{ext}")
    return folder


def check_output(result, state, frame_idx: Optional[int] = None) -> None:
    idx, obj_ids, masks = result
    if frame_idx is not None:
        assert idx == frame_idx
    assert obj_ids == state.obj_ids
    assert masks.dtype == torch.float32
    assert tuple(masks.shape) == (len(obj_ids), 1, state.video_height, state.video_width)
    assert torch.isfinite(masks).all()


@pytest.fixture()
def state():
    """A state with objects 1 (clicked on frame 0) and 2 (mask on frame 2)."""
    predictor = get_predictor()
    s = predictor.init_state(FRAMES)
    predictor.add_new_points_or_box(s, 0, 1, points=[[16, 18]], labels=[1])
    predictor.add_new_mask(s, 2, 2, square(2))
    return s


def assert_usable(state, obj_ids: Sequence[int] = (1, 2)) -> None:
    """Nothing changed, and a valid call still works."""
    predictor = get_predictor()
    assert state.obj_ids == list(obj_ids)
    check_output(predictor.add_new_points_or_box(state, 1, 1, points=[[20, 18]], labels=[1]), state, 1)
    assert state.obj_ids == list(obj_ids)


# -- bad calls on a good state -----------------------------------------------------------------------
P = get_predictor

BAD_CALLS: Dict[str, Any] = {
    # frame indices
    "frame too large": (
        FrameIndexError,
        "valid 0..5",
        lambda s: P().add_new_points_or_box(s, T, 1, points=[[5, 5]], labels=[1]),
    ),
    "frame negative": (FrameIndexError, "valid 0..5", lambda s: P().add_new_mask(s, -1, 1, square())),
    "frame float": (
        FrameIndexError,
        "integer",
        lambda s: P().add_new_points_or_box(s, 1.0, 1, points=[[5, 5]], labels=[1]),
    ),
    "frame str": (FrameIndexError, "integer", lambda s: P().clear_all_prompts_in_frame(s, "0", 1)),
    "frame None": (FrameIndexError, "integer", lambda s: P().add_new_mask(s, None, 1, square())),
    "propagate start too large": (
        FrameIndexError,
        "valid 0..5",
        lambda s: P().propagate_in_video(s, start_frame_idx=T),
    ),
    "propagate negative max": (FrameIndexError, ">= 0", lambda s: P().propagate_in_video(s, max_frame_num_to_track=-1)),
    "propagate float max": (
        FrameIndexError,
        "integer",
        lambda s: P().propagate_in_video(s, max_frame_num_to_track=2.5),
    ),
    # objects
    "clear unknown object": (
        UnknownObjectError,
        "known ids: \\[1, 2\\]",
        lambda s: P().clear_all_prompts_in_frame(s, 0, 7),
    ),
    "remove unknown strict": (
        UnknownObjectError,
        "known ids: \\[1, 2\\]",
        lambda s: P().remove_object(s, 7, strict=True),
    ),
    "remove obj_id list": (PromptError, "integer", lambda s: P().remove_object(s, [1])),
    "obj_id str": (PromptError, "integer", lambda s: P().add_new_points_or_box(s, 0, "a", points=[[5, 5]], labels=[1])),
    # points and labels
    "lengths differ": (
        PromptError,
        "one label per point",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5], [6, 6]], labels=[1]),
    ),
    "points (2,)": (
        PromptError,
        "shape \\(P, 2\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[5, 5], labels=[1]),
    ),
    "points (1, 3)": (
        PromptError,
        "shape \\(P, 2\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5, 5]], labels=[1]),
    ),
    "points (2, 2, 2)": (
        PromptError,
        "shape \\(P, 2\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=np.ones((2, 2, 2)), labels=[1, 1]),
    ),
    "labels (1, 1, 1)": (
        PromptError,
        "shape \\(P,\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5]], labels=[[[1]]]),
    ),
    "no points": (
        PromptError,
        "at least one point",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=np.zeros((0, 2)), labels=[]),
    ),
    "label 5": (
        PromptError,
        "1 \\(positive\\) or 0 \\(negative\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5]], labels=[5]),
    ),
    "label -1": (
        PromptError,
        "1 \\(positive\\) or 0 \\(negative\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5]], labels=[-1]),
    ),
    "label 0.5": (
        PromptError,
        "1 \\(positive\\) or 0 \\(negative\\)",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5]], labels=[0.5]),
    ),
    "points NaN": (PromptError, "NaN", lambda s: P().add_new_points_or_box(s, 0, 1, points=[[np.nan, 5]], labels=[1])),
    "points inf": (
        PromptError,
        "infinity",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=torch.tensor([[5.0, float("inf")]]), labels=[1]),
    ),
    "points not numeric": (
        PromptError,
        "numeric",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[["a", "b"]], labels=[1]),
    ),
    "points without labels": (PromptError, "pass both", lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, 5]])),
    "labels without points": (PromptError, "pass both", lambda s: P().add_new_points_or_box(s, 0, 1, labels=[1])),
    "no prompt at all": (PromptError, "give points", lambda s: P().add_new_points_or_box(s, 0, 1)),
    "point outside (pixels)": (
        PromptError,
        "0 <= x <= 64",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[W + 1, 5]], labels=[1]),
    ),
    "point outside (negative)": (
        PromptError,
        "outside",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[5, -0.5]], labels=[1]),
    ),
    "point outside (normalized)": (
        PromptError,
        "outside",
        lambda s: P().add_new_points_or_box(s, 0, 1, points=[[0.5, 1.5]], labels=[1], normalize_coords=False),
    ),
    # boxes
    "box x1 < x0": (PromptError, "x0 <= x1", lambda s: P().add_new_points_or_box(s, 0, 1, box=[30, 5, 10, 20])),
    "box y1 < y0": (PromptError, "y0 <= y1", lambda s: P().add_new_points_or_box(s, 0, 1, box=[5, 30, 10, 20])),
    "box 3 values": (PromptError, "\\[x0, y0, x1, y1\\]", lambda s: P().add_new_points_or_box(s, 0, 1, box=[5, 5, 10])),
    "box NaN": (PromptError, "NaN", lambda s: P().add_new_points_or_box(s, 0, 1, box=[5, 5, np.nan, 10])),
    "box entirely outside": (
        PromptError,
        "entirely outside",
        lambda s: P().add_new_points_or_box(s, 0, 1, box=[100, 100, 120, 130]),
    ),
    "box outside on the right": (
        PromptError,
        "entirely outside",
        lambda s: P().add_new_points_or_box(s, 0, 1, box=[W + 5, 10, W + 20, 20]),
    ),
    "box above the frame": (
        PromptError,
        "entirely outside",
        lambda s: P().add_new_points_or_box(s, 0, 1, box=[5, -20, 30, -1]),
    ),
    "box outside (normalized)": (
        PromptError,
        "entirely outside",
        lambda s: P().add_new_points_or_box(s, 0, 1, box=[1.1, 0.1, 1.5, 0.5], normalize_coords=False),
    ),
    # masks
    "mask 1-d": (PromptError, "shape \\(H, W\\)", lambda s: P().add_new_mask(s, 0, 1, np.ones(W, bool))),
    "mask 3-d": (PromptError, "shape \\(H, W\\)", lambda s: P().add_new_mask(s, 0, 1, np.ones((2, H, W), bool))),
    "mask 4-d": (
        PromptError,
        "shape \\(H, W\\)",
        lambda s: P().add_new_mask(s, 0, 1, np.ones((1, 2, H, W), np.float32)),
    ),
    "mask NaN": (PromptError, "NaN", lambda s: P().add_new_mask(s, 0, 1, np.full((H, W), np.nan, np.float32))),
    "mask empty": (PromptError, "empty", lambda s: P().add_new_mask(s, 0, 1, np.zeros((0, W), bool))),
    "mask object": (PromptError, "array", lambda s: P().add_new_mask(s, 0, 1, object())),
    # wrong mode
    "track on a video": (StateError, "init_stream", lambda s: P().track(s, FRAMES[0])),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_call_raises_documented_error_and_keeps_state(state, name: str) -> None:
    error, hint, call = BAD_CALLS[name]
    assert issubclass(error, I2VError)
    prompts = {
        o: (tr.prompted_frames, dict(tr.points), tr.prompted_outputs[f].low_res_logits.clone())
        for o, tr in state.tracks.items()
        for f in tr.prompted_frames[:1]
    }
    with pytest.raises(error, match=hint):
        call(state)
    for o, (frames, points, logits) in prompts.items():  # prompts and their outputs are untouched
        track = state.tracks[o]
        assert track.prompted_frames == frames and track.points == points
        assert torch.equal(track.prompted_outputs[frames[0]].low_res_logits, logits)
    assert_usable(state)


def test_documented_errors_are_builtin_types_too() -> None:
    assert issubclass(PromptError, ValueError) and issubclass(VideoError, ValueError)
    assert issubclass(FrameIndexError, IndexError) and issubclass(UnknownObjectError, KeyError)
    assert issubclass(VideoNotFoundError, FileNotFoundError) and issubclass(StateError, RuntimeError)
    assert str(UnknownObjectError("id 3 is not tracked")) == "id 3 is not tracked"


def test_lenient_inputs_are_accepted(state) -> None:
    """Documented leniencies: boxes are clipped, SAM 2's batched shapes, unknown non-strict remove."""
    predictor = get_predictor()
    check_output(predictor.add_new_points_or_box(state, 0, 3, box=[-10, -5, W + 20, 30]), state, 0)
    assert state.tracks[3].points[0].box.tolist() == [0, 0, W, 30]
    check_output(predictor.add_new_points_or_box(state, 0, 3, points=[[[5, 5]]], labels=[[1]]), state, 0)
    check_output(predictor.add_new_points_or_box(state, 0, 3, points=[[W, H]], labels=[1]), state, 0)  # on the edge
    check_output(predictor.add_new_mask(state, 0, 4, np.ones((1, H // 2, W // 2), np.uint8)), state, 0)  # resized
    check_output(predictor.add_new_mask(state, 1, 4, torch.from_numpy(square(1))), state, 1)  # a bool tensor
    assert predictor.remove_object(state, 99) == ([1, 2, 3, 4], [])
    with pytest.raises(KeyError):
        state["output_dict"]


# -- bad videos ---------------------------------------------------------------------------------------
def test_empty_videos(tmp_path: Path) -> None:
    predictor = get_predictor()
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames: expected JPEG or PNG"):
        predictor.init_state(str(tmp_path / "empty"))
    with pytest.raises(VideoError, match="at least one frame"):
        predictor.init_state(np.zeros((0, H, W, 3), np.uint8))
    with pytest.raises(VideoError, match="at least one frame"):
        predictor.init_state([])


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    predictor = get_predictor()
    with pytest.raises(VideoNotFoundError, match="does not exist"):
        predictor.init_state(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        predictor.init_state(tmp_path / "nope.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="garbage.mp4.*corrupt or not a video"):
        predictor.init_state(str(garbage))
    with pytest.raises(VideoError, match="uint8"):
        predictor.init_state(FRAMES.astype(np.float32))


def test_folder_of_mixed_sizes_names_the_file(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", FRAMES)
    Image.fromarray(FRAMES[0][:, : W - 2]).save(folder / "00003.png")
    with pytest.raises(VideoError, match="00003.png.*same size"):
        get_predictor().init_state(str(folder))


def test_corrupt_frame_detected_at_open_names_the_file(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v", FRAMES, "jpg")
    (folder / "00003.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(VideoError, match="00003.jpg"):
        get_predictor().init_state(str(folder))


@pytest.mark.parametrize("async_loading_frames", [False, True])
def test_truncated_frame_surfaces_at_propagate_and_names_the_file(tmp_path: Path, async_loading_frames: bool) -> None:
    """A frame whose header reads but whose data is cut short fails when it is decoded."""
    predictor = get_predictor()
    folder = write_folder(tmp_path / "v", FRAMES, "jpg")
    bad = folder / "00003.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    state = predictor.init_state(str(folder), async_loading_frames=async_loading_frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[16, 18]], labels=[1])
    seen = []
    with pytest.raises(VideoError, match="00003.jpg"):
        for frame_idx, _, _ in predictor.propagate_in_video(state):
            seen.append(frame_idx)
    assert seen == [0, 1, 2]
    # The state survives: prompting and propagating over the good frames still work.
    assert_usable(state, [1])
    assert [f for f, _, _ in predictor.propagate_in_video(state, max_frame_num_to_track=2)] == [0, 1, 2]
    with pytest.raises(VideoError, match="00003.jpg"):
        predictor.add_new_mask(state, 3, 2, square(3))
    assert state.obj_ids == [1]


def test_propagate_before_any_prompt() -> None:
    predictor = get_predictor()
    state = predictor.init_state(FRAMES)
    with pytest.raises(StateError, match="add_new_points_or_box or add_new_mask"):
        predictor.propagate_in_video(state)
    # Objects whose prompts were all cleared count as no prompt.
    predictor.add_new_points_or_box(state, 1, 1, points=[[16, 18]], labels=[1])
    predictor.clear_all_prompts_in_frame(state, 1, 1)
    with pytest.raises(StateError):
        predictor.propagate_in_video(state)
    assert state.obj_ids == [1]
    predictor.add_new_mask(state, 2, 1, square(2))
    assert [f for f, _, _ in predictor.propagate_in_video(state)] == [2, 3, 4, 5]


def test_stream_errors() -> None:
    predictor = get_predictor()
    state = predictor.init_stream(buffer_size=2)
    with pytest.raises(FrameIndexError):
        predictor.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])  # nothing pushed yet
    with pytest.raises(VideoError, match="uint8"):
        predictor.add_frame(state, FRAMES[0].astype(np.float32))
    assert predictor.add_frame(state, FRAMES[0]) == 0
    predictor.add_new_points_or_box(state, 0, 1, points=[[16, 18]], labels=[1])
    with pytest.raises(VideoError, match="resize frames"):
        predictor.track(state, FRAMES[0][:-1])
    for t in range(1, 4):
        check_output(predictor.track(state, FRAMES[t]), state, t)
    with pytest.raises(FrameIndexError, match="no longer buffered.*buffer_size"):
        predictor.add_new_mask(state, 1, 2, square(1))
    assert state.obj_ids == [1]
    check_output(predictor.track(state, FRAMES[4]), state, 4)


# -- random call sequences ----------------------------------------------------------------------------
valid_frame_st = st.integers(0, T - 1)
frame_st = st.one_of(valid_frame_st, valid_frame_st, valid_frame_st, st.sampled_from([-1, T, 1.5]))
obj_st = st.integers(1, 3)
# Mostly valid values, sometimes not: hypothesis' one_of picks its branches evenly.
coord_st = st.one_of(*[st.floats(0, W)] * 6, st.floats(-5, W + 5), st.sampled_from([float("nan"), float("inf")]))
label_st = st.sampled_from([1, 1, 1, 1, 0, 0, 2, 3, 5])
points_op = st.tuples(
    st.just("points"),
    frame_st,
    obj_st,
    st.lists(st.tuples(coord_st, st.floats(0, H), label_st), min_size=1, max_size=3),
    st.sampled_from([0, 0, 0, 0, 0, 1]),  # labels dropped from the end: a length mismatch
    st.booleans(),
)
box_op = st.tuples(  # x0, y0, width, height: mostly valid, sometimes overhanging or inverted
    st.just("box"),
    frame_st,
    obj_st,
    st.tuples(st.floats(-10, W), st.floats(-10, H), st.floats(-4, W), st.floats(-4, H)),
    st.booleans(),
)
mask_op = st.tuples(st.just("mask"), frame_st, obj_st, st.sampled_from(["square", "empty", "small", "nan", "3d"]))
propagate_op = st.tuples(
    st.just("propagate"),
    st.one_of(st.none(), frame_st),
    st.one_of(st.none(), st.integers(-1, T)),
    st.booleans(),
)
clear_op = st.tuples(st.just("clear"), frame_st, obj_st)
remove_op = st.tuples(st.just("remove"), obj_st, st.booleans())
reset_op = st.tuples(st.just("reset"))
first_op = st.one_of(  # every sequence starts with a valid prompt, so that propagation runs
    st.tuples(st.just("points"), valid_frame_st, obj_st, st.just([(16.0, 18.0, 1)]), st.just(0), st.just(True)),
    st.tuples(st.just("mask"), valid_frame_st, obj_st, st.just("square")),
)
ops_st = st.lists(
    st.one_of(
        points_op,
        points_op,
        box_op,
        mask_op,
        mask_op,
        propagate_op,
        propagate_op,
        propagate_op,
        clear_op,
        remove_op,
        reset_op,
    ),
    min_size=1,
    max_size=7,
)


def _mask(kind: str, t) -> np.ndarray:
    t = min(max(int(t), 0), T - 1)
    return {
        "square": square(t),
        "empty": np.zeros((H, W), bool),
        "small": square(t)[::2, ::2].astype(np.float32),
        "nan": np.full((H, W), np.nan, np.float32),
        "3d": np.stack([square(t)] * 2),
    }[kind]


def _apply(predictor, state, op) -> Any:
    kind = op[0]
    if kind == "points":
        _, t, obj, clicks, drop, clear = op
        points = np.array([c[:2] for c in clicks], np.float32)
        labels = np.array([c[2] for c in clicks][: len(clicks) - drop], np.int32)
        return predictor.add_new_points_or_box(state, t, obj, points=points, labels=labels, clear_old_points=clear)
    if kind == "box":
        _, t, obj, (x0, y0, w, h), normalized = op
        box = np.array([x0, y0, x0 + w, y0 + h])
        box = box / np.array([W, H, W, H]) if normalized else box
        return predictor.add_new_points_or_box(state, t, obj, box=box, normalize_coords=not normalized)
    if kind == "mask":
        _, t, obj, mask = op
        return predictor.add_new_mask(state, t, obj, _mask(mask, t))
    if kind == "clear":
        return predictor.clear_all_prompts_in_frame(state, op[1], op[2])
    if kind == "remove":
        return predictor.remove_object(state, op[1], strict=op[2])
    if kind == "reset":
        return predictor.reset_state(state)
    _, start, max_frames, reverse = op
    return list(
        predictor.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=max_frames, reverse=reverse)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=first_op, ops=ops_st, last=propagate_op)
def test_random_call_sequences(first, ops, last) -> None:
    predictor = get_predictor()
    state = predictor.init_state(FRAMES)
    expected_ids: List[int] = []
    for op in [first, *ops, last]:
        before = list(state.obj_ids)
        removed_frames = state.tracks[op[1]].prompted_frames if op[0] == "remove" and op[1] in state.tracks else []
        try:
            result = _apply(predictor, state, op)
        except I2VError as exc:
            event(f"{op[0]}: {type(exc).__name__}")
            assert state.obj_ids == before, f"{op} failed but changed the objects"
            continue
        kind = op[0]
        event(f"{kind}: ok")
        if kind in ("points", "box", "mask"):
            if op[2] not in expected_ids:
                expected_ids.append(op[2])
            check_output(result, state, op[1])
        elif kind == "clear":
            check_output(result, state, op[1])
        elif kind == "remove":
            if op[1] in expected_ids:
                expected_ids.remove(op[1])
            obj_ids, updated = result
            assert obj_ids == state.obj_ids
            assert [f for f, _ in updated] == (removed_frames if obj_ids else [])  # as SAM 2
            for f, masks in updated:
                check_output((f, obj_ids, masks), state)
        elif kind == "reset":
            expected_ids = []
        else:
            _, start, max_frames, reverse = op
            frames = [f for f, _, _ in result]
            prompted = sorted({f for tr in state.tracks.values() for f in tr.prompted_frames})
            # default start: the earliest prompted frame in both directions, as in SAM 2
            first = start if start is not None else prompted[0]
            if reverse and first == 0:  # as SAM 2: reverse from frame 0 yields nothing
                assert frames == []
                continue
            assert len(set(frames)) == len(frames) >= 1
            step = -1 if reverse else 1
            assert frames == list(range(frames[0], frames[-1] + step, step))
            assert frames[0] == first
            span = T if max_frames is None else max_frames
            end = max(frames[0] - span, 0) if reverse else min(frames[0] + span, T - 1)
            assert frames[-1] == end
            unprompted = [i for i, tr in enumerate(state.tracks.values()) if not tr.prompted_frames]
            for item in result:
                check_output(item, state)
                assert (item[2][unprompted] == ABSENT).all()  # absent where nothing was ever given
        assert state.obj_ids == expected_ids
