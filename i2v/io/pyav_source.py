"""Video files decoded lazily with PyAV: random access by keyframe seek, cheap sequential reads."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from i2v.errors import VideoError
from i2v.io.video_source import _SUPPORTED, VideoSource

def _av() -> Any:
    """PyAV, imported on first use so that array-only users never load FFmpeg."""
    import av

    return av


def _open_container(path: Path) -> Any:
    """An open PyAV input container with at least one video stream."""
    av = _av()
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path} could not be opened as a video ({exc}); it is corrupt or "
                         f"not a video. Supported sources: {_SUPPORTED}.") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video stream (audio-only or data file).")
    return container


@dataclass
class _PacketIndex:
    """Where each frame of a video stream lies, from one demux pass (no decoding).

    Attributes:
        count: number of frames (packets carrying data).
        pts: (count,) presentation timestamps in display order; None when some packets have
            no timestamp or share one, in which case frames can only be located by counting.
        position: pts -> frame index.
        keyframes: frame indices of keyframes, ascending.
    """

    count: int
    pts: Optional[List[int]]
    position: Dict[int, int]
    keyframes: List[int]


def _scan_packets(path: Path) -> _PacketIndex:
    container = _open_container(path)
    stamps: List[Optional[int]] = []
    is_key: List[bool] = []
    try:
        for packet in container.demux(container.streams.video[0]):
            if packet.size == 0:  # the empty packet that flushes the decoder at the end
                continue
            stamps.append(packet.pts if packet.pts is not None else packet.dts)
            is_key.append(bool(packet.is_keyframe))
    except _av().error.FFmpegError as exc:
        raise VideoError(f"{path} could not be demuxed ({exc}); the file is corrupt.") from exc
    finally:
        container.close()
    known = [stamp for stamp in stamps if stamp is not None]
    if len(known) != len(stamps) or len(set(known)) != len(known):
        return _PacketIndex(len(stamps), None, {}, [])
    pts = sorted(known)  # packets come in decode order; frames in presentation order
    position = {stamp: i for i, stamp in enumerate(pts)}
    keyframes = sorted(position[stamp] for stamp, key in zip(known, is_key) if key)
    return _PacketIndex(len(stamps), pts, position, keyframes)


class _VideoFileSource(VideoSource):
    """A video file decoded with PyAV (first video stream; rotation metadata is ignored).

    Reading ``t`` right after ``t - 1`` continues the running decoder. Other reads seek to the
    keyframe at or before ``t`` and decode forward, unless no keyframe lies between the
    decoder's position and ``t``. After a seek, the ``cache_size - 1`` frames before ``t`` are
    cached too, so reading backwards seeks once per ``cache_size - 1`` frames. The packet
    index that seeking needs is built by one demux pass on the first non-sequential read, so
    purely sequential readers never pay for it.
    """

    def __init__(self, path: Path, cache_size: int) -> None:
        self.path = path
        self._packets: Optional[_PacketIndex] = None
        container = _open_container(path)
        try:
            stream = container.streams.video[0]
            num_frames = stream.frames
            if num_frames <= 0:  # WebM/MKV headers carry no frame count
                self._packets = _scan_packets(path)
                num_frames = self._packets.count
            width, height = stream.codec_context.width, stream.codec_context.height
            if num_frames <= 0 or width <= 0 or height <= 0:
                raise VideoError(f"{path} has no decodable video frames ({num_frames} frames "
                                 f"of {width}x{height} pixels).")
        except BaseException:
            container.close()
            raise
        super().__init__(num_frames, height, width, cache_size)
        self._start(container)

    def _start(self, container: Any) -> None:
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # decoding dominates the cost of a read
        self._decoded: Optional[Iterator[Any]] = container.decode(self._stream)
        self._next: Optional[int] = 0  # index of the frame the decoder yields next; None: unknown

    def _restart(self) -> None:
        """Reopen the file and decode from frame 0 (fallback when seeking cannot be trusted)."""
        self._container.close()
        self._start(_open_container(self.path))

    def _index(self) -> _PacketIndex:
        if self._packets is None:
            self._packets = _scan_packets(self.path)
        return self._packets

    def _read(self, t: int) -> np.ndarray:
        if self._decoded is not None and self._forward_is_cheaper(t):
            return self._decode_until(t, keep_from=t)
        self._seek(t)
        # Frames just before t were decoded anyway; caching them makes reverse reading (as in
        # backward propagation) seek once per cache_size frames instead of once per frame.
        return self._decode_until(t, keep_from=t - self._cache.capacity + 1)

    def _forward_is_cheaper(self, t: int) -> bool:
        if self._next is None or t < self._next:
            return False
        if t == self._next:
            return True  # sequential read: no index needed
        keyframes = self._index().keyframes
        k = bisect.bisect_right(keyframes, t)
        return k == 0 or keyframes[k - 1] <= self._next

    def _seek(self, t: int) -> None:
        index = self._index()
        if index.pts is None:
            self._restart()
            return
        k = bisect.bisect_right(index.keyframes, t)
        target = index.pts[index.keyframes[k - 1] if k else 0]
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except _av().error.FFmpegError:
            self._restart()
            return
        self._decoded = self._container.decode(self._stream)
        self._next = None  # learnt from the first decoded frame's timestamp

    def _decode_until(self, t: int, keep_from: int) -> np.ndarray:
        """Decode forward to frame t, caching frames keep_from..t-1 met on the way."""
        restarted = False
        while True:
            frame = self._next_frame(t)
            index = self._frame_index(frame)
            if index is None or index > t:
                # The seek landed somewhere we cannot place, or past t: start over once.
                if restarted:
                    raise VideoError(f"frame {t} of {self.path} cannot be located: its "
                                     "timestamps are inconsistent. Re-encode the video.")
                self._restart()
                restarted = True
                continue
            self._next = index + 1
            if index == t:
                return self._frame_to_rgb(frame, t)
            if index >= keep_from:
                self._cache.put(index, self._frame_to_rgb(frame, index))

    def _next_frame(self, t: int) -> Any:
        assert self._decoded is not None
        try:
            return next(self._decoded)
        except StopIteration:
            self._decoded = None
            raise VideoError(
                f"frame {t} of {self.path} could not be decoded: the stream ended early although "
                f"the container reports {len(self)} frames; the file is truncated or corrupt."
            ) from None
        except _av().error.FFmpegError as exc:
            self._decoded = None
            raise VideoError(f"frame {t} of {self.path} could not be decoded ({exc}); the "
                             "file is corrupt near this frame.") from exc

    def _frame_index(self, frame: Any) -> Optional[int]:
        if self._packets is not None and frame.pts in self._packets.position:
            return self._packets.position[frame.pts]
        return self._next

    def _frame_to_rgb(self, frame: Any, t: int) -> np.ndarray:
        if (frame.height, frame.width) != (self.height, self.width):
            raise VideoError(
                f"frame {t} of {self.path} is {frame.width}x{frame.height} but the stream is "
                f"{self.width}x{self.height}; videos that change size mid-stream are not "
                "supported. Re-encode at a fixed size."
            )
        return frame.to_ndarray(format="rgb24")

    def _release(self) -> None:
        self._decoded = None
        self._container.close()
