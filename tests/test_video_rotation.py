"""Display rotation of video files: frames, height and width come out as a player shows them.

The files are written with PyAV's ``VideoStream.set_display_rotation``, which stores the display
matrix in the MP4 track header (tkhd). Which corner a player shows a stored corner in is checked
twice: against a table, and against the tkhd matrix read back from the file's bytes and applied
as ISO/IEC 14496-12 defines it, so the expected orientation does not rest on PyAV's naming.
"""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, List, Optional, Tuple

import av
import numpy as np
import pytest
from video_files import decode_all, has_encoder, write_video

from i2v.errors import VideoError
from i2v.io.pyav_source import _display_rotation, display_quarter_turns, rotate_for_display
from i2v.io.video_source import open_video

T, H, W, SQUARE = 20, 32, 48, 8  # stored frames are landscape, with a bright top-left square

# Where the stored top-left square is displayed, per display rotation (FFmpeg's convention:
# counter-clockwise degrees). -90 is what a phone held upright writes.
DISPLAYED_CORNER = {90: "bottom-left", -90: "top-right", 180: "bottom-right", 270: "top-right"}


def has_libx264() -> bool:
    return has_encoder("libx264")


def can_write_rotation() -> bool:
    return has_libx264() and hasattr(av.video.stream.VideoStream, "set_display_rotation")


needs_rotation_writer = pytest.mark.skipif(
    not can_write_rotation(), reason="this PyAV cannot write a display matrix with libx264"
)


def stored_frames() -> np.ndarray:
    """(T, H, W, 3): a white square in the top-left corner on a background that darkens per
    frame, so that orientation and frame index are both unambiguous."""
    frames = np.zeros((T, H, W, 3), np.uint8)
    frames[:] = (120 - 5 * np.arange(T, dtype=np.uint8))[:, None, None, None]
    frames[:, :SQUARE, :SQUARE] = 255
    return frames


def write_mp4(path: Path, rotation: Optional[float]) -> Path:
    """An H.264 MP4 of :func:`stored_frames` (B-frames, a keyframe every 5 frames)."""
    return write_video(path, stored_frames(), "libx264", options={"g": "5", "bf": "2"}, rotation=rotation)


def stored_decode(path: Path) -> List[np.ndarray]:
    """The frames as stored: PyAV's plain decode, which ignores the display matrix."""
    return decode_all(path)


def corner_of_square(image: np.ndarray) -> str:
    """Which corner the bright square is in."""
    rows, cols = np.nonzero(image.mean(axis=2) > 200)
    assert rows.size, "no bright square found"
    vertical = "top" if rows.mean() < image.shape[0] / 2 else "bottom"
    horizontal = "left" if cols.mean() < image.shape[1] / 2 else "right"
    return f"{vertical}-{horizontal}"


