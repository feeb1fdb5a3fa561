"""Tests of the synthetic video generator (i2v.data.synthetic)."""

from __future__ import annotations

import copy
import pickle
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from i2v.data.base import VideoClip, VideoDataset
from i2v.data.synthetic import (
    SPLITS,
    SyntheticConfig,
    SyntheticVideoDataset,
    generate_video,
    sample_scene,
    video_seed,
)
from i2v.data.synthetic_shapes import blob_area, render_frame
from i2v.errors import ConfigError, FrameIndexError

HARD = SyntheticConfig(occlusion_prob=1.0, exit_prob=1.0, distractor_prob=1.0)


def _areas(ds: SyntheticVideoDataset, i: int, k: int) -> np.ndarray:
    """(T,) visible pixel count of object channel ``k`` of video ``i``."""
    return np.array([ds.masks(i, t)[k].sum() for t in range(ds.num_frames(i))])


def test_shapes_and_dtypes() -> None:
    cfg = SyntheticConfig()
    ds = SyntheticVideoDataset("train", num_videos=5)
    assert isinstance(ds, VideoDataset) and len(ds) == 5
    assert len({ds.video_name(i) for i in range(5)}) == 5
    for i in range(5):
        ids = ds.obj_ids(i)
        assert ids == list(range(1, len(ids) + 1)) and cfg.min_objects <= len(ids) <= cfg.max_objects
        assert ds.num_frames(i) == cfg.num_frames
        f, m = ds.frame(i, 3), ds.masks(i, 3)
        assert f.shape == (cfg.height, cfg.width, 3) and f.dtype == np.uint8 and f.flags.c_contiguous
        assert m.shape == (len(ids), cfg.height, cfg.width) and m.dtype == np.bool_


def test_same_seed_is_byte_identical_and_seeds_differ() -> None:
    a = SyntheticVideoDataset("train", 4, seed=3)
    b = SyntheticVideoDataset("train", 4, seed=3)
    for i, t in [(0, 0), (1, 7), (3, 23), (1, 7)]:
        assert np.array_equal(a.frame(i, t), b.frame(i, t))
        assert np.array_equal(a.masks(i, t), b.masks(i, t))
    assert a.events(2) == b.events(2)
    assert not np.array_equal(a.frame(0, 0), a.frame(1, 0))
    assert not np.array_equal(a.frame(0, 0), SyntheticVideoDataset("train", 4, seed=4).frame(0, 0))
    v1, v2 = generate_video(11), generate_video(11)
    assert np.array_equal(v1.frames, v2.frames) and np.array_equal(v1.masks, v2.masks)
    assert not np.array_equal(v1.frames, generate_video(12).frames)


def test_generate_video_matches_dataset_and_clip() -> None:
    ds = SyntheticVideoDataset("val", 3, HARD, seed=5)
    video = generate_video(ds.video_seed(2), HARD)
    assert isinstance(video, VideoClip) and video.obj_ids == ds.obj_ids(2)
    assert video.frames.shape == (24, 120, 160, 3) and video.masks.shape == (24, len(video.obj_ids), 120, 160)
    clip = ds.clip(2, [0, 9, 4])
    assert list(clip.frame_indices) == [0, 9, 4] and clip.annotated.all()
    assert clip.name == ds.video_name(2) and clip.obj_ids == ds.obj_ids(2)
    for j, t in enumerate([0, 9, 4]):
        assert np.array_equal(clip.frames[j], video.frames[t])
        assert np.array_equal(clip.masks[j], video.masks[t])


