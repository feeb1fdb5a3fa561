"""Lazy, random-access video sources: frame folders, video files, arrays and tensors.

:func:`open_video` turns anything a user may call "a video" into a :class:`VideoSource`, which
hands out one frame at a time as (H, W, 3) uint8 RGB. Decoded sources (folders, image files,
video files) decode a frame only when asked for it and keep at most ``cache_size`` decoded
frames in an LRU cache, so a long video is never held whole in memory. Arrays, tensors and
lists the caller already holds are indexed in place, without a cache.

Frame count and size are known at open time, decoding at most one frame:

* folders: one PIL header read per file (PIL reads only the header until pixels are asked
  for), which also checks that every frame has the same size;
* video files: the container's ``frames`` field; containers that leave it at 0 (WebM, MKV)
  are demuxed once without decoding and their packets counted. The count is the container's
  word: if the file is truncated, reading a frame past its real end raises :class:`VideoError`.
  The first frame is decoded (and kept for the first read) to learn the display rotation
  that phones record: frames, height and width are those a player displays.

Sources are not thread-safe; give each thread its own.
"""

from __future__ import annotations

import abc
import collections
import operator
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from i2v.errors import ConfigError, FrameIndexError, StateError, VideoError, VideoNotFoundError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv")
_SUPPORTED = (
    f"a folder of JPEG/PNG frames, an image file, a video file ({' '.join(VIDEO_SUFFIXES)}), "
    "a uint8 numpy array (T,H,W,3), (T,H,W) or (T,H,W,4), a uint8 torch tensor (T,H,W,3) or "
    "(T,3,H,W), or a list of (H,W,3) uint8 arrays, PIL images or image paths"
)

VideoLike = Union[str, "os.PathLike[str]", np.ndarray, "torch.Tensor", Sequence[Any], "VideoSource"]