def boxes(data: bytes, start: int, end: int) -> Iterator[Tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO BMFF boxes in data[start:end]."""
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8 : start + 16])[0], 16
        elif size == 0:
            size = end - start
        yield kind, start + header, start + size
        start += size


def tkhd_matrix(path: Path) -> Tuple[float, ...]:
    """(a, b, u, c, d, v, x, y, w) of the first track header, as real numbers."""
    data = path.read_bytes()
    for kind, moov_begin, moov_end in boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for kind, trak_begin, trak_end in boxes(data, moov_begin, moov_end):
            if kind != b"trak":
                continue
            for kind, begin, _ in boxes(data, trak_begin, trak_end):
                if kind == b"tkhd":
                    version = data[begin]
                    # version/flags, times, track id, reserved, duration, then 16 bytes of
                    # reserved, layer, alternate group, volume, reserved.
                    offset = begin + 4 + (32 if version == 1 else 20) + 16
                    raw = struct.unpack(">9i", data[offset : offset + 36])
                    return tuple(value / (1 << 30 if i in (2, 5, 8) else 1 << 16) for i, value in enumerate(raw))
    raise AssertionError(f"no tkhd box in {path}")


def corner_by_container_matrix(path: Path) -> str:
    """Where a player puts the stored top-left square: the stored frame's points (p, q) go to
    (a p + c q + x, b p + d q + y) (ISO/IEC 14496-12, 8.3.2), placed at the top-left of the
    bounding box of the transformed frame. p runs right, q down, as pixel columns and rows."""
    a, b, _, c, d, _, x, y, _ = tkhd_matrix(path)

    def place(p: float, q: float) -> Tuple[float, float]:
        return a * p + c * q + x, b * p + d * q + y

    corners = [place(p, q) for p in (0, W) for q in (0, H)]
    square = place(SQUARE / 2, SQUARE / 2)
    low_p, high_p = min(c[0] for c in corners), max(c[0] for c in corners)
    low_q, high_q = min(c[1] for c in corners), max(c[1] for c in corners)
    vertical = "top" if square[1] - low_q < (high_q - low_q) / 2 else "bottom"
    horizontal = "left" if square[0] - low_p < (high_p - low_p) / 2 else "right"
    return f"{vertical}-{horizontal}"


# ---- the rotation itself -------------------------------------------------------------------

IMAGE = np.array([[1, 2, 3], [4, 5, 6]])
COUNTER_CLOCKWISE = np.array([[3, 6], [2, 5], [1, 4]])
CLOCKWISE = np.array([[4, 1], [5, 2], [6, 3]])
HALF_TURN = np.array([[6, 5, 4], [3, 2, 1]])


@pytest.mark.parametrize(
    "rotation, expected",
    [
        (0, IMAGE),
        (360, IMAGE),
        (-0.4, IMAGE),
        (90, COUNTER_CLOCKWISE),
        (89.6, COUNTER_CLOCKWISE),
        (-270, COUNTER_CLOCKWISE),
        (-90, CLOCKWISE),
        (270, CLOCKWISE),
        (-90.5, CLOCKWISE),
        (180, HALF_TURN),
        (-180, HALF_TURN),
    ],
)
def test_rotate_for_display_follows_ffmpeg_convention(rotation: float, expected: np.ndarray) -> None:
    # FFmpeg's display rotation is the counter-clockwise angle that turns the stored frame
    # upright; the channel axis rides along untouched.
    image = np.stack([IMAGE, IMAGE + 10], axis=-1)
    displayed = rotate_for_display(image, rotation)
    np.testing.assert_array_equal(displayed[..., 0], expected)
    np.testing.assert_array_equal(displayed[..., 1], expected + 10)
    assert displayed.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("rotation", [45, -135.5, 2, math.nan, math.inf])
def test_rotation_off_quarter_turns_is_rejected(rotation: float) -> None:
    with pytest.raises(VideoError, match="only multiples of 90 degrees"):
        display_quarter_turns(rotation, "clip.mp4")


def test_rotation_falls_back_to_stream_side_data_and_rotate_tag() -> None:
    frame = SimpleNamespace()  # a PyAV too old to have VideoFrame.rotation
    no_rotation = SimpleNamespace(rotation=0)
    assert _display_rotation(no_rotation, SimpleNamespace(metadata={})) == 0
    side_data = SimpleNamespace(side_data={"DISPLAYMATRIX": -90.0}, metadata={})
    assert _display_rotation(frame, side_data) == -90
    # The old "rotate" tag is a clockwise angle: a phone held upright wrote 90.
    assert _display_rotation(frame, SimpleNamespace(metadata={"rotate": "90"})) == -90
    assert _display_rotation(no_rotation, SimpleNamespace(metadata={"rotate": "junk"})) == 0
    assert _display_rotation(SimpleNamespace(rotation=180), side_data) == 180  # frame wins


# ---- video files ---------------------------------------------------------------------------


@needs_rotation_writer
@pytest.mark.parametrize("rotation", sorted(DISPLAYED_CORNER))
def test_rotated_file_gives_displayed_frames(tmp_path: Path, rotation: int) -> None:
    path = write_mp4(tmp_path / "phone.mp4", rotation)
    stored = stored_decode(path)
    assert corner_of_square(stored[0]) == "top-left"  # PyAV itself does not rotate
    quarter = rotation % 180 == 90
    turns = {90: 1, -90: -1, 180: 2, 270: -1}[rotation]  # np.rot90 turns counter-clockwise
    with open_video(path, cache_size=2) as video:
        assert len(video) == T
        assert (video.height, video.width) == ((W, H) if quarter else (H, W))
        for t in range(T):
            frame = video.frame(t)
            assert frame.shape == (video.height, video.width, 3)
            assert corner_of_square(frame) == DISPLAYED_CORNER[rotation]
            np.testing.assert_array_equal(frame, np.rot90(stored[t], k=turns), err_msg=f"{t}")


@needs_rotation_writer
@pytest.mark.parametrize("rotation", sorted(DISPLAYED_CORNER))
def test_displayed_corner_agrees_with_container_matrix(tmp_path: Path, rotation: int) -> None:
    path = write_mp4(tmp_path / "phone.mp4", rotation)
    with open_video(path) as video:
        assert corner_of_square(video.frame(0)) == corner_by_container_matrix(path)


@needs_rotation_writer
def test_rotated_file_random_and_reverse_reads_match_sequential(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "phone.mp4", -90)
    with open_video(path, cache_size=0) as video:
        sequential = list(video)
    with open_video(path, cache_size=3) as video:
        rng = random.Random(0)
        order = [rng.randrange(T) for _ in range(25)] + list(reversed(range(T)))
        for t in order:
            np.testing.assert_array_equal(video.frame(t), sequential[t], err_msg=f"frame {t}")
    assert [int(frame[-1, 0, 0]) for frame in sequential] == pytest.approx(
        [120 - 5 * t for t in range(T)], abs=3
    )  # every frame in place, none skipped


@pytest.mark.skipif(not has_libx264(), reason="this PyAV build lacks libx264")
@pytest.mark.parametrize("rotation", [None, 0])
def test_unrotated_file_is_unchanged(tmp_path: Path, rotation: Optional[int]) -> None:
    if rotation is not None and not can_write_rotation():
        pytest.skip("this PyAV cannot write a display matrix")
    path = write_mp4(tmp_path / "clip.mp4", rotation)
    stored = stored_decode(path)
    with open_video(path) as video:
        assert (len(video), video.height, video.width) == (T, H, W)
        for t in range(T):
            np.testing.assert_array_equal(video.frame(t), stored[t], err_msg=f"frame {t}")
        assert corner_of_square(video.frame(0)) == "top-left"
    if rotation == 0:
        assert corner_by_container_matrix(path) == "top-left"