def test_splits_never_share_a_seed() -> None:
    seeds = {s: {video_seed(s, i, d) for i in range(2000) for d in (0, 1, 7, 2**31 - 1)} for s in SPLITS}
    assert all(len(v) == 8000 for v in seeds.values())
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"]
    assert not seeds["val"] & seeds["test"]
    # generate_video's own seeds (below 2**62) never collide with a dataset video.
    assert min(min(v) for v in seeds.values()) >= 2**62
    train, val = SyntheticVideoDataset("train", 1), SyntheticVideoDataset("val", 1)
    assert not np.array_equal(train.frame(0, 0), val.frame(0, 0))


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(st.sampled_from(SPLITS), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    b=st.tuples(st.sampled_from(SPLITS), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
)
def test_video_seed_is_injective(a: tuple, b: tuple) -> None:
    assert (video_seed(a[0], a[1], a[2]) == video_seed(b[0], b[1], b[2])) == (a == b)


def test_every_object_prompt_able_on_frame0() -> None:
    for cfg in (SyntheticConfig(), HARD, SyntheticConfig(min_objects=3, max_objects=3)):
        ds = SyntheticVideoDataset("train", 25, cfg, seed=1)
        for i in range(len(ds)):
            label = render_frame(ds.scene(i), 0)[1]
            for obj in ds.scene(i).objects:
                if obj.obj_id:
                    assert (label == obj.obj_id).sum() >= 0.6 * blob_area(obj, 0) > 20


def test_masks_are_exactly_where_each_object_was_painted_last() -> None:
    # Re-render with a unique flat colour per object, a black background and neutral lighting:
    # the colour of each pixel then names its painter, which must match the masks exactly.
    ds = SyntheticVideoDataset("test", 6, HARD)
    for i in range(len(ds)):
        scene = copy.deepcopy(ds.scene(i))
        scene.background.colors[:] = 0.0
        scene.noise_std = 0.0
        scene.brightness[:], scene.contrast[:], scene.gain[:], scene.light_grad[:] = 0.0, 1.0, 1.0, 0.0
        for k, obj in enumerate(scene.objects):
            obj.texture.colors = np.full((2, 3), 20.0 * (k + 1) / 255.0, np.float32)
            obj.shading = 0.0
        roles = {20 * (k + 1): o for k, o in enumerate(scene.objects)}
        assert any(o.obj_id == 0 for o in scene.objects)  # unannotated objects are present
        for t in range(0, ds.num_frames(i), 3):
            flat, masks = render_frame(scene, t)[0][..., 0], ds.masks(i, t)
            assert masks.sum(0).max() <= 1  # one painter per pixel: masks never overlap
            painted = {o.obj_id: np.zeros_like(masks[0]) for o in scene.objects}
            for value, obj in roles.items():
                painted[obj.obj_id] |= flat == value
            for k, obj_id in enumerate(ds.obj_ids(i)):
                assert np.array_equal(masks[k], painted[obj_id])
            # Distractors and occluders show up in the frame but in no mask.
            assert not (painted[0] & masks.any(0)).any()


def test_full_occlusion_hides_then_object_returns() -> None:
    ds = SyntheticVideoDataset("train", 12, SyntheticConfig(occlusion_prob=1.0, exit_prob=0.0), seed=2)
    seen = 0
    for i in range(len(ds)):
        for ev in [e for e in ds.events(i) if e.kind == "occlusion"]:
            seen += 1
            k = ds.obj_ids(i).index(ev.obj_id)
            target = next(o for o in ds.scene(i).objects if o.obj_id == ev.obj_id)
            area = _areas(ds, i, k)
            assert area[0] > 0 and (area[ev.start : ev.end] == 0).all() and area[ev.end :].max() > 0
            # Still inside the frame with its full outline: it is hidden, not gone.
            for t in range(ev.start, ev.end):
                x, y = target.center[t]
                assert 0 < x < 160 and 0 < y < 120 and blob_area(target, t) > 20
            # The mask shrinks as the occluder slides over it.
            assert area[ev.start - 1] < blob_area(target, ev.start - 1)
    assert seen >= 10


def test_exit_and_reappearance() -> None:
    ds = SyntheticVideoDataset("train", 12, SyntheticConfig(occlusion_prob=0.0, exit_prob=1.0), seed=2)
    seen = 0
    for i in range(len(ds)):
        for ev in [e for e in ds.events(i) if e.kind == "exit"]:
            seen += 1
            k = ds.obj_ids(i).index(ev.obj_id)
            target = next(o for o in ds.scene(i).objects if o.obj_id == ev.obj_id)
            area = _areas(ds, i, k)
            assert area[0] > 0 and (area[ev.start : ev.end] == 0).all() and area[ev.end :].max() > 0
            x, y = target.center[ev.start]
            assert not (0 <= x <= 160 and 0 <= y <= 120)
    assert seen >= 10


def test_no_event_config_has_no_events_or_extras() -> None:
    cfg = SyntheticConfig(occlusion_prob=0.0, exit_prob=0.0, distractor_prob=0.0, max_distractors=0)
    ds = SyntheticVideoDataset("train", 10, cfg)
    for i in range(len(ds)):
        assert ds.events(i) == [] and all(o.obj_id > 0 for o in ds.scene(i).objects)


def test_default_difficulty_rates() -> None:
    ds = SyntheticVideoDataset("train", 80)
    kinds = [{e.kind for e in ds.events(i)} for i in range(len(ds))]
    hide = np.mean([bool(k & {"occlusion", "exit"}) for k in kinds])
    look = np.mean(["distractor" in k for k in kinds])
    assert 0.35 <= hide <= 0.75 and 0.3 <= look <= 0.7


def test_distractors_look_like_their_target_and_come_near() -> None:
    ds = SyntheticVideoDataset("val", 10, SyntheticConfig(distractor_prob=1.0))
    for i in range(len(ds)):
        scene, events = ds.scene(i), ds.events(i)
        looks = [o for o in scene.objects if o.role == "distractor"]
        near = [e for e in events if e.kind == "distractor"]
        targets = [o for o in scene.objects if o.obj_id > 0]
        assert looks and len(looks) == len(near)
        for obj in looks:
            assert any(
                obj.texture.pattern == o.texture.pattern and np.abs(obj.texture.colors - o.texture.colors).max() < 0.25
                for o in targets
            )
        for ev in near:
            target = next(o for o in targets if o.obj_id == ev.obj_id)
            if not any(e.kind in ("occlusion", "exit") and e.obj_id == ev.obj_id for e in events):
                t = ev.start
                gaps = [np.linalg.norm(o.center[t] - target.center[t]) / (o.scale[t] + target.scale[t]) for o in looks]
                assert min(gaps) <= 1.05 + 1e-4


def test_camera_and_lighting_move_the_background() -> None:
    still = SyntheticConfig(
        camera_pan=0.0, camera_zoom=0.0, lighting=0.0, noise_std=0.0, occlusion_prob=0.0, distractor_prob=0.0
    )
    moving = SyntheticConfig(occlusion_prob=0.0, distractor_prob=0.0, noise_std=0.0)
    for cfg, expect_same in ((still, True), (moving, False)):
        ds = SyntheticVideoDataset("train", 3, cfg)
        for i in range(len(ds)):
            bg = ~ds.masks(i, 0).any(0) & ~ds.masks(i, 20).any(0)
            same = np.array_equal(ds.frame(i, 0)[bg], ds.frame(i, 20)[bg])
            assert same == expect_same


def test_frames_are_textured() -> None:
    ds = SyntheticVideoDataset("train", 10)
    obj_std, bg_std = [], []
    for i in range(len(ds)):
        f, m = ds.frame(i, 0).astype(np.float32), ds.masks(i, 0)
        obj_std += [f[mk].std(0).mean() for mk in m]
        bg_std.append(f[~m.any(0)].std(0).mean())
    assert np.median(obj_std) > 6.0 and np.median(bg_std) > 6.0


def test_frame_is_a_copy_and_dataset_pickles() -> None:
    ds = SyntheticVideoDataset("train", 2)
    f = ds.frame(1, 5)
    f[:] = 0
    assert ds.frame(1, 5).any()
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone.frame(1, 5), ds.frame(1, 5)) and np.array_equal(clone.masks(1, 6), ds.masks(1, 6))


