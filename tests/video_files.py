"""Writing and plainly decoding small video files with PyAV, for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import av
import numpy as np


def has_encoder(name: str) -> bool:
    """Whether this PyAV build can encode with codec ``name``."""
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:  # av raises different errors for unknown and decode-only codecs
        return False


def write_video(
    path: Path,
    frames: Sequence[np.ndarray],
    codec: str = "mpeg4",
    rate: int = 10,
    options: Optional[Dict[str, str]] = None,
    rotation: Optional[float] = None,
) -> Path:
    """Encode (H, W, 3) uint8 RGB ``frames`` to ``path``; ``rotation`` sets a display matrix."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if options:
            stream.options = options
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path: Path) -> List[np.ndarray]:
    """Every frame as stored: PyAV's plain sequential decode (it ignores display matrices)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
