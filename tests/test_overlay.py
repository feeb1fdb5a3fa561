"""Tests of i2v.io.overlay: mask blending and GIF/MP4 writing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import numpy as np
import pytest
from PIL import Image

from i2v.errors import VideoError
from i2v.io.masks import davis_palette
from i2v.io.overlay import object_color, overlay_masks, write_overlay_video

H, W = 20, 30


def frame_and_masks() -> tuple:
    frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    masks = np.zeros((2, H, W), bool)
    masks[0, 2:12, 2:12] = True
    masks[1, 8:18, 8:25] = True  # overlaps object 0 on [8:12, 8:12]
    return frame, masks


def test_pixels_coloured_inside_masks_only() -> None:
    frame, masks = frame_and_masks()
    out = overlay_masks(frame, masks, [1, 2], alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    outside = ~masks.any(axis=0)
    np.testing.assert_array_equal(out[outside], frame[outside])
    # interior pixel of object 1 only: half-way to DAVIS red
    red = davis_palette()[1].astype(float)
    expected = np.rint(0.5 * frame[4, 4] + 0.5 * red)
    np.testing.assert_allclose(out[4, 4], expected, atol=1)
    # overlap: the later object (id 2, green) wins
    green = davis_palette()[2].astype(float)
    np.testing.assert_allclose(out[10, 10], np.rint(0.5 * frame[10, 10] + 0.5 * green), atol=1)


def test_boundaries_are_darker_than_fill() -> None:
    frame = np.full((H, W, 3), 255, np.uint8)
    masks = np.zeros((1, H, W), bool)
    masks[0, 5:15, 5:15] = True
    out = overlay_masks(frame, masks, [1], alpha=0.5)
    edge, inside = out[5, 10].astype(int), out[10, 10].astype(int)
    assert edge.sum() < inside.sum()
    np.testing.assert_array_equal(edge, [64, 0, 0])  # opaque half-bright red at alpha 0.5


def test_alpha_zero_is_identity_and_input_untouched() -> None:
    frame, masks = frame_and_masks()
    before = frame.copy()
    np.testing.assert_array_equal(overlay_masks(frame, masks, [1, 2], alpha=0.0), frame)
    overlay_masks(frame, masks, [1, 2], alpha=0.8)
    np.testing.assert_array_equal(frame, before)


def test_no_masks_and_unusual_ids() -> None:
    frame, _ = frame_and_masks()
    np.testing.assert_array_equal(overlay_masks(frame, np.zeros((0, H, W), bool), []), frame)
    assert object_color(1) == (128, 0, 0)
    assert object_color(0) != (0, 0, 0)  # id 0 is a valid object id, never black
    assert object_color(256) == object_color(1)


def test_overlay_errors() -> None:
    frame, masks = frame_and_masks()
    with pytest.raises(VideoError, match=r"\(H, W, 3\) uint8"):
        overlay_masks(frame.astype(np.float32), masks, [1, 2])
    with pytest.raises(VideoError, match=r"expected \(N, 20, 30\)"):
        overlay_masks(frame, masks[:, :10], [1, 2])
    with pytest.raises(VideoError, match="2 masks but 1 obj_ids"):
        overlay_masks(frame, masks, [1])
    with pytest.raises(VideoError, match="alpha"):
        overlay_masks(frame, masks, [1, 2], alpha=1.5)


def frames(n: int, h: int = H, w: int = W) -> Iterator[np.ndarray]:
    for t in range(n):  # distinct frames, so GIF does not merge them
        yield np.full((h, w, 3), 10 * t, np.uint8)


def test_write_gif(tmp_path: Path) -> None:
    path = tmp_path / "out.gif"
    assert write_overlay_video(path, frames(7), fps=5) == 7
    with Image.open(path) as gif:
        assert gif.n_frames == 7 and gif.size == (W, H)
        assert gif.info["duration"] == 200
    assert [p.name for p in tmp_path.iterdir()] == ["out.gif"]


def test_write_mp4_streams_a_generator(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    assert write_overlay_video(path, frames(9), fps=10) == 9
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 9 and decoded[0].shape == (H, W, 3)
    assert abs(float(decoded[5].mean()) - 50) < 3
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_write_mp4_odd_size_is_padded(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    write_overlay_video(path, frames(3, 11, 15))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.height, stream.width) == (12, 16)
        assert sum(1 for _ in container.decode(stream)) == 3


def test_writer_errors_leave_no_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=".gif and .mp4"):
        write_overlay_video(tmp_path / "x.avi", frames(2))
    for suffix in (".gif", ".mp4"):
        with pytest.raises(VideoError, match="no frames"):
            write_overlay_video(tmp_path / f"empty{suffix}", iter([]))
        mixed = [np.zeros((4, 4, 3), np.uint8), np.zeros((6, 4, 3), np.uint8)]
        with pytest.raises(VideoError, match="size"):
            write_overlay_video(tmp_path / f"mixed{suffix}", mixed)
    with pytest.raises(VideoError, match="fps"):
        write_overlay_video(tmp_path / "x.gif", frames(2), fps=0)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    write_overlay_video(path, frames(4))
    before = path.read_bytes()

    def broken() -> Iterator[np.ndarray]:
        yield from frames(2)
        raise RuntimeError("producer crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        write_overlay_video(path, broken())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
