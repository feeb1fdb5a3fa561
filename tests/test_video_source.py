"""Tests of i2v.io.video_source: every source type, laziness, seeking and error messages."""

from __future__ import annotations

import random
from pathlib import Path
from typing import List

import av
import numpy as np
import pytest
import torch
import video_files
from PIL import Image
from video_files import decode_all, has_encoder

from i2v.errors import ConfigError, FrameIndexError, StateError, VideoError, VideoNotFoundError
from i2v.io import video_source
from i2v.io.video_source import VideoSource, open_video

T, H, W = 12, 24, 32


def make_frames(n: int = T, h: int = H, w: int = W) -> np.ndarray:
    """(n, h, w, 3) uint8 frames that differ from each other everywhere."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = np.arange(n)  # makes every frame distinct
    return frames


def write_folder(folder: Path, frames: np.ndarray, names: List[str]) -> List[Path]:
    folder.mkdir(exist_ok=True)
    paths = [folder / name for name in names]
    for path, frame in zip(paths, frames):
        Image.fromarray(frame).save(path)
    return paths


def write_video(path: Path, frames: np.ndarray, codec: str, gop: int = 5) -> None:
    """Encode with B-frames where the codec has them, so seeking meets reordering."""
    options = {"g": str(gop), "bf": "2"} if codec == "libx264" else {"g": str(gop)}
    video_files.write_video(path, frames, codec, options=options)


VIDEO_KINDS = [(".mp4", "libx264"), (".mkv", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx")]


@pytest.fixture(params=VIDEO_KINDS, ids=[k[0] for k in VIDEO_KINDS])
def video_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    suffix, codec = request.param
    if not has_encoder(codec):
        pytest.skip(f"PyAV build lacks {codec}")
    path = tmp_path / f"clip{suffix}"
    write_video(path, make_frames(30, 48, 64), codec)
    return path


# ---- in-memory sources ---------------------------------------------------------------------


def test_numpy_rgb_array_is_indexed_and_copied() -> None:
    frames = make_frames()
    video = open_video(frames)
    assert (len(video), video.height, video.width) == (T, H, W)
    out = video.frame(3)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, frames[3])
    out[:] = 0  # the caller owns the returned frame
    np.testing.assert_array_equal(video.frame(3), frames[3])


def test_numpy_grayscale_and_rgba_become_rgb() -> None:
    frames = make_frames()
    gray = open_video(frames[..., 0])
    np.testing.assert_array_equal(gray.frame(2), np.repeat(frames[2, :, :, :1], 3, axis=2))
    rgba = np.concatenate([frames, np.full((T, H, W, 1), 7, np.uint8)], axis=3)
    np.testing.assert_array_equal(open_video(rgba).frame(5), frames[5])


@pytest.mark.parametrize("channels_first", [False, True])
def test_torch_tensor(channels_first: bool) -> None:
    frames = make_frames()
    tensor = torch.from_numpy(frames)
    if channels_first:
        tensor = tensor.permute(0, 3, 1, 2)
    video = open_video(tensor)
    assert (len(video), video.height, video.width) == (T, H, W)
    np.testing.assert_array_equal(video.frame(7), frames[7])


def test_list_of_arrays_and_pil_images() -> None:
    frames = make_frames()
    items = [frames[0], Image.fromarray(frames[1]), Image.fromarray(frames[2]).convert("RGBA"), frames[3, :, :, 0]]
    video = open_video(items)
    assert len(video) == 4
    for t in range(3):
        np.testing.assert_array_equal(video.frame(t), frames[t])
    np.testing.assert_array_equal(video.frame(3), np.repeat(frames[3, :, :, :1], 3, axis=2))


def test_video_source_is_returned_as_is_and_iterable() -> None:
    video = open_video(make_frames())
    assert open_video(video) is video
    assert len(list(video)) == T


# ---- folders and image files ---------------------------------------------------------------


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_folder_numeric_sort(tmp_path: Path, ext: str) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    for k in [2, 10, 1, 0, 3, 4, 5, 6, 7, 8, 9, 11]:  # flat frames survive JPEG exactly enough
        Image.fromarray(np.full((H, W, 3), 20 * k, np.uint8)).save(folder / f"{k}.{ext}")
    (folder / "notes.txt").write_text("not a frame")
    (folder / f"._0.{ext}").write_bytes(b"macOS resource fork")
    video = open_video(folder)
    assert (len(video), video.height, video.width) == (T, H, W)
    for t in range(T):
        assert abs(float(video.frame(t).mean()) - 20 * t) < 2, f"frame {t}"
    assert [p.name for p in video.paths][:3] == [f"0.{ext}", f"1.{ext}", f"2.{ext}"]


def test_folder_non_numeric_names_sort_lexicographically(tmp_path: Path) -> None:
    frames = make_frames(3)
    write_folder(tmp_path / "v", frames, ["b.png", "a.png", "frame_10.png"])
    video = open_video(str(tmp_path / "v"))
    assert [p.name for p in video.paths] == ["a.png", "b.png", "frame_10.png"]
    np.testing.assert_array_equal(video.frame(0), frames[1])


def test_folder_grayscale_and_rgba_files_become_rgb(tmp_path: Path) -> None:
    frames = make_frames(2)
    folder = tmp_path / "v"
    folder.mkdir()
    Image.fromarray(frames[0, :, :, 0]).save(folder / "0.png")
    rgba = np.concatenate([frames[1], np.zeros((H, W, 1), np.uint8)], axis=2)
    Image.fromarray(rgba).save(folder / "1.png")
    video = open_video(folder)
    np.testing.assert_array_equal(video.frame(0), np.repeat(frames[0, :, :, :1], 3, axis=2))
    np.testing.assert_array_equal(video.frame(1), frames[1])


def test_single_image_is_one_frame_video(tmp_path: Path) -> None:
    frame = make_frames(1)[0]
    Image.fromarray(frame).save(tmp_path / "x.png")
    video = open_video(tmp_path / "x.png")
    assert len(video) == 1
    np.testing.assert_array_equal(video.frame(0), frame)


def test_list_of_image_paths(tmp_path: Path) -> None:
    frames = make_frames(3)
    paths = write_folder(tmp_path / "v", frames, ["a.png", "b.png", "c.png"])
    video = open_video([paths[2], str(paths[0])])
    np.testing.assert_array_equal(video.frame(0), frames[2])
    np.testing.assert_array_equal(video.frame(1), frames[0])


def test_folder_decodes_only_requested_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = make_frames()
    paths = write_folder(tmp_path / "v", frames, [f"{i:05d}.png" for i in range(T)])
    video = open_video(tmp_path / "v", cache_size=3)
    opened: List[str] = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(Path(fp).name)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(video_source.Image, "open", counting_open)
    paths[-1].unlink()  # a later frame vanishing must not affect earlier ones
    np.testing.assert_array_equal(video.frame(4), frames[4])
    np.testing.assert_array_equal(video.frame(4), frames[4])  # second read: from the cache
    assert opened == ["00004.png"]
    for t in range(T - 1):
        video.frame(t)
        assert len(video._cache) <= 3
    assert len(video._cache) == 3
    with pytest.raises(VideoNotFoundError, match="00011.png"):
        video.frame(T - 1)


def test_cache_size_zero_disables_cache(tmp_path: Path) -> None:
    write_folder(tmp_path / "v", make_frames(3), ["0.png", "1.png", "2.png"])
    video = open_video(tmp_path / "v", cache_size=0)
    video.frame(0)
    assert len(video._cache) == 0


# ---- video files ---------------------------------------------------------------------------


def test_video_file_sequential_matches_full_decode(video_file: Path) -> None:
    reference = decode_all(video_file)
    video = open_video(video_file, cache_size=2)
    assert (len(video), video.height, video.width) == (len(reference), 48, 64)
    seeks: List[int] = []
    real_seek = video._seek
    video._seek = lambda t: (seeks.append(t), real_seek(t))[1]  # type: ignore[method-assign]
    for t in range(len(video)):
        np.testing.assert_array_equal(video.frame(t), reference[t])
    assert seeks == []
    if video_file.suffix in (".mp4", ".avi"):  # frame count from the header: no demux pass
        assert video._packets is None


def test_video_file_random_access_matches_full_decode(video_file: Path) -> None:
    reference = decode_all(video_file)
    video = open_video(video_file, cache_size=0)
    restarts: List[int] = []
    real_restart = video._restart
    video._restart = lambda: (restarts.append(1), real_restart())[1]  # type: ignore
    rng = random.Random(0)
    order = [rng.randrange(len(video)) for _ in range(40)] + list(reversed(range(len(video))))
    for t in order:
        np.testing.assert_array_equal(video.frame(t), reference[t], err_msg=f"frame {t}")
    assert restarts == []  # every seek landed where the packet index said
    video.close()


def test_video_file_seeks_only_across_keyframes(tmp_path: Path) -> None:
    path = tmp_path / "gop.mp4"
    write_video(path, make_frames(40, 48, 64), "libx264", gop=10)
    video = open_video(path, cache_size=0)
    calls: List[int] = []
    real_seek = video._seek
    video._seek = lambda t: (calls.append(t), real_seek(t))[1]  # type: ignore[method-assign]
    video.frame(0)
    video.frame(3)  # same GOP ahead of the decoder: decode forward
    assert calls == []
    video.frame(35)  # several keyframes ahead: seek
    video.frame(2)  # backwards: seek
    assert calls == [35, 2]


def test_video_file_reverse_reading_reuses_decoded_frames(tmp_path: Path) -> None:
    path = tmp_path / "gop.mp4"
    write_video(path, make_frames(40, 48, 64), "libx264", gop=10)
    reference = decode_all(path)
    video = open_video(path, cache_size=5)
    calls: List[int] = []
    real_seek = video._seek
    video._seek = lambda t: (calls.append(t), real_seek(t))[1]  # type: ignore[method-assign]
    for t in reversed(range(40)):
        np.testing.assert_array_equal(video.frame(t), reference[t], err_msg=f"frame {t}")
        assert len(video._cache) <= 5
    # At most one seek per cache_size - 1 frames, plus one per GOP boundary met on the way.
    assert len(calls) <= 40 // 4 + 40 // 10


def test_closed_source_raises(video_file: Path) -> None:
    with open_video(video_file) as video:
        video.frame(0)
    with pytest.raises(StateError, match="closed"):
        video.frame(0)
    video.close()  # idempotent


def test_corrupt_frame_in_video_names_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_video(path, make_frames(30, 48, 64), "mpeg4", gop=30)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[15]
    data = bytearray(path.read_bytes())
    data[pos : pos + size] = np.random.default_rng(1).integers(0, 256, size, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    video = open_video(path)
    video.frame(3)
    with pytest.raises(VideoError, match=r"frame 1\d of .*clip.avi could not be decoded"):
        for t in range(4, 30):
            video.frame(t)


def test_truncated_video_raises_when_read(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_video(path, make_frames(30, 48, 64), "mpeg4")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    video = open_video(path)
    assert len(video) == 30  # the header's count
    with pytest.raises(VideoError, match="frame 29 .*truncated"):
        video.frame(29)


# ---- errors --------------------------------------------------------------------------------


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFoundError, match="nope.mp4"):
        open_video(missing)
    with pytest.raises(FileNotFoundError):
        open_video(str(missing))


def test_empty_sources(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames.*empty"):
        open_video(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(VideoError, match="a.txt"):
        open_video(tmp_path / "txt")
    with pytest.raises(VideoError, match="at least one frame"):
        open_video(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(VideoError, match="empty"):
        open_video([])


def test_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"definitely not a video" * 10)
    with pytest.raises(VideoError, match="bad.mp4 could not be opened"):
        open_video(bad)
    folder = tmp_path / "v"
    write_folder(folder, make_frames(2), ["0.png", "1.png"])
    (folder / "2.png").write_bytes(b"garbage")
    with pytest.raises(VideoError, match="2.png is not a readable image"):
        open_video(folder)


def test_mixed_sizes_in_folder_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    write_folder(folder, make_frames(3), ["0.png", "1.png", "3.png"])
    Image.fromarray(make_frames(1, 10, 12)[0]).save(folder / "2.png")
    with pytest.raises(VideoError, match=r"2\.png is 12x10 .* 0\.png is 32x24"):
        open_video(folder)


def test_mixed_sizes_in_list() -> None:
    with pytest.raises(VideoError, match="frame 1 is 12x10"):
        open_video([make_frames(1)[0], make_frames(1, 10, 12)[0]])


def test_corrupt_file_in_folder_names_it_when_read(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    paths = write_folder(folder, make_frames(3), ["0.png", "1.png", "2.png"])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    video = open_video(folder)
    video.frame(0)
    with pytest.raises(VideoError, match=r"frame 1 \(.*1\.png\) could not be decoded"):
        video.frame(1)


@pytest.mark.parametrize(
    "source, match",
    [
        (np.zeros((2, 4, 4, 3), np.float32), "dtype float32; only uint8"),
        (np.zeros((2, 4, 4, 2), np.uint8), r"shape \(2, 4, 4, 2\).*\(T,H,W,3\)"),
        (np.zeros((4, 4), np.uint8), "shape"),
        (torch.zeros((2, 4, 4, 4), dtype=torch.uint8), r"\(T,3,H,W\)"),
        ([np.zeros((4, 4, 3), np.int32)], "dtype int32"),
        ([object()], "list elements must be"),
        (42, "cannot open a int"),
    ],
)
def test_unsupported_types_say_what_is_supported(source: object, match: str) -> None:
    with pytest.raises(VideoError, match=match):
        open_video(source)


def test_frame_index_errors() -> None:
    video = open_video(make_frames())
    for bad in (-1, T, 100):
        with pytest.raises(FrameIndexError, match=f"{bad} is outside the video: it has {T}"):
            video.frame(bad)
    with pytest.raises(FrameIndexError, match="integer"):
        video.frame(1.5)  # type: ignore[arg-type]
    assert np.array_equal(video.frame(np.int64(2)), make_frames()[2])


def test_bad_cache_size() -> None:
    with pytest.raises(ConfigError, match="cache_size"):
        open_video(make_frames(), cache_size=-1)


def test_custom_subclass() -> None:
    class Constant(VideoSource):
        def _read(self, t: int) -> np.ndarray:
            return np.full((2, 3, 3), t, np.uint8)

    video = Constant(5, 2, 3, cache_size=2)
    assert video.frame(4)[0, 0, 0] == 4 and len(video) == 5
