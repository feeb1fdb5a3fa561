"""Frame folders and single image files as a :class:`~i2v.io.video_source.VideoSource`.

A folder's frames are listed once and their sizes read from the headers alone, so a frame of
the wrong size is reported when the video is opened; pixels are decoded with PIL only when a
frame is asked for.

Which files are frames (:func:`list_frame_files`): as in SAM 2, a folder that holds JPEG files
is read as JPEG frames and any other image in it (masks exported beside the frames, say) is
ignored; a folder without JPEGs is read as PNG frames. Names sort naturally, numbers inside
them by value (``frame_1, frame_2, frame_10``; ``2.jpg`` before ``10.jpg``), and two files
that name the same frame (``1.jpg`` and ``01.jpg``, ``5.jpg`` and ``5.jpeg``) are an error
naming both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
from PIL import Image
from tqdm import tqdm

from i2v.errors import VideoError, VideoNotFoundError
from i2v.io.video_source import IMAGE_SUFFIXES, VideoSource, pil_to_rgb

JPEG_SUFFIXES = (".jpg", ".jpeg")


class ImageFilesSource(VideoSource):
    """A list of image files (a frame folder or a single image), decoded on demand with PIL."""

    def __init__(self, paths: List[Path], cache_size: int, progress: bool = False) -> None:
        width, height = header_size(paths[0])
        # Headers are cheap, so a size mismatch is caught now instead of mid-propagation.
        rest = tqdm(paths[1:], desc="frame loading", unit="frame", disable=not progress or len(paths) < 2)
        for path in rest:
            size = header_size(path)
            if size != (width, height):
                raise VideoError(
                    f"{path} is {size[0]}x{size[1]} (WxH) but {paths[0].name} is "
                    f"{width}x{height}; all frames of a video must have the same size. "
                    "Resize or remove the offending file."
                )
        super().__init__(len(paths), height, width, cache_size)
        self.paths = paths

    def _read(self, t: int) -> np.ndarray:
        path = self.paths[t]
        try:
            with Image.open(path) as image:
                rgb = pil_to_rgb(image)
        except FileNotFoundError:
            raise VideoNotFoundError(f"frame {t} ({path}) was deleted after the video was opened.") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise VideoError(
                f"frame {t} ({path}) could not be decoded: {exc}. The file is corrupt or "
                "truncated; re-extract it or remove it from the folder."
            ) from exc
        if rgb.shape[:2] != (self.height, self.width):
            raise VideoError(
                f"frame {t} ({path}) is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but the video is "
                f"{self.width}x{self.height}; the file changed after the video was opened."
            )
        return rgb


def header_size(path: Path) -> Tuple[int, int]:
    """(width, height) of an image file, reading only its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise VideoNotFoundError(f"image file {path} does not exist.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise VideoError(f"{path} is not a readable image ({exc}); it is corrupt or not a JPEG/PNG file.") from exc


def natural_key(name: str) -> Tuple[Tuple[int, Union[int, str]], ...]:
    """Sort key of a file stem with the numbers inside it compared by value:
    ``frame_2`` < ``frame_10``; ``1`` and ``01`` give the same key."""
    # isdecimal, not isdigit: "²" is a digit that int() cannot parse.
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdecimal() else (1, p.lower()) for p in parts if p)


def list_frame_files(folder: Path) -> List[Path]:
    """Frame files of ``folder`` in frame order (see the module docstring)."""
    files = [
        p
        for p in folder.iterdir()
        # Dot-files are skipped: macOS copies leave "._00001.jpg" resource forks beside frames.
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        others = sorted(p.name for p in folder.iterdir())[:3]
        found = f"it holds {others} ..." if others else "it is empty"
        raise VideoError(
            f"folder {folder} has no frames: expected JPEG or PNG files ({', '.join(IMAGE_SUFFIXES)}) but {found}."
        )
    jpegs = [p for p in files if p.suffix.lower() in JPEG_SUFFIXES]
    if jpegs:
        files = jpegs  # as SAM 2: a JPEG folder's other images are not frames
    files.sort(key=lambda p: (natural_key(p.stem), p.name))
    for a, b in zip(files, files[1:]):
        if natural_key(a.stem) == natural_key(b.stem):
            raise VideoError(
                f"{a.name} and {b.name} in {folder} name the same frame; keep one of them "
                "(or rename one) so that each frame has one file."
            )
    return files
