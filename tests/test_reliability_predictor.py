"""Reliability of the predictor API: propagation passes own the state, a stream is never
propagated, and bad inputs end in a documented error (an ``I2VError``) that leaves the state
as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import i2v
from i2v.build import default_sam_checkpoint
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.errors import CheckpointError, ConfigError, I2VError, PromptError, StateError, VideoError

H, W, T = 48, 64, 6

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor() -> i2v.I2VVideoPredictor:
    return i2v.build_i2v_video_predictor("tiny", device="cpu", progress=False)


@pytest.fixture(scope="module")
def clip():
    cfg = SyntheticConfig(height=H, width=W, num_frames=T, min_objects=2, max_objects=2)
    return SyntheticVideoDataset("test", 1, config=cfg).clip(0, range(T))


def test_propagate_on_a_stream_says_use_track_and_keeps_its_memory(predictor, clip) -> None:
    state = predictor.init_stream(buffer_size=4)
    predictor.add_frame(state, clip.frames[0])
    predictor.add_new_mask(state, 0, 1, clip.masks[0, 0])
    for t in range(1, 5):
        predictor.track(state, clip.frames[t])
    before = (len(state.tracks[1].bank), state.tracks[1].output(4).low_res_logits.clone())
    for kwargs in ({}, {"start_frame_idx": 0}, {"reverse": True}):
        with pytest.raises(StateError, match=r"track\(\)|track\(state, frame\)"):
            predictor.propagate_in_video(state, **kwargs)
    assert len(state.tracks[1].bank) == before[0]
    assert torch.equal(state.tracks[1].output(4).low_res_logits, before[1])
    # the stream goes on as if nothing happened: same result as a twin that was never misused
    twin = predictor.init_stream(buffer_size=4)
    predictor.add_frame(twin, clip.frames[0])
    predictor.add_new_mask(twin, 0, 1, clip.masks[0, 0])
    for t in range(1, 5):
        predictor.track(twin, clip.frames[t])
    assert torch.equal(predictor.track(state, clip.frames[5])[2], predictor.track(twin, clip.frames[5])[2])


def test_a_superseded_propagation_generator_raises_state_error(predictor, clip) -> None:
    state = predictor.init_state(clip.frames)
    predictor.add_new_mask(state, 0, 1, clip.masks[0, 0])
    predictor.add_new_mask(state, T - 1, 1, clip.masks[T - 1, 0])
    forward = predictor.propagate_in_video(state)
    backward = predictor.propagate_in_video(state, start_frame_idx=T - 1, reverse=True)
    assert next(forward)[0] == 0
    assert next(backward)[0] == T - 1  # the newer pass owns the state now
    with pytest.raises(StateError, match="no longer current"):
        next(forward)
    # the current pass is unaffected: it gives what it gives alone
    rest = [(t, m) for t, _, m in backward]
    alone = {t: m for t, _, m in predictor.propagate_in_video(state, start_frame_idx=T - 1, reverse=True)}
    assert [t for t, _ in rest] == list(range(T - 2, -1, -1))
    assert all(torch.equal(m, alone[t]) for t, m in rest)
    # a reset also ends a pass in flight
    gen = predictor.propagate_in_video(state)
    next(gen)
    predictor.reset_state(state)
    with pytest.raises(StateError, match="no longer current"):
        next(gen)


def _bad_calls(predictor, state):
    mask = np.zeros((H, W), bool)
    mask[10:20, 10:20] = True
    return {
        "complex mask": (PromptError, lambda: predictor.add_new_mask(state, 0, 5, mask.astype(np.complex64))),
        "transposed mask": (PromptError, lambda: predictor.add_new_mask(state, 0, 5, mask.T.copy())),
        "int8 -1 mask": (PromptError, lambda: predictor.add_new_mask(state, 0, 5, np.full((H, W), -1, np.int8))),
        "complex points": (
            PromptError,
            lambda: predictor.add_new_points_or_box(state, 0, 5, points=np.array([[1 + 1j, 2]]), labels=[1]),
        ),
        "complex box": (PromptError, lambda: predictor.add_new_points_or_box(state, 0, 5, box=[1j, 0, 10, 10])),
        "pixel box with normalize_coords=False": (
            PromptError,
            lambda: predictor.add_new_points_or_box(state, 0, 5, box=[10, 10, 30, 30], normalize_coords=False),
        ),
    }


def test_bad_inputs_raise_documented_errors_and_keep_the_state(predictor, clip) -> None:
    state = predictor.init_state(clip.frames)
    predictor.add_new_mask(state, 0, 1, clip.masks[0, 0])
    reference = [m for _, _, m in predictor.propagate_in_video(state)]
    for name, (kind, call) in _bad_calls(predictor, state).items():
        with pytest.raises(kind) as info:
            call()
        assert str(info.value), name
        if "normalize_coords" in name:
            assert "[0, 1]" in str(info.value) and "normalize_coords=True" in str(info.value)
        assert state.obj_ids == [1], name
    assert all(torch.equal(a, b) for a, (_, _, b) in zip(reference, predictor.propagate_in_video(state)))


@pytest.mark.parametrize("buffer_size", ["8", 2.5, 0, -1, True])
def test_stream_buffer_size_must_be_a_positive_integer(predictor, buffer_size) -> None:
    with pytest.raises(ConfigError, match="buffer_size"):
        predictor.init_stream(buffer_size=buffer_size)


@pytest.mark.parametrize("shape", [(2, 600), (1, 3000), (3000, 1)])
def test_over_elongated_frames_are_refused_when_opened(predictor, shape) -> None:
    with pytest.raises(VideoError, match="elongated"):
        predictor.init_state(np.zeros((2, *shape, 3), np.uint8))
    stream = predictor.init_stream()
    with pytest.raises(VideoError, match="elongated"):
        predictor.add_frame(stream, np.zeros((*shape, 3), np.uint8))


@pytest.mark.parametrize("config", [1, "x", [1], None])
def test_adapter_config_that_is_not_an_object(tmp_path: Path, config) -> None:
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"format_version": 2, "sam_model_type": "tiny", "sam_sha256": "0" * 64, "config": config})
    )
    with pytest.raises(CheckpointError, match="'config'"):
        i2v.build_i2v_video_predictor("tiny", checkpoint=tmp_path, device="cpu")


def test_sam_checkpoint_paths(tmp_path: Path) -> None:
    # A folder is read when it holds a known layout (Hugging Face SamModel, peft LoRA, one file).
    with pytest.raises(CheckpointError, match="folder .* is not a recognised layout.*found nothing"):
        i2v.build_sam_i2v("tiny", sam_checkpoint=tmp_path, device="cpu")
    src = default_sam_checkpoint("tiny")
    reference = i2v.build_sam_i2v("tiny", device="cpu")
    for name in ("tiny.SAFETENSORS", "tiny_sam.pth"):  # an upper-case suffix; a renamed file
        shutil.copy(src, tmp_path / name)
        model = i2v.build_sam_i2v("tiny", sam_checkpoint=tmp_path / name, device="cpu")
        assert model.sam_sha256 == reference.sam_sha256


def test_every_bad_input_here_is_a_library_error(predictor, clip) -> None:
    state = predictor.init_state(clip.frames)
    for name, (_, call) in _bad_calls(predictor, state).items():
        try:
            call()
        except I2VError:
            continue
        raise AssertionError(f"{name} was accepted")
