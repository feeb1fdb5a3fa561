"""Reader for SA-V, the SAM 2 video segmentation dataset.

Two layouts are released (checked against ``sav_dataset/README.md``, ``sav_dataset/utils/
sav_utils.py`` and ``training/dataset/vos_{raw_dataset,segment_loader}.py`` of
facebookresearch/sam2):

* **train** (``root/sav_train/``): per video ``sav_XXXXXX.mp4`` with ``sav_XXXXXX_manual.json``
  (and ``_auto.json``), usually in chunk folders ``sav_000/ ... sav_055/``. The JSON holds
  ``video_frame_count``, ``video_height``, ``video_width``, ``masklet_id`` and ``masklet``: a list
  over *annotated* frames of lists over masklets of COCO RLEs ``{"size": [h, w], "counts": str}``
  (SAM 2's loader also accepts ``null`` for an absent object). The video is 24 fps and annotated
  at 6 fps, so ``masklet[k]`` belongs to frame ``4 k``. Frames come from the mp4 (decoded lazily
  with PyAV) or, as SAM 2's training does, from JPEGs extracted to
  ``root/sav_train/JPEGImages_24fps/<video>/`` by ``sav_frame_extraction_submitit.py``, which keeps
  every 4th frame and names each by its 24 fps index (``00000.jpg, 00004.jpg, ...``).
* **val/test** (``root/sav_val/``): ``JPEGImages_24fps/<video>/00000.jpg ...`` (all 24 fps
  frames), ``Annotations_6fps/<video>/<obj:03d>/<frame:05d>.png`` (one binary PNG per object and
  annotated frame) and ``sav_val.txt`` listing the videos.

In both, frame ``t`` of the reader is the ``t``-th available frame, and whether it is annotated
follows from its 24 fps number (the JPEG stem, or its position in the mp4). Object ids are
SA-V's own 0-based masklet ids (val/test: the object folder names).

A video is checked when it is first opened, with an error naming its file: the masklet JSON's
fields (sizes in 1..65535, one RLE or null per masklet on every annotated frame, unique ids, no
more annotated frames than the video has), and the frames: a JPEG missing for an annotated
frame (or, where all 24 fps frames were extracted, any missing number) is an error rather than
a frame silently dropped, as is a frame whose size differs from the video's.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from i2v.data.base import VideoClip, VideoDataset
from i2v.data.files import FrameFolder, decode_rle, load_json, load_label_png, require_dir
from i2v.errors import DatasetError

PathLike = Union[str, Path]
_JSON_CACHE_SIZE = 4  # a masklet JSON is a few MB; keep only the videos being sampled now
MAX_SIDE = 65535  # the largest JPEG side; a bigger size in a JSON is corrupt


def decode_mp4_frames(path: Path, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
    """Decode the frames numbered ``wanted`` of a video file, as {index: (H, W, 3) uint8 RGB}.

    Decodes from the start up to ``max(wanted)``: slower than seeking for late frames, but exact
    for every codec and container (keyframe seeks in mp4 land on approximate frames).
    """
    import av  # only the mp4 path needs PyAV

    want = set(int(t) for t in wanted)
    out: Dict[int, np.ndarray] = {}
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if decoded in want:
                    out[decoded] = frame.to_ndarray(format="rgb24")
                decoded += 1
                if len(out) == len(want):
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        raise DatasetError(f"Video file {path} could not be decoded: {exc}") from exc
    missing = sorted(want - set(out))
    if missing:
        raise DatasetError(f"Video file {path} has no frame(s) {missing[:5]} (it has {decoded}).")
    return out


class _Video:
    """One SA-V video: where its frames are and how to get the masks of a 24 fps frame number."""

    name: str
    numbers: List[int]  # 24 fps frame number of each available frame
    size: Tuple[int, int]  # (H, W)
    obj_ids: List[int]

    def frames(self, positions: Sequence[int]) -> List[np.ndarray]:
        raise NotImplementedError

    def annotated(self, number: int) -> bool:
        raise NotImplementedError

    def masks(self, number: int) -> np.ndarray:
        raise NotImplementedError


class _JsonVideo(_Video):
    """Train layout: masklet JSON plus mp4 or extracted JPEG frames."""

    def __init__(
        self, name: str, ann: Dict[str, Any], ann_path: Path, jpeg_dir: Optional[Path], mp4: Path, every: int
    ) -> None:
        self.name, self.ann_path, self.every = name, ann_path, every
        try:
            self.size = (int(ann["video_height"]), int(ann["video_width"]))
            self.masklet: List[List[Optional[Dict[str, Any]]]] = ann["masklet"]
            n_obj = int(ann.get("masklet_num", len(self.masklet[0]) if self.masklet else 0))
            self.obj_ids = [int(i) for i in ann.get("masklet_id", range(n_obj))]
            n_frames = int(ann["video_frame_count"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            raise DatasetError(
                f"SA-V annotation {ann_path} lacks or mangles a field ({exc!r}); expected "
                f"video_height, video_width, video_frame_count, masklet, masklet_id. Re-download or "
                f"re-extract the file."
            ) from exc
        self._check(n_frames)
        self.mp4 = mp4
        self.folder = FrameFolder(jpeg_dir) if jpeg_dir is not None else None
        if self.folder is not None:
            self.numbers = [_frame_number(p) for p in self.folder.paths]
            self._check_jpegs(n_frames)
        else:
            self.numbers = list(range(n_frames))

    def _bad(self, what: str) -> DatasetError:
        return DatasetError(
            f"SA-V annotation {self.ann_path}: {what}; the file is corrupt or not "
            f"an SA-V masklet JSON. Re-download or re-extract it."
        )

    def _check(self, n_frames: int) -> None:
        """Sizes, masklet shape and ids, before anything is allocated or decoded."""
        h, w = self.size
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise self._bad(f"video_height x video_width is {h}x{w}, expected sides in 1..{MAX_SIDE}")
        if n_frames < 1:
            raise self._bad(f"video_frame_count is {n_frames}, expected at least 1")
        if not isinstance(self.masklet, list) or not self.masklet:
            raise self._bad("'masklet' is empty or not a list (one entry per annotated frame)")
        n_obj = len(self.obj_ids)
        for k, rles in enumerate(self.masklet):
            if not isinstance(rles, list) or len(rles) != n_obj:
                got = f"{len(rles)} entries" if isinstance(rles, list) else f"a {type(rles).__name__}"
                raise self._bad(
                    f"annotated frame {k * self.every} (masklet[{k}]) holds {got}, expected a "
                    f"list of {n_obj} RLEs or nulls, one per masklet id"
                )
        if len(set(self.obj_ids)) != n_obj:
            raise self._bad(f"masklet_id {self.obj_ids[:10]} repeats an id")
        last = (len(self.masklet) - 1) * self.every
        if last >= n_frames:
            raise self._bad(
                f"'masklet' has {len(self.masklet)} annotated frames, the last at frame {last}, "
                f"but video_frame_count is {n_frames}"
            )

    def _check_jpegs(self, n_frames: int) -> None:
        """Every annotated frame needs its JPEG; a folder of all 24 fps frames needs every one."""
        assert self.folder is not None
        have = set(self.numbers)
        every_frame = any(n % self.every for n in have)
        want = range(n_frames) if every_frame else range(0, len(self.masklet) * self.every, self.every)
        missing = [n for n in want if n not in have]
        if missing:
            names = ", ".join(f"{n:05d}.jpg" for n in missing[:3])
            raise DatasetError(
                f"SA-V video {self.name!r}: {len(missing)} frame(s) ({names}"
                f"{', ...' if len(missing) > 3 else ''}) are missing from {self.folder.folder}, which "
                f"{self.ann_path} annotates. Re-run the frame extraction for this video (or delete the "
                f"folder to read {self.mp4.name})."
            )

    def frames(self, positions: Sequence[int]) -> List[np.ndarray]:
        if self.folder is not None:
            out = [self.folder.read(p) for p in positions]
            source = str(self.folder.folder)
        else:
            decoded = decode_mp4_frames(self.mp4, [self.numbers[p] for p in positions])
            out = [decoded[self.numbers[p]] for p in positions]
            source = str(self.mp4)
        for f in out:
            if f.shape[:2] != self.size:
                raise DatasetError(
                    f"SA-V video {self.name!r}: frames from {source} are {f.shape[1]}x"
                    f"{f.shape[0]} but {self.ann_path} says {self.size[1]}x{self.size[0]}; "
                    f"expected matching sizes."
                )
        return out

    def annotated(self, number: int) -> bool:
        return number % self.every == 0 and number // self.every < len(self.masklet)

    def masks(self, number: int) -> np.ndarray:
        out = np.zeros((len(self.obj_ids),) + self.size, dtype=bool)
        if not self.annotated(number):
            return out
        rles = self.masklet[number // self.every]
        if len(rles) != len(self.obj_ids):
            raise DatasetError(
                f"SA-V annotation {self.ann_path}: frame {number} has {len(rles)} masks but the "
                f"video has {len(self.obj_ids)} masklets; expected one RLE (or null) per masklet."
            )
        for k, rle in enumerate(rles):
            if rle is not None:  # null: object absent on this frame
                where = f"SA-V annotation {self.ann_path}: masklet {k} of frame {number}"
                out[k] = decode_rle(rle, self.size, where)
        return out


class _PngVideo(_Video):
    """Val/test layout: JPEG frames plus one binary PNG per object and annotated frame."""

    def __init__(self, name: str, jpeg_dir: Path, ann_dir: Path) -> None:
        self.name = name
        self.folder = FrameFolder(jpeg_dir)
        self.numbers = [_frame_number(p) for p in self.folder.paths]
        self.size = self.folder.size()
        require_dir(ann_dir, f"the per-object annotation folder of SA-V video {name!r}")
        # val/test hold every 24 fps frame: a gap is a lost JPEG, not a frame to skip.
        gaps = sorted(set(range(self.numbers[-1] + 1)) - set(self.numbers))
        if gaps:
            raise DatasetError(
                f"SA-V video {name!r}: frame(s) {', '.join(f'{n:05d}.jpg' for n in gaps[:3])}"
                f"{', ...' if len(gaps) > 3 else ''} are missing from {jpeg_dir}, which holds every "
                f"24 fps frame up to {self.numbers[-1]:05d}.jpg. Restore them (re-extract the video)."
            )
        obj_dirs = sorted((p for p in ann_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
        try:
            self.obj_ids = [int(p.name) for p in obj_dirs]
        except ValueError as exc:
            raise DatasetError(f"SA-V annotation folder {ann_dir} holds a non-numeric object folder: {exc}") from exc
        self.pngs = [{_frame_number(p): p for p in d.glob("*.png")} for d in obj_dirs]
        self.annotated_numbers = set().union(*self.pngs) if self.pngs else set()
        orphans = sorted(self.annotated_numbers - set(self.numbers))
        if orphans:
            path = next(d[orphans[0]] for d in self.pngs if orphans[0] in d)
            raise DatasetError(
                f"SA-V mask {path} annotates frame {orphans[0]} but {jpeg_dir} has no "
                f"{orphans[0]:05d}.jpg; restore the video's frames."
            )

    def frames(self, positions: Sequence[int]) -> List[np.ndarray]:
        return [self.folder.read(p) for p in positions]

    def annotated(self, number: int) -> bool:
        return number in self.annotated_numbers

    def masks(self, number: int) -> np.ndarray:
        out = np.zeros((len(self.obj_ids),) + self.size, dtype=bool)
        for k, pngs in enumerate(self.pngs):
            if number in pngs:
                m = load_label_png(pngs[number])
                if m.shape != self.size:
                    raise DatasetError(
                        f"SA-V mask {pngs[number]} is {m.shape[1]}x{m.shape[0]} but the video's "
                        f"frames are {self.size[1]}x{self.size[0]}; restore the original mask (or "
                        f"frames) so that their sizes match."
                    )
                out[k] = m > 0
        return out


def _frame_number(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        raise DatasetError(
            f"File {path} is not named by its frame number (expected e.g. 00004{path.suffix})."
        ) from None


class SAVDataset(VideoDataset):
    """SA-V videos of one split, read lazily.

    Args:
        root: folder holding the split folders (``sav_train``, ``sav_val``, ``sav_test``).
        split: the split folder name. It is read as val/test layout if it has an
            ``Annotations_6fps`` folder, else as train layout (masklet JSONs in it or in its
            direct sub-folders).
        annotation: ``"manual"`` or ``"auto"`` masklets (train layout only).
        annotated_only: keep only the annotated (6 fps) frames, so that consecutive frames of
            the reader are 4 apart in the video (what SAM 2 trains on).
        annotation_every: 24 fps frames per annotated frame (4 in SA-V).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "sav_train",
        annotation: str = "manual",
        annotated_only: bool = False,
        annotation_every: int = 4,
    ) -> None:
        if annotation not in ("manual", "auto"):
            raise DatasetError(f"annotation must be 'manual' or 'auto', got {annotation!r}")
        if isinstance(annotation_every, bool) or not isinstance(annotation_every, int) or annotation_every < 1:
            raise DatasetError(f"annotation_every must be an integer >= 1 (4 in SA-V), got {annotation_every!r}")
        self.split_dir = require_dir(Path(root) / split, f"the SA-V split folder {split!r}")
        self.annotation = annotation
        self.annotated_only = annotated_only
        self.every = annotation_every
        self.jpeg_root = self.split_dir / "JPEGImages_24fps"
        self.png_root = self.split_dir / "Annotations_6fps"
        self.layout = "png" if self.png_root.is_dir() else "json"
        self._json_paths: Dict[str, Path] = {}
        if self.layout == "png":
            list_file = self.split_dir / f"{split}.txt"
            if list_file.is_file():
                self.names = [s.strip() for s in list_file.read_text().splitlines() if s.strip()]
            else:
                self.names = sorted(p.name for p in self.png_root.iterdir() if p.is_dir())
        else:
            # The split folder or its chunk folders (sav_000/ ...); never walk the millions
            # of extracted JPEGs.
            suffix = f"_{annotation}.json"
            subdirs = [p for p in self.split_dir.iterdir() if p.is_dir() and p != self.jpeg_root]
            for folder in [self.split_dir] + subdirs:
                for p in folder.glob(f"*{suffix}"):
                    self._json_paths[p.name[: -len(suffix)]] = p
            self.names = sorted(self._json_paths)
        if not self.names:
            raise DatasetError(
                f"SA-V split folder {self.split_dir} holds no videos: expected "
                f"'*_{annotation}.json' masklet files or an Annotations_6fps folder."
            )
        self._videos: "OrderedDict[int, _Video]" = OrderedDict()
        self._positions: Dict[int, List[int]] = {}  # kept frame positions (annotated_only)

    def __len__(self) -> int:
        return len(self.names)

    def video_name(self, index: int) -> str:
        return self.names[index]

    def _video(self, index: int) -> _Video:
        if index in self._videos:
            self._videos.move_to_end(index)
            return self._videos[index]
        name = self.names[index]
        video: _Video
        if self.layout == "png":
            video = _PngVideo(name, self.jpeg_root / name, self.png_root / name)
        else:
            ann_path = self._json_paths[name]
            jpeg_dir = self.jpeg_root / name
            mp4 = ann_path.with_name(name + ".mp4")
            if not jpeg_dir.is_dir() and not mp4.is_file():
                raise DatasetError(f"SA-V video {name!r} has neither frames at {jpeg_dir} nor a video file {mp4}.")
            ann = load_json(ann_path, "SA-V masklet annotation")
            video = _JsonVideo(name, ann, ann_path, jpeg_dir if jpeg_dir.is_dir() else None, mp4, self.every)
        self._videos[index] = video
        if len(self._videos) > _JSON_CACHE_SIZE:
            self._videos.popitem(last=False)
        return video

    def _kept(self, index: int) -> List[int]:
        """Positions (into the video's available frames) that this reader exposes."""
        if index not in self._positions:
            v = self._video(index)
            keep = range(len(v.numbers))
            self._positions[index] = (
                [p for p in keep if v.annotated(v.numbers[p])] if self.annotated_only else list(keep)
            )
        return self._positions[index]

    def frame_number(self, index: int, t: int) -> int:
        """24 fps frame number in the source video of frame ``t`` of video ``index``."""
        return self._video(index).numbers[self._kept(index)[t]]

    def num_frames(self, index: int) -> int:
        return len(self._kept(index))

    def obj_ids(self, index: int) -> List[int]:
        return list(self._video(index).obj_ids)

    def frame(self, index: int, t: int) -> np.ndarray:
        return self._video(index).frames([self._kept(index)[t]])[0]

    def masks(self, index: int, t: int) -> np.ndarray:
        return self._video(index).masks(self.frame_number(index, t))

    def is_annotated(self, index: int, t: int) -> bool:
        return self._video(index).annotated(self.frame_number(index, t))

    def clip(self, index: int, frame_indices: Sequence[int]) -> VideoClip:
        """Like :meth:`VideoDataset.clip`, decoding an mp4 once for all requested frames."""
        idx = np.asarray(list(frame_indices), dtype=np.int64)
        v, kept = self._video(index), self._kept(index)
        numbers = [v.numbers[kept[t]] for t in idx]
        return VideoClip(
            name=v.name,
            frame_indices=idx,
            frames=np.stack(v.frames([kept[t] for t in idx])),
            masks=np.stack([v.masks(n) for n in numbers]),
            obj_ids=list(v.obj_ids),
            annotated=np.array([v.annotated(n) for n in numbers], dtype=bool),
        )
