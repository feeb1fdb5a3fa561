"""Readers for the DAVIS, YouTube-VOS and MOSE layouts: JPEG frames plus palette-PNG masks.

All three store one folder of JPEG frames and one folder of indexed ("P" mode) PNGs per video;
pixel value ``k`` in an annotation is object ``k``, 0 is background and 255 is "void" (pixels
that no metric should count). They differ only in how the videos and objects are listed:

* DAVIS (``root/JPEGImages/480p/<seq>/00000.jpg``, ``root/Annotations/480p/<seq>/00000.png``,
  ``root/ImageSets/2017/val.txt``): every frame annotated (test-dev only the first); the
  objects of a sequence are the labels of its first frame (the semi-supervised protocol).
* YouTube-VOS / MOSE (``root/<split>/JPEGImages/<vid>/*.jpg``,
  ``root/<split>/Annotations/<vid>/*.png``, optional ``root/<split>/meta.json``): the valid
  splits annotate only the frame where each object first appears, so the objects come from
  ``meta.json`` (``{"videos": {vid: {"objects": {"1": {...}, ...}}}}``) or, without it, from
  the labels found in all of the video's PNGs.

Challenge splits (DAVIS ``test-dev`` / ``test-challenge``, YouTube-VOS and MOSE ``valid`` /
``test``) ship only each object's first-appearance mask; their readers set
``has_full_ground_truth = False`` (see :data:`SERVER_SCORED_SPLITS`) so that evaluation writes
predictions for the challenge server instead of scoring against them. ``frame_stem`` gives
each frame's file stem, the name a server expects for its predicted PNG.

Binary annotations: a video whose object-defining PNGs (DAVIS: the first frame's; YouTube-VOS
without meta.json: all of them) hold only 0 and 255 is read as 0/255 masks of one object,
id 1, with no void, as :mod:`i2v.data.folder` reads them; a later PNG of such a video holding
other ids is an error. Checked on reading, each with an error naming the file: a frame whose
size differs from the video's first frame, an annotation whose size differs from the frames,
an annotation PNG with no JPEG frame of the same stem, and a video whose objects come out empty
(a first-frame annotation with no object would otherwise score NaN).

:class:`PaletteVOSDataset` holds all the reading logic; the public classes only locate files.
The file-format helpers (:func:`load_rgb`, :func:`load_label_png`, :func:`load_json`,
:func:`decode_rle`, :class:`FrameFolder`) live in :mod:`i2v.data.files` (importable from here too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from i2v.data.base import VideoDataset
from i2v.data.files import FrameFolder, decode_rle, load_json, load_label_png, load_rgb, require_dir
from i2v.errors import DatasetError

__all__ = [
    "SERVER_SCORED_SPLITS",
    "VOID_LABEL",
    "DavisDataset",
    "MOSEDataset",
    "PaletteVOSDataset",
    "YouTubeVOSDataset",
    # file helpers (i2v.data.files), importable from here as before
    "FrameFolder",
    "decode_rle",
    "load_json",
    "load_label_png",
    "load_rgb",
    "require_dir",
]

PathLike = Union[str, Path]

#: Label value of "void" pixels in DAVIS-style annotations.
VOID_LABEL = 255

#: Splits whose local annotations hold only each object's first mask; they are scored on the
#: challenge servers (``has_full_ground_truth`` is False for them).
SERVER_SCORED_SPLITS: Dict[str, Tuple[str, ...]] = {
    "davis": ("test-dev", "test-challenge"),
    "ytvos": ("valid", "test"),
    "mose": ("valid", "test"),
}


class PaletteVOSDataset(VideoDataset):
    """Videos stored as ``image_dir/<video>/*.jpg`` plus ``annotation_dir/<video>/<stem>.png``.

    Args:
        image_dir: folder with one sub-folder of JPEG frames per video.
        annotation_dir: folder with one sub-folder of indexed PNGs per video; a PNG is matched
            to the frame with the same file stem, and a frame without one is unannotated.
        videos: the video names, in dataset order.
        declared_ids: per-video object ids when the dataset lists them (YouTube-VOS meta.json);
            videos missing here get theirs from the PNGs, per ``ids_from``.
        ids_from: ``"first_frame"`` (DAVIS: labels of the first frame's PNG) or
            ``"all_frames"`` (union of the labels of all the video's PNGs).
        merge_objects: treat every non-void label as one object with id 1 (DAVIS 2016).

    A video whose object-defining PNGs hold only 0 and 255 is read as binary masks of one
    object (id 1, no void); see the module docstring.
    """

    def __init__(
        self,
        image_dir: Path,
        annotation_dir: Path,
        videos: Sequence[str],
        declared_ids: Optional[Mapping[str, Sequence[int]]] = None,
        ids_from: str = "first_frame",
        merge_objects: bool = False,
    ) -> None:
        if ids_from not in ("first_frame", "all_frames"):
            raise DatasetError(f"ids_from must be 'first_frame' or 'all_frames', got {ids_from!r}")
        self.image_dir = require_dir(Path(image_dir), "the frame folder")
        self.annotation_dir = require_dir(Path(annotation_dir), "the annotation folder")
        self.videos = list(videos)
        self.declared_ids = {k: sorted(int(i) for i in v) for k, v in (declared_ids or {}).items()}
        self.ids_from = ids_from
        self.merge_objects = merge_objects
        # Per-video listings, filled on first use so that opening a 3000-video split is cheap.
        self._frames: Dict[int, FrameFolder] = {}
        self._annotated: Dict[int, Dict[str, Path]] = {}
        self._ids: Dict[int, List[int]] = {}
        self._binary: Dict[int, bool] = {}  # 0/255 masks of one object (255 = object 1)

    def __len__(self) -> int:
        return len(self.videos)

    def video_name(self, index: int) -> str:
        return self.videos[index]

    def frame_folder(self, index: int) -> FrameFolder:
        """The frame files of video ``index``."""
        if index not in self._frames:
            self._frames[index] = FrameFolder(self.image_dir / self.videos[index])
        return self._frames[index]

    def _annotation_paths(self, index: int) -> Dict[str, Path]:
        """Annotation PNG of each annotated frame stem of video ``index``."""
        if index not in self._annotated:
            folder = require_dir(
                self.annotation_dir / self.videos[index],
                f"the annotation folder of video {self.videos[index]!r}",
            )
            pngs = {p.stem: p for p in folder.glob("*.png")}
            frames = self.frame_folder(index)
            orphans = sorted(set(pngs) - set(frames.stems))
            if orphans:
                raise DatasetError(
                    f"Annotation {pngs[orphans[0]]} has no frame {orphans[0]}.jpg in {frames.folder}"
                    f"{f' (nor do {len(orphans) - 1} more)' if len(orphans) > 1 else ''}; a frame "
                    f"is missing. Restore the video's JPEG frames (or remove the annotation)."
                )
            self._annotated[index] = pngs
        return self._annotated[index]

    def num_frames(self, index: int) -> int:
        self._annotation_paths(index)  # an annotation without its frame means a lost frame
        return len(self.frame_folder(index))

    def obj_ids(self, index: int) -> List[int]:
        if index not in self._ids:
            self._ids[index] = self._find_obj_ids(index)
        return list(self._ids[index])

    def _find_obj_ids(self, index: int) -> List[int]:
        name = self.videos[index]
        self._binary[index] = False
        if name in self.declared_ids and not self.merge_objects:
            return self.declared_ids[name]
        pngs = self._annotation_paths(index)
        if self.ids_from == "first_frame":
            first = self.frame_folder(index).stems[0]
            if first not in pngs:
                raise DatasetError(
                    f"Video {name!r}: the first frame {first!r} has no annotation "
                    f"{self.annotation_dir / name / (first + '.png')}; the semi-supervised "
                    f"protocol takes the objects from it."
                )
            sources = [pngs[first]]
        else:
            sources = [pngs[s] for s in sorted(pngs)]
        labels: set = set()
        for p in sources:
            labels.update(np.unique(load_label_png(p)).tolist())
        if labels == {0, VOID_LABEL}:  # 0/255 binary masks, not a frame that is all void
            self._binary[index] = True
            return [1]
        ids = sorted(int(k) for k in labels - {0, VOID_LABEL})
        if not ids:
            where = (
                f"its first-frame annotation {sources[0]}"
                if self.ids_from == "first_frame"
                else f"none of its {len(sources)} annotations in {self.annotation_dir / name}"
            )
            raise DatasetError(
                f"Video {name!r} has no object: {where} holds only background"
                f"{' and void' if VOID_LABEL in labels else ''}, so there is nothing to track "
                f"(its scores would be NaN). Draw the objects on it, or remove {name!r} from the "
                f"split."
            )
        return [1] if self.merge_objects else ids

    def frame(self, index: int, t: int) -> np.ndarray:
        return self.frame_folder(index).read(t)

    def frame_stem(self, index: int, t: int) -> str:
        """Stem of frame ``t``'s JPEG (``"00000"``; YouTube-VOS ``"00005"``, ...)."""
        return self.frame_folder(index).stems[t]

    def is_annotated(self, index: int, t: int) -> bool:
        return self.frame_folder(index).stems[t] in self._annotation_paths(index)

    def labels(self, index: int, t: int) -> Optional[np.ndarray]:
        """Raw (H, W) uint8 label map of frame ``t``, or None when it is unannotated."""
        path = self._annotation_paths(index).get(self.frame_folder(index).stems[t])
        if path is None:
            return None
        lab = load_label_png(path)
        h, w = self.frame_folder(index).size()
        if lab.shape != (h, w):
            raise DatasetError(
                f"Annotation {path} is {lab.shape[1]}x{lab.shape[0]} but the video's frames "
                f"are {w}x{h}; an annotation must have its frame's size. Restore the original "
                f"annotation (or frames) of this video."
            )
        self.obj_ids(index)  # decides whether the video's masks are binary
        if self._binary[index]:
            other = np.setdiff1d(lab, (0, VOID_LABEL))
            if other.size:
                raise DatasetError(
                    f"Annotation {path} holds ids {other[:5].tolist()} but the video's other "
                    f"annotations are 0/255 masks (255 = the one object). Save every mask of a "
                    f"video the same way: all 0/255 for one object, or ids 1, 2, ..."
                )
            lab = np.where(lab == VOID_LABEL, 1, 0).astype(np.uint8)
        return lab

    def masks(self, index: int, t: int) -> np.ndarray:
        ids = np.asarray(self.obj_ids(index), dtype=np.int64)
        lab = self.labels(index, t)
        if lab is None:
            h, w = self.frame_folder(index).size()
            return np.zeros((len(ids), h, w), dtype=bool)
        if self.merge_objects:
            return ((lab > 0) & (lab != VOID_LABEL))[None]
        return lab[None] == ids[:, None, None]

    def void_mask(self, index: int, t: int) -> np.ndarray:
        """(H, W) bool: the void (label 255) pixels of frame ``t``, to leave out of metrics."""
        lab = self.labels(index, t)
        if lab is None:
            h, w = self.frame_folder(index).size()
            return np.zeros((h, w), dtype=bool)
        return lab == VOID_LABEL


class DavisDataset(PaletteVOSDataset):
    """DAVIS 2016/2017 (semi-supervised): the sequences listed in ``ImageSets/<year>/<split>.txt``.

    Args:
        root: the DAVIS folder (holding ``JPEGImages``, ``Annotations``, ``ImageSets``).
        split: ``"train"``, ``"val"``, ``"test-dev"``... (the name of the split file;
            ``test-dev`` / ``test-challenge`` have first-frame masks only, so
            ``has_full_ground_truth`` is False).
        year: 2017 (multi-object) or 2016 (all objects merged into one, id 1).
        resolution: ``"480p"`` or ``"Full-Resolution"``.
    """

    def __init__(self, root: PathLike, split: str = "val", year: int = 2017, resolution: str = "480p") -> None:
        if year not in (2016, 2017):
            raise DatasetError(f"DAVIS year must be 2016 or 2017, got {year!r}")
        root = Path(root)
        split_file = root / "ImageSets" / str(year) / f"{split}.txt"
        try:
            names = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
        except FileNotFoundError:
            raise DatasetError(
                f"DAVIS split file {split_file} does not exist; expected a text file listing one "
                f"sequence name per line."
            ) from None
        super().__init__(
            root / "JPEGImages" / resolution,
            root / "Annotations" / resolution,
            names,
            ids_from="first_frame",
            merge_objects=year == 2016,
        )
        self.has_full_ground_truth = split not in SERVER_SCORED_SPLITS["davis"]

    def frame_folder(self, index: int) -> FrameFolder:
        """The frame files of sequence ``index``, numbered 00000, 00001, ... without gaps."""
        new = index not in self._frames
        folder = super().frame_folder(index)
        if new and all(stem.isdigit() for stem in folder.stems):
            numbers = [int(stem) for stem in folder.stems]
            gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
            if gaps:
                width = len(folder.stems[0])
                raise DatasetError(
                    f"DAVIS sequence {self.videos[index]!r}: frame {gaps[0]:0{width}d}.jpg"
                    f"{f' (and {len(gaps) - 1} more)' if len(gaps) > 1 else ''} is missing from "
                    f"{folder.folder}; DAVIS numbers every frame. Restore the sequence's frames."
                )
        return folder


class YouTubeVOSDataset(PaletteVOSDataset):
    """YouTube-VOS (2018/2019): ``root/<split>/{JPEGImages,Annotations}/<vid>/``.

    Args:
        root: the dataset folder holding the split folders.
        split: ``"train"``, ``"valid"``, ``"test"`` (the last two have no local ground
            truth beyond first masks: ``has_full_ground_truth`` is False).
        image_split: folder to take frames from, if not ``split`` (e.g. ``"valid_all_frames"``,
            whose 30 fps frames are annotated at the stems of ``valid/Annotations``).
        meta_file: object listing inside the split folder; read when present, else the
            objects are the labels found in each video's PNGs.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "valid",
        image_split: Optional[str] = None,
        meta_file: str = "meta.json",
    ) -> None:
        split_dir = require_dir(Path(root) / split, f"the {split!r} split folder")
        image_dir = require_dir(Path(root) / (image_split or split) / "JPEGImages", "the JPEGImages folder")
        declared: Dict[str, List[int]] = {}
        meta_path = split_dir / meta_file
        if meta_path.is_file():
            declared = self._read_meta(meta_path)
        names = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
        super().__init__(image_dir, split_dir / "Annotations", names, declared, ids_from="all_frames")
        # valid/test annotate each object only where it first appears: server-scored.
        self.has_full_ground_truth = split not in SERVER_SCORED_SPLITS["ytvos"]

    @staticmethod
    def _read_meta(path: Path) -> Dict[str, List[int]]:
        meta = load_json(path, "YouTube-VOS meta")
        try:
            return {vid: [int(k) for k in v["objects"]] for vid, v in meta["videos"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(
                f"Meta file {path} does not have the YouTube-VOS layout "
                f'{{"videos": {{<vid>: {{"objects": {{"<id>": ...}}}}}}}}: {exc!r}'
            ) from exc


class MOSEDataset(YouTubeVOSDataset):
    """MOSE: the YouTube-VOS layout (``root/<split>/{JPEGImages,Annotations}``), splits
    ``"train"`` (all frames annotated) and ``"valid"`` (first masks only; server-scored, so
    ``has_full_ground_truth`` is False)."""

    def __init__(self, root: PathLike, split: str = "train", meta_file: str = "meta.json") -> None:
        super().__init__(root, split, meta_file=meta_file)
        self.has_full_ground_truth = split not in SERVER_SCORED_SPLITS["mose"]
