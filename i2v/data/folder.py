"""Reader for one's own videos: one folder per video, frames and a folder of mask PNGs.

    my_videos/                       (or my_videos/<split>/, when that folder exists)
      cat/
        frame_001.jpg  frame_002.jpg ...     JPEG or PNG frames, in natural order
        masks/                               (or Annotations/)
          frame_001.png  frame_040.png       a mask per annotated frame, named like its frame
      dog/
        clip.mp4                             a video file instead of frames (decoded with PyAV)
        masks/
          00000.png  00012.png               masks named by frame index (0 = first frame)

A mask PNG is a label map: palette ("P") or grayscale PNGs whose pixel value is the object id
(0 background, 255 "void", left out of metrics), or a binary 0/255 (or 1-bit) PNG for a video
with one object, whose id is then 1. A frame without a mask is unlabelled (losses and metrics
skip it), not empty. Objects are the ids found in any of the video's masks.

Checked when a video is first read, each with an error naming the file: a mask whose size
differs from the frames, a mask that names no frame, a first annotated frame with no object
(it is where tracking is prompted), and ids that change meaning between frames (a 0/255 mask
beside masks of ids 1, 2, ..., or palettes that draw one id in different colours, as when an
annotation tool numbers each frame's colours anew).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from i2v.data.base import VideoDataset
from i2v.data.davis import VOID_LABEL
from i2v.data.files import require_dir
from i2v.errors import DatasetError, VideoError
from i2v.io import masks as masks_io
from i2v.io.image_files import ImageFilesSource, list_frame_files, natural_key
from i2v.io.video_source import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoSource, open_video

PathLike = Union[str, Path]

#: Names of a video's mask folder, in the order they are looked for.
MASK_FOLDERS = ("masks", "Annotations")
_OPEN_VIDEO_FILES = 2  # decoders kept open at once (each holds a file handle)


@dataclass
class _Video:
    """What the first read of one video found: where its frames and masks are, and its ids."""

    frames: Union[List[Path], Path]  # image files, or one video file
    stems: List[str]  # per frame: the file stem (images) or the zero-padded index (video file)
    size: Tuple[int, int]  # (H, W)
    mask_paths: Dict[int, Path]  # frame index -> mask PNG
    obj_ids: List[int]
    binary: bool  # 0/255 masks: 255 is object 1, there is no void


def _visible(folder: Path) -> List[Path]:
    # Dot-files are skipped: macOS copies leave "._00001.jpg" resource forks beside frames.
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def _palette_colours(path: Path, ids: Sequence[int]) -> Optional[Dict[int, Tuple[int, ...]]]:
    """The colour a palette PNG gives each of ``ids``; None for a PNG without a palette."""
    with Image.open(path) as image:
        if image.mode != "P":
            return None
        palette = image.getpalette() or []
    return {i: tuple(palette[3 * i : 3 * i + 3]) for i in ids}


class FolderDataset(VideoDataset):
    """Videos stored as ``root/<video>/`` folders of frames (or a video file) plus ``masks/``.

    Args:
        root: the folder holding one sub-folder per video.
        split: when ``root/<split>`` is a folder, read the videos there instead (so one root
            can hold ``train/`` and ``val/``); otherwise ``root`` itself is read.
    """

    def __init__(self, root: PathLike, split: Optional[str] = None) -> None:
        root = Path(root)
        if split and (root / split).is_dir():
            root = root / split
        self.root = require_dir(root, "a folder with one sub-folder per video")
        self.videos = sorted((p.name for p in _visible(root) if p.is_dir()), key=natural_key)
        if not self.videos:
            raise DatasetError(
                f"{root} holds no video folders; expected {root}/<video>/ folders, each with its frames "
                f"(JPEG/PNG, or one video file) and a masks/ folder of PNG masks named like the frames."
            )
        self._info: Dict[int, _Video] = {}
        self._open: Dict[int, VideoSource] = {}

    def __getstate__(self) -> Dict[str, object]:
        # DataLoader workers get a copy: open decoders (file handles) stay behind.
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    # -- the VideoDataset interface ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.videos)

    def video_name(self, index: int) -> str:
        return self.videos[index]

    def num_frames(self, index: int) -> int:
        return len(self.info(index).stems)

    def obj_ids(self, index: int) -> List[int]:
        return list(self.info(index).obj_ids)

    def frame(self, index: int, t: int) -> np.ndarray:
        return self._source(index).frame(t)

    def frame_stem(self, index: int, t: int) -> str:
        return self.info(index).stems[t]

    def is_annotated(self, index: int, t: int) -> bool:
        return t in self.info(index).mask_paths

    def masks(self, index: int, t: int) -> np.ndarray:
        info = self.info(index)
        labels = self._labels(index, t)
        if labels is None:
            return np.zeros((len(info.obj_ids), *info.size), dtype=bool)
        if info.binary:
            return (labels > 0)[None]
        return masks_io.label_map_to_masks(labels, info.obj_ids)

    def void_mask(self, index: int, t: int) -> np.ndarray:
        """(H, W) bool: the void (id 255) pixels of frame ``t``, to leave out of metrics."""
        info = self.info(index)
        labels = self._labels(index, t)
        if labels is None or info.binary:
            return np.zeros(info.size, dtype=bool)
        return labels == VOID_LABEL

    # -- reading -------------------------------------------------------------------------------
    def _labels(self, index: int, t: int) -> Optional[np.ndarray]:
        info = self.info(index)
        if not 0 <= t < len(info.stems):
            raise IndexError(f"frame {t} out of range for video {self.videos[index]!r} of {len(info.stems)} frames.")
        path = info.mask_paths.get(t)
        return None if path is None else self._read_mask(path, info.size)

    @staticmethod
    def _read_mask(path: Path, size: Tuple[int, int]) -> np.ndarray:
        labels = masks_io.load_palette_png(path)
        if labels.shape != size:
            raise DatasetError(
                f"mask {path} is {labels.shape[1]}x{labels.shape[0]} (WxH) but the video's frames are "
                f"{size[1]}x{size[0]}; save each mask at its frame's size."
            )
        return labels

    def _source(self, index: int) -> VideoSource:
        if index not in self._open:
            info = self.info(index)
            if isinstance(info.frames, list):
                source: VideoSource = ImageFilesSource(info.frames, cache_size=0)
            else:
                source = open_video(info.frames, cache_size=0)
            while len(self._open) >= _OPEN_VIDEO_FILES:
                self._open.pop(next(iter(self._open))).close()
            self._open[index] = source
        return self._open[index]

    def info(self, index: int) -> _Video:
        """The frames, masks and object ids of video ``index`` (found, and checked, once)."""
        if index not in self._info:
            self._info[index] = self._scan(index)
        return self._info[index]

    def _scan(self, index: int) -> _Video:
        name = self.videos[index]
        folder = self.root / name
        entries = _visible(folder)
        images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        if images and videos:
            raise DatasetError(
                f"video folder {folder} holds both frame images and a video file ({videos[0].name}); keep one of them."
            )
        if len(videos) > 1:
            raise DatasetError(
                f"video folder {folder} holds {len(videos)} video files ({', '.join(p.name for p in videos)}); "
                "put each video in its own folder."
            )
        try:
            if images:
                frames: Union[List[Path], Path] = list_frame_files(folder)
                stems = [p.stem for p in frames]  # type: ignore[union-attr]
                with ImageFilesSource(frames, cache_size=0) as source:  # type: ignore[arg-type]
                    size = (source.height, source.width)
            elif videos:
                frames = videos[0]
                with open_video(frames, cache_size=0) as source:
                    size, count = (source.height, source.width), len(source)
                stems = [f"{t:05d}" for t in range(count)]
            else:
                raise DatasetError(
                    f"video folder {folder} has no frames: expected JPEG/PNG frames "
                    f"({', '.join(IMAGE_SUFFIXES)}) or one video file ({', '.join(VIDEO_SUFFIXES)})."
                )
        except VideoError as exc:
            raise DatasetError(f"video {name!r}: {exc}") from exc
        mask_paths = self._match_masks(folder, stems, isinstance(frames, Path))
        obj_ids, binary = self._find_ids(folder, mask_paths, size)
        return _Video(frames, stems, size, mask_paths, obj_ids, binary)

    @staticmethod
    def _match_masks(folder: Path, stems: List[str], from_video_file: bool) -> Dict[int, Path]:
        mask_dir = next((folder / m for m in MASK_FOLDERS if (folder / m).is_dir()), None)
        if mask_dir is None:
            raise DatasetError(
                f"video folder {folder} has no masks/ (or Annotations/) folder; put a PNG mask "
                "of each annotated frame there, named like its frame."
            )
        pngs = sorted(
            (p for p in _visible(mask_dir) if p.is_file() and p.suffix.lower() == ".png"),
            key=lambda p: natural_key(p.stem),
        )
        if not pngs:
            raise DatasetError(
                f"mask folder {mask_dir} holds no PNG masks; a video needs at least one annotated frame."
            )
        index_of = {s: t for t, s in enumerate(stems)}
        out: Dict[int, Path] = {}
        for p in pngs:
            t = index_of.get(p.stem)
            if t is None and from_video_file and p.stem.isdecimal() and int(p.stem) < len(stems):
                t = int(p.stem)  # "12.png" as well as "00012.png"
            if t is None:
                want = (
                    "its frame index (00000.png is the first frame)"
                    if from_video_file
                    else f"the frame it annotates (e.g. {stems[0]}.png for the first frame)"
                )
                raise DatasetError(
                    f"mask {p} matches no frame of the video ({len(stems)} frames); name each mask after {want}."
                )
            if t in out:
                raise DatasetError(f"masks {out[t].name} and {p.name} in {mask_dir} both annotate frame {t}; keep one.")
            out[t] = p
        return dict(sorted(out.items()))

    def _find_ids(self, folder: Path, mask_paths: Dict[int, Path], size: Tuple[int, int]) -> Tuple[List[int], bool]:
        """Object ids of a video's masks and whether they are 0/255 binary masks, checked for
        ids that change meaning and for a first annotated frame with no object."""
        values: Dict[Path, List[int]] = {}
        for path in mask_paths.values():
            values[path] = np.unique(self._read_mask(path, size)).tolist()
        ids = sorted(set().union(*values.values()) - {0})
        binary_like = [p for p, v in values.items() if set(v) <= {0, VOID_LABEL} and VOID_LABEL in v]
        labelled = [p for p, v in values.items() if set(v) - {0, VOID_LABEL}]
        if binary_like and labelled:
            raise DatasetError(
                f"ids change meaning between the masks of {folder.name!r}: {binary_like[0].name} is a 0/255 mask "
                f"(255 = the one object) but {labelled[0].name} holds ids {sorted(set(values[labelled[0]]) - {0, VOID_LABEL})} "
                f"(where 255 is void). Save every mask of a video the same way: all 0/255 for one object, or ids 1, 2, ..."
            )
        binary = bool(binary_like)
        obj_ids = [1] if binary else [i for i in ids if i != VOID_LABEL]
        self._check_palettes(folder, values, obj_ids)
        first_t, first = next(iter(mask_paths.items()))
        if not (set(values[first]) - ({0} if binary else {0, VOID_LABEL})):
            raise DatasetError(
                f"the first annotated frame of {folder.name!r} ({first}, frame {first_t}) has no object: every pixel "
                "is background. Tracking is prompted from an object's first mask; remove this mask (a frame without "
                "a mask is unlabelled) or draw the object on it."
            )
        return obj_ids, binary

    @staticmethod
    def _check_palettes(folder: Path, values: Dict[Path, List[int]], obj_ids: List[int]) -> None:
        """Palette PNGs must draw each id in one colour: an annotation tool that numbers each
        frame's colours anew gives one object different ids on different frames."""
        seen: Dict[int, Tuple[Tuple[int, ...], Path]] = {}
        for path, vals in values.items():
            colours = _palette_colours(path, [i for i in vals if i in obj_ids])
            for obj, colour in (colours or {}).items():
                if obj in seen and seen[obj][0] != colour:
                    raise DatasetError(
                        f"ids change meaning between the masks of {folder.name!r}: id {obj} is drawn in colour "
                        f"{seen[obj][0]} in {seen[obj][1].name} but {colour} in {path.name}. Each pixel value must "
                        "name one object in every mask of a video; export the masks with one palette for the video."
                    )
                seen.setdefault(obj, (colour, path))
