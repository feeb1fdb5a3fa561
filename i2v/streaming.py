"""A video source for frames that arrive one at a time (a camera, a decoder the user runs).

Only the last ``buffer_size`` frames are kept, so a stream of any length runs in constant
memory; prompting a frame that has left the buffer is an error that says so.
"""

from __future__ import annotations

import collections
import operator
from typing import Any, Deque, Tuple

import numpy as np

from i2v.errors import ConfigError, FrameIndexError, VideoError
from i2v.io.video_source import VideoSource, is_tensor, open_video


class StreamSource(VideoSource):
    """A growing video: ``push`` appends a frame; ``len`` counts every frame pushed so far."""

    def __init__(self, buffer_size: int = 8) -> None:
        try:
            size = operator.index(buffer_size)
        except TypeError:
            size = None
        if size is None or isinstance(buffer_size, bool) or size < 1:
            raise ConfigError(f"buffer_size must be an integer >= 1 (frames kept for prompting), got {buffer_size!r}.")
        super().__init__(num_frames=0, height=0, width=0, cache_size=0)
        self._buffer: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=size)

    def push(self, frame: Any) -> int:
        """Append one frame ((H, W, 3) uint8, grayscale, RGBA, PIL or tensor); returns its index."""
        # A tensor is opened as a 1-frame video ((1, H, W, 3), (1, 3, H, W) or (1, H, W)): lists
        # hold only arrays, PIL images and paths.
        image = open_video(frame[None] if is_tensor(frame) else [frame], cache_size=0).frame(0)
        h, w = image.shape[:2]
        if self._num_frames == 0:
            self._height, self._width = h, w
        elif (h, w) != (self._height, self._width):
            raise VideoError(
                f"stream frame {self._num_frames} is {w}x{h} but the stream started at "
                f"{self._width}x{self._height}; resize frames to one size before pushing them."
            )
        self._buffer.append((self._num_frames, image))
        self._num_frames += 1
        return self._num_frames - 1

    def require(self, t: int) -> None:
        """Raise FrameIndexError unless frame ``t`` is still buffered (so it may be prompted)."""
        if not any(idx == t for idx, _ in self._buffer):
            oldest = self._buffer[0][0] if self._buffer else 0
            raise FrameIndexError(
                f"stream frame {t} is no longer buffered (frames {oldest}..{self._num_frames - 1} "
                "are); prompt a recent frame, or raise buffer_size in init_stream."
            )

    def _read(self, t: int) -> np.ndarray:
        for idx, image in self._buffer:
            if idx == t:
                return image
        self.require(t)
        raise AssertionError("unreachable")