class _LRUCache:
    """At most ``capacity`` frames, least recently used evicted first (capacity 0: no cache)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: "collections.OrderedDict[int, np.ndarray]" = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: int) -> Optional[np.ndarray]:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: int, value: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class VideoSource(abc.ABC):
    """A video of ``len(self)`` frames of ``height`` x ``width`` pixels, read one frame at a time.

    Subclasses implement :meth:`_read`; index checking, caching and closing live here.
    Usable as a context manager and iterable (frames in order).
    """

    def __init__(self, num_frames: int, height: int, width: int, cache_size: int = 0) -> None:
        self._num_frames = num_frames
        self._height = height
        self._width = width
        self._cache = _LRUCache(cache_size)
        self._closed = False

    def __len__(self) -> int:
        """Number of frames."""
        return self._num_frames

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self._height

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self._width

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as a fresh (H, W, 3) uint8 RGB array the caller may modify.

        Raises:
            FrameIndexError: ``t`` is not an integer in ``[0, len(self))``.
            VideoError: the frame could not be decoded.
            StateError: the source was closed.
        """
        if self._closed:
            raise StateError(f"{self!r} is closed; open the video again to read frames.")
        t = self._check_index(t)
        image = self._cache.get(t)
        if image is None:
            image = self._read(t)
            self._cache.put(t, image)
        # A copy, so that a caller writing into the frame cannot corrupt the cache or the
        # caller's own array that an array source indexes.
        return np.array(image, dtype=np.uint8, copy=True)

    def close(self) -> None:
        """Release files and decoders and drop cached frames. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._cache.clear()
            self._release()

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.frame(t) for t in range(len(self)))

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(frames={len(self)}, height={self.height}, width={self.width})"

    @abc.abstractmethod
    def _read(self, t: int) -> np.ndarray:
        """Decode frame ``t`` (already range-checked) as (H, W, 3) uint8 RGB."""

    def _release(self) -> None:  # noqa: B027 - an optional hook: sources that hold nothing keep it empty
        """Free resources; subclasses holding files override this."""

    def _check_index(self, t: int) -> int:
        try:
            index = operator.index(t)
        except TypeError:
            raise FrameIndexError(f"frame index must be an integer, got {type(t).__name__} {t!r}.") from None
        if not 0 <= index < len(self):
            raise FrameIndexError(
                f"frame index {index} is outside the video: it has {len(self)} frames "
                f"(valid indices 0..{len(self) - 1})."
            )
        return index


def _to_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 (alpha dropped)."""
    if image.dtype != np.uint8:
        raise VideoError(
            f"{what} has dtype {image.dtype}; only uint8 (0..255) frames are supported. "
            "Convert float frames in [0, 1] with (x * 255).round().astype(np.uint8)."
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise VideoError(
            f"{what} has shape {tuple(image.shape)}; supported frame shapes are (H, W, 3) RGB, "
            "(H, W) or (H, W, 1) grayscale and (H, W, 4) RGBA."
        )
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


# PIL modes of 16-bit (or wider) grayscale, as 16-bit PNGs open.
_WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8 RGB; 16-bit grayscale keeps its 8 high bits.

    PIL's ``convert("RGB")`` clips 16-bit values at 255 instead of scaling them, which turns a
    16-bit PNG into an almost white frame.
    """
    if image.mode in _WIDE_GRAY_MODES:
        values = np.asarray(image).astype(np.int64)
        gray = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def is_tensor(x: object) -> bool:
    # A tensor cannot exist unless torch was imported, so there is no need to import it here.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class _ArraySource(VideoSource):
    """A (T, H, W[, C]) uint8 numpy array or torch tensor, indexed in place."""

    def __init__(self, frames: Any, channels_first: bool) -> None:
        shape = tuple(frames.shape)
        height, width = shape[2:4] if channels_first else shape[1:3]
        super().__init__(shape[0], height, width, cache_size=0)
        self._frames = frames
        self._channels_first = channels_first

    def _read(self, t: int) -> np.ndarray:
        image = self._frames[t]
        if is_tensor(image):
            image = image.detach().cpu().numpy()
        if self._channels_first:
            image = np.moveaxis(image, 0, -1)
        return _to_rgb(image, f"frame {t}")

    def _release(self) -> None:
        self._frames = None


class _SequenceSource(VideoSource):
    """A list of (H, W[, C]) uint8 arrays or PIL images, converted one at a time."""

    def __init__(self, items: Sequence[Any], size: Tuple[int, int]) -> None:
        super().__init__(len(items), size[0], size[1], cache_size=0)
        self._items = list(items)

    def _read(self, t: int) -> np.ndarray:
        item = self._items[t]
        if isinstance(item, Image.Image):
            return pil_to_rgb(item)
        return _to_rgb(np.asarray(item), f"frame {t}")


def _open_path(path: Path, cache_size: int, progress: bool = False) -> VideoSource:
    if not path.exists():
        raise VideoNotFoundError(f"video path {str(path)!r} does not exist.")
    from i2v.io.image_files import ImageFilesSource, list_frame_files

    if path.is_dir():
        return ImageFilesSource(list_frame_files(path), cache_size, progress=progress)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource([path], cache_size)
    from i2v.io.pyav_source import _VideoFileSource  # PyAV is imported only for video files

    return _VideoFileSource(path, cache_size)


def _channels_first(shape: Tuple[int, ...], kind: str) -> Optional[bool]:
    """Whether a (T, ...) video of this shape is channels-first; None if unsupported."""
    if len(shape) == 3:
        return False
    if len(shape) != 4:
        return None
    if kind == "array":
        return False if shape[3] in (1, 3, 4) else None
    # Tensors: channels-last wins when both axes could be channels (a 3-pixel-high video).
    return False if shape[3] == 3 else (True if shape[1] == 3 else None)


def _open_array(frames: Any, kind: str) -> VideoSource:
    shape = tuple(frames.shape)
    if str(frames.dtype) not in ("uint8", "torch.uint8"):
        raise VideoError(
            f"the {kind} has dtype {frames.dtype}; only uint8 (0..255) video is "
            "supported. Convert with (x * 255).round() and a cast to uint8."
        )
    channels_first = _channels_first(shape, kind)
    if channels_first is None:
        layouts = "(T,H,W,3), (T,3,H,W), (T,H,W)" if kind == "tensor" else "(T,H,W,3), (T,H,W), (T,H,W,1), (T,H,W,4)"
        raise VideoError(f"the {kind} has shape {shape}; supported video layouts are {layouts}.")
    if min(shape) == 0:
        raise VideoError(f"the {kind} has shape {shape}: a video needs at least one frame of at least 1x1 pixels.")
    return _ArraySource(frames, channels_first)


def _open_sequence(items: Sequence[Any], cache_size: int) -> VideoSource:
    if len(items) == 0:
        raise VideoError("the list of frames is empty; a video needs at least one frame.")
    if all(isinstance(item, (str, os.PathLike)) for item in items):
        from i2v.io.image_files import ImageFilesSource

        return ImageFilesSource([Path(item) for item in items], cache_size)
    sizes = [_item_size(item, i) for i, item in enumerate(items)]
    for i, size in enumerate(sizes):
        if size != sizes[0]:
            raise VideoError(
                f"frame {i} is {size[1]}x{size[0]} (WxH) but frame 0 is "
                f"{sizes[0][1]}x{sizes[0][0]}; all frames must have the same size."
            )
    return _SequenceSource(items, sizes[0])


def _item_size(item: Any, index: int) -> Tuple[int, int]:
    """(height, width) of one list element, validating its type, dtype and shape."""
    if isinstance(item, Image.Image):
        return item.height, item.width
    if not isinstance(item, np.ndarray):
        raise VideoError(
            f"frame {index} is a {type(item).__name__}; list elements must be numpy arrays, PIL images or image paths."
        )
    image = _to_rgb(item, f"frame {index}")
    return image.shape[0], image.shape[1]


def open_video(source: VideoLike, *, cache_size: int = 8, progress: bool = False) -> VideoSource:
    """Open ``source`` as a lazily decoded :class:`VideoSource`.

    Args:
        source: a folder of JPEG frames, or of PNG frames if it holds no JPEG (names sort
            naturally: ``frame_2`` before ``frame_10``; dot-files, non-image files and, beside
            JPEGs, other images are ignored; see :mod:`i2v.io.image_files`); a video
            file (.mp4 .mov .avi .webm .mkv, or anything else PyAV can open); a single image
            file (a 1-frame video); a uint8 numpy array (T, H, W, 3), (T, H, W) grayscale or
            (T, H, W, 4) RGBA; a uint8 torch tensor (T, H, W, 3), (T, 3, H, W) or (T, H, W);
            a list/tuple of uint8 arrays, PIL images or image paths; or a VideoSource
            (returned as is).
        cache_size: decoded frames kept in memory (LRU) by folder/file sources; 0 disables
            the cache. Array, tensor and in-memory list sources are not cached.
        progress: show a progress bar while a frame folder's headers are read.

    Returns:
        A VideoSource giving (H, W, 3) uint8 RGB frames. Close it (or use ``with``) to release
        the file handles of video files.

    Raises:
        VideoNotFoundError: a path does not exist.
        VideoError: the source is empty, unreadable, of mixed frame sizes, or of an
            unsupported type, dtype or shape.
    """
    try:
        cache_size = operator.index(cache_size)
    except TypeError:
        raise ConfigError(f"cache_size must be an integer, got {cache_size!r}.") from None
    if cache_size < 0:
        raise ConfigError(f"cache_size must be >= 0 (0 disables the cache), got {cache_size}.")
    if isinstance(source, VideoSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), cache_size, progress=bool(progress))
    if isinstance(source, np.ndarray):
        return _open_array(source, "array")
    if is_tensor(source):
        return _open_array(source, "tensor")
    if isinstance(source, (list, tuple)):
        return _open_sequence(source, cache_size)
    raise VideoError(f"cannot open a {type(source).__name__} as a video; supported: {_SUPPORTED}.")
