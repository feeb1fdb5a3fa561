"""One place that turns a dataset name and a folder into a reader (CLI, training, evaluation)."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional

from i2v.data.base import VideoDataset
from i2v.errors import DatasetError


def _synthetic(root: Optional[str], split: str, **kw: Any) -> VideoDataset:
    from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset

    config = kw.pop("config", None)
    if isinstance(config, dict):
        config = SyntheticConfig(**config)
    return SyntheticVideoDataset(split, num_videos=int(kw.pop("num_videos", 100)), config=config, **kw)


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


DATASETS: Dict[str, Callable[..., VideoDataset]] = {
    "synthetic": _synthetic,
    "davis": _davis,
    "ytvos": _ytvos,
    "mose": _mose,
    "sav": _sav,
    "sa1b": _sa1b,
    "sa1b_pseudo": _sa1b_pseudo,
    "folder": _folder,
    "coco": _coco,
}

DEFAULT_SPLITS = {
    "synthetic": "val",
    "davis": "val",
    "ytvos": "valid",
    "mose": "valid",
    "sav": "sav_val",
    "sa1b": "",
    "sa1b_pseudo": "",
    "folder": "",
    "coco": "",
}


def make_dataset(kind: str, root: Optional[str] = None, split: Optional[str] = None, **kwargs: Any) -> VideoDataset:
    """Build reader ``kind`` ("synthetic", "davis", "ytvos", "mose", "sav", "sa1b", "sa1b_pseudo",
    "folder": one's own videos, see :mod:`i2v.data.folder`; "coco": a YouTube-VIS style JSON,
    given as ``annotations=``, with ``root`` the folder of its frames)."""
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}.")
    try:
        return DATASETS[kind](root, split if split is not None else DEFAULT_SPLITS[kind], **kwargs)
    except TypeError as exc:  # a misspelt option; anything else is a bug and keeps its traceback
        match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if match is None:
            raise
        raise DatasetError(
            f"dataset {kind!r} has no option {match.group(1)!r}; check its spelling against "
            f"the reader's documentation (i2v.data.registry.DATASETS[{kind!r}])."
        ) from None