def test_tiny_and_short_videos() -> None:
    cfg = SyntheticConfig(height=32, width=48, num_frames=1, occlusion_prob=1.0, exit_prob=1.0, distractor_prob=1.0)
    video = generate_video(0, cfg)
    assert video.frames.shape == (1, 32, 48, 3) and video.masks.reshape(len(video.obj_ids), -1).any(1).all()
    video = generate_video(1, SyntheticConfig(num_frames=5, occlusion_prob=1.0, exit_prob=1.0))
    assert video.frames.shape[0] == 5 and video.masks[0].reshape(len(video.obj_ids), -1).any(1).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"height": 8}, "height"),
        ({"width": 10.5}, "width"),
        ({"num_frames": 0}, "num_frames"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 3, "max_objects": 2}, "max_objects"),
        ({"object_size": (0.3, 0.1)}, "object_size"),
        ({"object_size": 0.2}, "object_size"),
        ({"occlusion_prob": 1.5}, "occlusion_prob"),
        ({"exit_prob": -0.1}, "exit_prob"),
        ({"distractor_prob": float("nan")}, "distractor_prob"),
        ({"max_distractors": 0}, "max_distractors"),
        ({"min_hidden_frames": 4, "max_hidden_frames": 3}, "max_hidden_frames"),
        ({"deformation": 0.9}, "deformation"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"max_speed": "fast"}, "max_speed"),
        ({"num_frames": True}, "num_frames"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        SyntheticConfig(**kwargs)
    assert isinstance(info.value, ConfigError)


def test_bad_dataset_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        SyntheticVideoDataset("training")
    with pytest.raises(ValueError, match="seed"):
        SyntheticVideoDataset("train", seed=-1)
    with pytest.raises(ValueError, match="num_videos"):
        SyntheticVideoDataset("train", num_videos=-3)
    ds = SyntheticVideoDataset("train", 2)
    with pytest.raises(IndexError):
        ds.frame(2, 0)
    with pytest.raises(FrameIndexError):
        ds.masks(0, 24)
    with pytest.raises(ValueError, match="seed"):
        generate_video(-1)


def test_render_speed() -> None:
    cfg = SyntheticConfig(height=128, width=128, min_objects=3, max_objects=3, distractor_prob=0.0, occlusion_prob=0.0)
    scene, _ = sample_scene(0, cfg)
    render_frame(scene, 0)
    start = time.perf_counter()
    for t in range(cfg.num_frames):
        render_frame(scene, t)
    per_frame = (time.perf_counter() - start) / cfg.num_frames
    assert per_frame < 0.025  # ~3 ms on one core; loose for loaded CI machines
