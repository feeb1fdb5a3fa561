"""Visualisation: paint object masks over frames and write the result as a GIF or MP4.

Objects are coloured with the DAVIS palette (:func:`i2v.io.masks.davis_palette`) by object id,
so an overlay matches the colours of the annotation PNGs that :mod:`i2v.io.masks` writes.
"""

from __future__ import annotations

import fractions
import itertools
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from i2v.errors import VideoError
from i2v.io.atomic import atomic_path
from i2v.io.masks import PathLike, davis_palette

# How much darker than the fill a mask's boundary is drawn.
_BOUNDARY_SHADE = 0.5
# Preferred MP4 encoders, best first; wheels without GPL codecs lack libx264.
_MP4_CODECS = ("libx264", "h264", "mpeg4")


def object_color(obj_id: int) -> Tuple[int, int, int]:
    """RGB colour of an object id: DAVIS palette entry ``obj_id`` for ids 1..255.

    Other ids (0, negative, above 255) wrap onto 1..255, because palette entry 0 is black
    and a black object would be invisible.
    """
    index = obj_id if 1 <= obj_id <= 255 else (obj_id - 1) % 255 + 1
    r, g, b = davis_palette()[index]
    return int(r), int(g), int(b)


def _erode(region: np.ndarray) -> np.ndarray:
    """4-neighbour erosion of (H, W) bool; the image edge does not count as outside."""
    padded = np.pad(region, 1, mode="edge")
    return region & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _check_overlay_inputs(frame: Any, masks: Any, obj_ids: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    frame = np.asarray(frame)
    masks = np.asarray(masks)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise VideoError(f"frame has shape {frame.shape} and dtype {frame.dtype}; expected (H, W, 3) uint8 RGB.")
    if masks.ndim != 3 or masks.shape[1:] != frame.shape[:2]:
        raise VideoError(
            f"masks have shape {masks.shape}; expected (N, {frame.shape[0]}, {frame.shape[1]}) to match the frame."
        )
    if len(obj_ids) != masks.shape[0]:
        raise VideoError(f"{masks.shape[0]} masks but {len(obj_ids)} obj_ids; give one id per mask.")
    return frame, masks.astype(bool, copy=False)


def overlay_masks(frame: np.ndarray, masks: np.ndarray, obj_ids: Sequence[int], alpha: float = 0.5) -> np.ndarray:
    """Blend each object's colour over its mask and darken its boundary.

    Args:
        frame: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool; where masks overlap the later object is shown.
        obj_ids: N object ids, coloured by :func:`object_color`.
        alpha: fill opacity in [0, 1]; boundaries use ``min(1, 2 * alpha)`` so they stay
            visible. ``alpha=0`` returns the frame unchanged.

    Returns:
        (H, W, 3) uint8 RGB, a new array; pixels outside every mask are untouched.
    """
    if not 0.0 <= alpha <= 1.0:
        raise VideoError(f"alpha must be in [0, 1], got {alpha}.")
    frame, masks = _check_overlay_inputs(frame, masks, obj_ids)
    winner = np.full(frame.shape[:2], -1, dtype=np.int64)  # index of the visible object
    for k, mask in enumerate(masks):
        winner[mask] = k
    boundary = np.zeros(frame.shape[:2], dtype=bool)
    for k in range(len(masks)):
        region = winner == k
        boundary |= region & ~_erode(region)
    colors = np.array([object_color(int(i)) for i in obj_ids], dtype=np.float32).reshape(-1, 3)
    out = frame.astype(np.float32)
    fill = winner >= 0
    out[fill] += alpha * (colors[winner[fill]] - out[fill])
    edge_alpha = min(1.0, 2.0 * alpha)
    out[boundary] += edge_alpha * (_BOUNDARY_SHADE * colors[winner[boundary]] - out[boundary])
    result = frame.copy()
    # Write back only covered pixels, so the rest is bit-identical to the input.
    result[fill] = np.clip(np.rint(out[fill]), 0, 255).astype(np.uint8)
    return result


def _checked_frame(frame: Any, index: int, size: Optional[Tuple[int, int]]) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise VideoError(
            f"frame {index} has shape {frame.shape} and dtype {frame.dtype}; expected (H, W, 3) uint8 RGB."
        )
    if size is not None and frame.shape[:2] != size:
        raise VideoError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]} (WxH) but frame 0 "
            f"is {size[1]}x{size[0]}; all frames of a video must have one size."
        )
    return frame


def _write_gif(tmp: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    images = [Image.fromarray(_checked_frame(f, i, None)) for i, f in enumerate(frames)]
    if not images:
        raise VideoError("write_overlay_video got no frames.")
    sizes = {image.size for image in images}
    if len(sizes) > 1:
        raise VideoError(f"frames have different sizes {sorted(sizes)}; all frames of a video must have one size.")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
    return len(images)


def _mp4_codec() -> str:
    import av

    for name in _MP4_CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not compiled into this FFmpeg build
            continue
    raise VideoError(
        f"this PyAV build has none of the MP4 encoders {_MP4_CODECS}; write a "
        ".gif instead or install a PyAV wheel with libx264."
    )


def _write_mp4(tmp: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    import av

    codec = _mp4_codec()
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise VideoError("write_overlay_video got no frames.")
    first = _checked_frame(first, 0, None)
    size = (int(first.shape[0]), int(first.shape[1]))
    pad = ((0, size[0] % 2), (0, size[1] % 2), (0, 0))  # yuv420p needs even sides
    count = 0
    with av.open(str(tmp), "w", format="mp4") as container:
        rate = fractions.Fraction(fps).limit_denominator(1001)  # NTSC rates are n/1001
        stream: Any = container.add_stream(codec, rate=rate)
        stream.height, stream.width = size[0] + pad[0][1], size[1] + pad[1][1]
        stream.pix_fmt = "yuv420p"
        for count, frame in enumerate(itertools.chain([first], iterator), start=1):
            padded = np.pad(_checked_frame(frame, count - 1, size), pad, mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush frames the encoder still buffers
            container.mux(packet)
    return count


def write_overlay_video(path: PathLike, frames: Iterable[np.ndarray], fps: float = 10) -> int:
    """Write frames to ``path`` as an animated GIF or an MP4, chosen by the suffix.

    MP4 frames are encoded as they arrive (H.264 when available, else MPEG-4 Part 2), so a
    generator is never held whole; odd frame sizes are padded by one pixel because the
    4:2:0 encoders need even sides. GIF frames are all held by PIL, which also merges
    identical consecutive frames into one longer frame (same total duration). The file is
    written atomically: on error any previous file at ``path`` is left as it was.

    Args:
        path: destination ending in ``.gif`` or ``.mp4``.
        frames: iterable of (H, W, 3) uint8 RGB frames, e.g. from :func:`overlay_masks`.
        fps: frames per second (> 0).

    Returns:
        The number of frames consumed from ``frames``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise VideoError(f"cannot write {str(path)!r}: supported suffixes are .gif and .mp4.")
    if not fps > 0:
        raise VideoError(f"fps must be positive, got {fps}.")
    writer = _write_gif if suffix == ".gif" else _write_mp4
    with atomic_path(Path(path)) as tmp:
        return writer(tmp, frames, float(fps))
