"""Video files decoded lazily with PyAV: random access by keyframe seek, cheap sequential reads.

Frames come out as a player shows them: a display rotation in the file (the display matrix that
phones write instead of rotating the pixels) is applied to every frame, and ``height``/``width``
are those of the displayed frame.
"""

from __future__ import annotations

import bisect
import itertools
import math
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


def display_quarter_turns(rotation: float, what: str = "the video") -> int:
    """Counter-clockwise quarter turns (0..3) that bring a frame upright.

    Args:
        rotation: the display rotation in degrees, in FFmpeg's convention
            (``av_display_rotation_get``, PyAV's ``VideoFrame.rotation``): the counter-clockwise
            angle by which the stored frame must be turned to be displayed. A phone held
            upright typically writes -90: its frames are stored sideways and turned clockwise.
        what: names the video in the error message.

    Raises:
        VideoError: the angle is not within 1 degree of a multiple of 90.
    """
    turns = round(rotation / 90.0) if math.isfinite(rotation) else 0
    if not abs(rotation - 90.0 * turns) <= 1.0:  # NaN and infinities fail this too
        raise VideoError(
            f"{what} has a display rotation of {rotation} degrees; only multiples "
            "of 90 degrees are supported. Re-encode it upright (ffmpeg applies the "
            "rotation when it re-encodes)."
        )
    return turns % 4


def rotate_for_display(image: np.ndarray, rotation: float) -> np.ndarray:
    """``image`` (H, W, ...) as displayed under a display rotation of ``rotation`` degrees.

    ``rotation`` follows FFmpeg's convention (see :func:`display_quarter_turns`): 90 turns the
    image a quarter counter-clockwise, -90 (or 270) a quarter clockwise. A quarter turn swaps
    height and width. Returns a C-contiguous array (``image`` itself when there is no turn).
    """
    turns = display_quarter_turns(rotation, "the frame")
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def _display_rotation(frame: Any, stream: Any) -> float:
    """The display rotation of a video (FFmpeg's convention, degrees; 0 when there is none).

    Read from the decoded ``frame`` (recent PyAV exposes the display matrix that FFmpeg
    attaches to each frame as ``VideoFrame.rotation``), else from the ``stream``'s side data
    (PyAV releases between 12 and 14 only), else from the ``rotate`` tag that old FFmpeg
    releases exported (a clockwise angle, hence the sign flip).
    """
    rotation = getattr(frame, "rotation", None)
    if rotation:
        return float(rotation)
    side_data = getattr(stream, "side_data", None)
    if isinstance(side_data, dict) and isinstance(side_data.get("DISPLAYMATRIX"), (int, float)):
        rotation = side_data["DISPLAYMATRIX"]
        if not math.isnan(rotation):  # NaN: a degenerate matrix, which no player applies
            return float(rotation)
    tag = stream.metadata.get("rotate")
    try:
        return -float(tag) if tag else 0.0
    except ValueError:
        return 0.0


def _open_container(path: Path) -> Any:
    """An open PyAV input container with at least one video stream."""
    av = _av()
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoError(
            f"{path} could not be opened as a video ({exc}); it is corrupt or "
            f"not a video. Supported sources: {_SUPPORTED}."
        ) from exc
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
    """A video file decoded with PyAV (first video stream), with frames as they are displayed.

    The display rotation is read from the first frame, decoded at open time (and handed out
    by the first read, not decoded twice); ``height`` and ``width`` are those of the displayed
    frames, swapped from the stored ones by a quarter turn. Only the rotation is applied: a
    display matrix that also mirrors the frame is shown unmirrored.

    Reading ``t`` right after ``t - 1`` continues the running decoder. Other reads seek to the
    keyframe at or before ``t`` and decode forward, unless no keyframe lies between the
    decoder's position and ``t``. After a seek, the ``cache_size - 1`` frames before ``t`` are
    cached too, so reading backwards seeks once per ``cache_size - 1`` frames. The packet
    index that seeking needs is built by one demux pass on the first non-sequential read, so
    purely sequential readers never pay for it.
    """

    _decoded: Optional[Iterator[Any]]  # the running decoder; None once it ended or failed
    _next: Optional[int]  # index of the frame the decoder yields next; None: unknown

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
                raise VideoError(
                    f"{path} has no decodable video frames ({num_frames} frames of {width}x{height} pixels)."
                )
            self._stored_size = (height, width)
            self._start(container)
            # The rotation lives in the container, but PyAV reads it reliably only from a
            # decoded frame. The frame is put back in front of the decoder, not wasted.
            first = self._peek_first_frame()
            turns = display_quarter_turns(_display_rotation(first, stream), str(path))
            self._rotation = 90 * turns  # counter-clockwise degrees: 0, 90, 180 or 270
        except BaseException:
            container.close()
            raise
        if turns % 2:
            height, width = width, height
        super().__init__(num_frames, height, width, cache_size)

    def _start(self, container: Any) -> None:
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # decoding dominates the cost of a read
        self._decoded = container.decode(self._stream)
        self._next = 0

    def _peek_first_frame(self) -> Any:
        """Decode frame 0 from the fresh decoder (at open time, before ``len(self)`` is set) and
        put it back in front of the decoder, so that the first read hands it out."""
        decoded = self._decoded
        assert decoded is not None, "_start() sets the decoder first"
        try:
            first = next(decoded, None)
        except _av().error.FFmpegError as exc:
            raise VideoError(
                f"frame 0 of {self.path} could not be decoded ({exc}); the file is corrupt near its start."
            ) from exc
        if first is None:
            raise VideoError(
                f"{self.path} has no decodable video frames: the stream ends "
                "before its first frame; the file is truncated or corrupt."
            )
        self._decoded = itertools.chain([first], decoded)
        return first

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
                    raise VideoError(
                        f"frame {t} of {self.path} cannot be located: its "
                        "timestamps are inconsistent. Re-encode the video."
                    )
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
            raise VideoError(
                f"frame {t} of {self.path} could not be decoded ({exc}); the file is corrupt near this frame."
            ) from exc

    def _frame_index(self, frame: Any) -> Optional[int]:
        if self._packets is not None and frame.pts in self._packets.position:
            return self._packets.position[frame.pts]
        return self._next

    def _frame_to_rgb(self, frame: Any, t: int) -> np.ndarray:
        """A decoded frame as displayed: (height, width, 3) uint8 RGB."""
        if (frame.height, frame.width) != self._stored_size:
            stored_height, stored_width = self._stored_size
            raise VideoError(
                f"frame {t} of {self.path} is {frame.width}x{frame.height} but the stream is "
                f"{stored_width}x{stored_height}; videos that change size mid-stream are not "
                "supported. Re-encode at a fixed size."
            )
        image = frame.to_ndarray(format="rgb24")
        return rotate_for_display(image, self._rotation)

    def _release(self) -> None:
        self._decoded = None
        self._container.close()
