"""Reading dataset files: frames, indexed label PNGs, JSON and COCO RLE masks, each with a
DatasetError that names the file and says what it should hold. Shared by the DAVIS /
YouTube-VOS / MOSE, SA-V, SA-1B, COCO-video and folder readers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from i2v.errors import DatasetError
from i2v.io import masks as masks_io


def load_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; DatasetError if missing or unreadable."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(f"Frame file {path} does not exist.") from None
    except OSError as exc:
        raise DatasetError(f"Frame file {path} is not a readable image: {exc}") from exc


def load_label_png(path: Path) -> np.ndarray:
    """Read an indexed annotation PNG as (H, W) uint8 labels.

    Accepts palette ("P"), 8-bit grey ("L") and 1-bit ("1") PNGs, whose pixel values are the
    labels themselves; an RGB(A) PNG stores colours, not labels, so it is rejected rather than
    silently mis-read.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L", "1"):
                raise DatasetError(
                    f"Annotation {path} has PIL mode {im.mode!r}; expected an indexed (palette, "
                    f"mode 'P') PNG whose pixel values are object ids. Convert colour "
                    f"annotations to palette PNGs first."
                )
            return np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"Annotation file {path} does not exist.") from None
    except OSError as exc:
        raise DatasetError(f"Annotation file {path} is not a readable PNG (expected an indexed PNG): {exc}") from exc


def load_json(path: Path, what: str) -> Any:
    """Parse a JSON file; DatasetError naming the file and ``what`` it should contain."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{what} file {path} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{what} file {path} is not valid JSON: {exc}") from exc


def decode_rle(rle: Any, size: Tuple[int, int], where: str) -> np.ndarray:
    """Decode a COCO RLE ``{"size": [h, w], "counts": str}`` to an (h, w) bool mask.

    Goes through :func:`i2v.io.masks.decode_rle`, which checks that the runs cover the mask
    exactly (pycocotools leaves pixels that short runs do not reach uninitialised).

    Args:
        rle: the RLE dict as loaded from JSON.
        size: the (H, W) the mask must have (the image's).
        where: what the RLE is, for error messages (file and object).
    """
    try:
        m = masks_io.decode_rle(rle)
    except DatasetError as exc:
        raise DatasetError(f"{where} is not a valid COCO RLE: {exc}") from exc
    if m.shape != tuple(size):
        raise DatasetError(f"{where} decodes to shape {m.shape}, expected the image size {size}.")
    return m


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise DatasetError saying what was expected."""
    if not path.is_dir():
        raise DatasetError(f"Expected {what} at {path}, but that folder does not exist.")
    return path


class FrameFolder:
    """The sorted image files of one video folder (nothing is decoded until asked)."""

    def __init__(self, folder: Path, suffixes: Sequence[str] = (".jpg", ".jpeg")) -> None:
        require_dir(folder, "a folder of video frames")
        self.folder = folder
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
        if not self.paths:
            raise DatasetError(f"Frame folder {folder} holds no {'/'.join(suffixes)} files.")
        #: File stems ("00000", ...) in frame order; annotations are matched by stem.
        self.stems = [p.stem for p in self.paths]
        self._size: Optional[Tuple[int, int]] = None

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` as (H, W, 3) uint8 RGB; DatasetError if its size differs from frame 0's."""
        rgb = load_rgb(self.paths[t])
        h, w = self.size()
        if rgb.shape[:2] != (h, w):
            raise DatasetError(
                f"Frame {self.paths[t]} is {rgb.shape[1]}x{rgb.shape[0]} but the video's first frame "
                f"{self.paths[0].name} is {w}x{h}; every frame of a video must have one size. "
                f"Re-extract or resize this video's frames to {w}x{h}."
            )
        return rgb

    def size(self) -> Tuple[int, int]:
        """(H, W) of the video, from the first frame's header."""
        if self._size is None:
            try:
                with Image.open(self.paths[0]) as im:
                    self._size = (im.height, im.width)
            except OSError as exc:  # FileNotFoundError included
                raise DatasetError(f"Frame {self.paths[0]} is not a readable image: {exc}") from exc
        return self._size
