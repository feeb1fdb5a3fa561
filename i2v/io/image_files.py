"""Frame folders and single image files as a :class:`~i2v.io.video_source.VideoSource`.

A folder's frames are listed once (numerically when every file stem is an integer, else by
name) and their sizes read from the headers alone, so a frame of the wrong size is reported
when the video is opened; pixels are decoded with PIL only when a frame is asked for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

from i2v.errors import VideoError, VideoNotFoundError
from i2v.io.video_source import IMAGE_SUFFIXES, VideoSource, pil_to_rgb


class ImageFilesSource(VideoSource):
    """A list of image files (a frame folder or a single image), decoded on demand with PIL."""

    def __init__(self, paths: List[Path], cache_size: int) -> None:
        width, height = header_size(paths[0])
        # Headers are cheap, so a size mismatch is caught now instead of mid-propagation.
        for path in paths[1:]:
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
            raise VideoNotFoundError(
                f"frame {t} ({path}) was deleted after the video was opened."
            ) from None
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
        raise VideoError(f"{path} is not a readable image ({exc}); it is corrupt or not "
                         "a JPEG/PNG file.") from exc


def natural_key(name: str) -> Tuple[Tuple[int, int, str], ...]:
    """Sort key that orders the numbers inside names by value: ``frame2`` before ``frame10``."""
    # isdecimal, not isdigit: "²" is a digit that int() cannot parse.
    return tuple((0, int(part), part) if part.isdecimal() else (1, 0, part)
                 for part in re.split(r"(\d+)", name) if part)


def list_frame_files(folder: Path) -> List[Path]:
    """Image files of ``folder`` in frame order: natural order of their names (numbers inside
    names compare by value, so ``img_2.png`` comes before ``img_10.png``)."""
    files = [
        p for p in folder.iterdir()
        # Dot-files are skipped: macOS copies leave "._00001.jpg" resource forks beside frames.
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        others = sorted(p.name for p in folder.iterdir())[:3]
        found = f"it holds {others} ..." if others else "it is empty"
        raise VideoError(
            f"folder {folder} has no frames: expected JPEG or PNG files "
            f"({', '.join(IMAGE_SUFFIXES)}) but {found}."
        )
    return sorted(files, key=lambda p: (natural_key(p.stem), p.name))
