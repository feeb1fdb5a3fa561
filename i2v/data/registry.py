"""The dataset registry: the one list of readers, and how a name and a folder become one.

The CLIs (``sam-i2v eval --dataset``), training recipes (``data: - type: ...``) and
evaluation all read :data:`DATASETS`. Adding a reader is its module plus one
:class:`DatasetEntry` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from i2v.data.base import VideoDataset
from i2v.errors import DatasetError


def _synthetic(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset

    config = kw.pop("config", None)
    if isinstance(config, dict):
        config = SyntheticConfig(**config)
    num_videos = kw.pop("num_videos", None)
    return SyntheticVideoDataset(split, num_videos=100 if num_videos is None else int(num_videos), config=config, **kw)


def _davis(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.davis import DavisDataset

    return DavisDataset(_need(root, "davis"), split, **kw)


def _ytvos(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.davis import YouTubeVOSDataset

    return YouTubeVOSDataset(_need(root, "ytvos"), split, **kw)


def _mose(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.davis import MOSEDataset

    return MOSEDataset(_need(root, "mose"), split, **kw)


def _sav(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.sav import SAVDataset

    return SAVDataset(_need(root, "sav"), split, **kw)


def _sa1b(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.sa1b import SA1BDataset

    return SA1BDataset(_need(root, "sa1b"), **kw)


def _sa1b_pseudo(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.sa1b import SA1BDataset, SA1BPseudoVideo

    video_kw = {k: kw.pop(k) for k in ("num_frames", "seed", "max_translate", "max_scale", "max_rotate") if k in kw}
    # One seed drives both the motion and a "random" choice of masks.
    return SA1BPseudoVideo(SA1BDataset(_need(root, "sa1b_pseudo"), seed=video_kw.get("seed", 0), **kw), **video_kw)


def _folder(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.folder import FolderDataset

    return FolderDataset(_need(root, "folder"), split or None, **kw)


def _coco(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.coco_video import CocoVideoDataset

    annotations = kw.pop("annotations", None)
    if not annotations:
        raise DatasetError(
            "dataset 'coco' needs its JSON file (--annotations FILE or 'annotations:' in the "
            "config); root is the folder its file_names are relative to."
        )
    return CocoVideoDataset(annotations, root, **kw)


def _need(root: Optional[str], kind: str) -> str:
    if not root:
        raise DatasetError(f"dataset {kind!r} needs a root folder (--root DIR or 'root:' in the config).")
    return root


@dataclass(frozen=True)
class DatasetEntry:
    """One reader, as the CLIs and training recipes know it.

    Attributes:
        build: ``build(root, split, **options)`` opens the reader.
        default_split: the split used when none is given (evaluation's validation split).
        needs_root: whether the reader needs a dataset folder.
        required: options that must be given, each with what it is (for the error message).
        recipe_options: reader option → field of a training recipe's dataset spec
            (:class:`i2v.train.config.DataSpec`) that supplies it.
        evaluable: offered by ``sam-i2v eval`` (videos with ground-truth masks to score).
    """

    build: Callable[..., VideoDataset]
    default_split: str = ""
    needs_root: bool = True
    required: Mapping[str, str] = field(default_factory=dict)
    recipe_options: Mapping[str, str] = field(default_factory=dict)
    evaluable: bool = True


_IMAGE_OPTIONS = {"annotation_dir": "annotation_dir", "max_objects": "max_masks", "min_area": "min_area"}

DATASETS: Dict[str, DatasetEntry] = {
    # Generated on the fly, no files: scenes of moving shapes (see i2v.data.synthetic).
    "synthetic": DatasetEntry(
        _synthetic,
        "val",
        needs_root=False,
        recipe_options={"num_videos": "num_videos", "config": "synthetic", "seed": "seed"},
    ),
    # DAVIS 2016 / 2017 at 480p or full resolution.
    "davis": DatasetEntry(_davis, "val", recipe_options={"year": "year", "resolution": "resolution"}),
    "ytvos": DatasetEntry(_ytvos, "valid"),
    "mose": DatasetEntry(_mose, "valid"),
    # SA-V: JSON masklets (manual or auto), annotated at 6 fps.
    "sav": DatasetEntry(
        _sav, "sav_val", recipe_options={"annotation": "annotation", "annotated_only": "annotated_only"}
    ),
    # SA-1B images as one-frame videos.
    "sa1b": DatasetEntry(_sa1b, recipe_options=_IMAGE_OPTIONS, evaluable=False),
    # SA-1B images moved smoothly into pseudo-videos.
    "sa1b_pseudo": DatasetEntry(
        _sa1b_pseudo,
        recipe_options={
            **_IMAGE_OPTIONS,
            "num_frames": "frames_per_video",
            "seed": "seed",
            "max_translate": "max_translate",
            "max_scale": "max_scale",
            "max_rotate": "max_rotate",
        },
        evaluable=False,
    ),
    # One's own videos: root/<video>/ frames (or a video file) plus masks/ (see i2v.data.folder).
    "folder": DatasetEntry(_folder),
    # A YouTube-VIS / OVIS style JSON (annotations=) of frames under root (see i2v.data.coco_video).
    "coco": DatasetEntry(
        _coco,
        needs_root=False,
        required={"annotations": "the path of its JSON file"},
        recipe_options={"annotations": "annotations"},
    ),
}

#: The split each reader opens when none is given.
DEFAULT_SPLITS: Dict[str, str] = {name: entry.default_split for name, entry in DATASETS.items()}


def dataset_entry(kind: str) -> DatasetEntry:
    """The registry entry of reader ``kind``, or DatasetError naming the valid ones."""
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[kind]


def make_dataset(kind: str, root: Optional[str] = None, split: Optional[str] = None, **kwargs: Any) -> VideoDataset:
    """Build reader ``kind`` (a name in :data:`DATASETS`) on folder ``root``; ``split`` None
    opens its default split. ``kwargs`` are the reader's options (e.g. "coco":
    ``annotations=`` the JSON file, with ``root`` the folder of its frames)."""
    entry = dataset_entry(kind)
    try:
        return entry.build(root, split if split is not None else entry.default_split, **kwargs)
    except TypeError as exc:  # a misspelt option; anything else is a bug and keeps its traceback
        match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if match is None:
            raise
        raise DatasetError(
            f"dataset {kind!r} has no option {match.group(1)!r}; check its spelling against "
            f"the reader's documentation (i2v.data.registry.DATASETS[{kind!r}].build)."
        ) from None
