"""COCO-style video instance JSON: the YouTube-VIS / OVIS layout that annotation tools export.

    {"videos": [{"id": 1, "file_names": ["cat/00000.jpg", ...], "height": H, "width": W}],
     "annotations": [{"id": 7, "video_id": 1, "category_id": 1,
                      "segmentations": [RLE or polygons or null, ...],   # one per frame
                      "bboxes": [[x, y, w, h] or null, ...], "areas": [...], "iscrowd": 0}],
     "categories": [{"id": 1, "name": "cat"}]}

Frames are ``<image_root>/<file_name>``. A segmentation is a COCO RLE (``counts`` a compressed
string or a list of run lengths) or polygons (``[[x0, y0, x1, y1, ...], ...]``), decoded with
pycocotools; ``null`` means the object is absent from that frame. Every listed frame is
annotated. An object's id is its annotation's ``id``; its category is kept in
:meth:`CocoVideoDataset.categories`.

:func:`coco_video_json` writes the same layout (RLE segmentations, bboxes and areas from
pycocotools), which is what ``sam-i2v segment --format coco`` saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_utils

from i2v.data.base import VideoDataset
from i2v.data.files import load_json, load_rgb, require_dir
from i2v.errors import DatasetError
from i2v.io import masks as masks_io

PathLike = Union[str, Path]


def decode_segmentation(seg: Any, size: Tuple[int, int], where: str) -> np.ndarray:
    """One frame's segmentation (RLE dict, polygon list, or None) as an (H, W) bool mask."""
    h, w = size
    if seg is None:
        return np.zeros(size, dtype=bool)
    if isinstance(seg, dict):
        try:
            mask = masks_io.decode_rle(seg)
        except DatasetError as exc:
            raise DatasetError(f"{where} is not a valid COCO RLE: {exc}") from exc
    elif isinstance(seg, list):
        polygons = [
            p
            for p in seg
            if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float)) for v in p)
        ]
        if len(polygons) != len(seg):
            raise DatasetError(
                f"{where}: polygons must be lists of at least 3 x, y pairs ([[x0, y0, x1, y1, x2, y2, ...], ...])."
            )
        if not polygons:
            return np.zeros(size, dtype=bool)
        mask = masks_io.decode_rle(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w)))
    else:
        raise DatasetError(f"{where} is a {type(seg).__name__}; expected an RLE dict, a list of polygons or null.")
    if mask.shape != tuple(size):
        raise DatasetError(
            f"{where} decodes to {mask.shape[1]}x{mask.shape[0]} (WxH) but the video is "
            f"{w}x{h}; expected matching sizes."
        )
    return mask


def _field(record: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise DatasetError(
            f"{where} has no {key!r}; expected the YouTube-VIS layout (videos with id and "
            "file_names; annotations with video_id and segmentations)."
        )
    return record[key]


class CocoVideoDataset(VideoDataset):
    """Videos and instance masks from a YouTube-VIS / OVIS style JSON file.

    Args:
        annotation_file: the JSON file.
        image_root: folder the ``file_names`` are relative to (default: the JSON's folder).
    """

    def __init__(self, annotation_file: PathLike, image_root: Optional[PathLike] = None) -> None:
        self.path = Path(annotation_file)
        data = load_json(self.path, "COCO video annotation")
        where = f"COCO video annotation {self.path}"
        self.image_root = require_dir(Path(image_root) if image_root else self.path.parent, "the folder of the frames")
        videos = _field(data, "videos", where)
        annotations = data.get("annotations", []) if isinstance(data, Mapping) else []
        if not isinstance(videos, list) or not isinstance(annotations, list):
            raise DatasetError(f"{where}: 'videos' and 'annotations' must be lists.")
        self._videos: List[Dict[str, Any]] = []
        by_id: Dict[Any, int] = {}
        for k, video in enumerate(videos):
            vw = f"{where}, videos[{k}]"
            files = _field(video, "file_names", vw)
            if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
                raise DatasetError(f"{vw}: file_names must be a non-empty list of frame paths.")
            by_id[_field(video, "id", vw)] = k
            self._videos.append({"video": video, "files": files, "anns": []})
        for k, ann in enumerate(annotations):
            aw = f"{where}, annotations[{k}]"
            vid = _field(ann, "video_id", aw)
            if vid not in by_id:
                raise DatasetError(f"{aw} names video_id {vid!r}, which no entry of 'videos' has.")
            segs = _field(ann, "segmentations", aw)
            entry = self._videos[by_id[vid]]
            if not isinstance(segs, list) or len(segs) != len(entry["files"]):
                raise DatasetError(
                    f"{aw}: segmentations must list one entry (or null) per frame of video "
                    f"{vid!r}: {len(entry['files'])}, got {len(segs) if isinstance(segs, list) else segs!r}."
                )
            obj_id = int(ann.get("id", len(entry["anns"]) + 1))
            if any(a["id"] == obj_id for a in entry["anns"]):
                raise DatasetError(f"{aw}: annotation id {obj_id} appears twice in video {vid!r}.")
            entry["anns"].append(dict(ann, id=obj_id))
        for entry in self._videos:
            entry["anns"].sort(key=lambda a: a["id"])
        self._sizes: Dict[int, Tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._videos)

    def video_name(self, index: int) -> str:
        video = self._videos[index]["video"]
        if video.get("name"):
            return str(video["name"])
        parent = Path(self._videos[index]["files"][0]).parent.name
        return parent or str(video["id"])

    def num_frames(self, index: int) -> int:
        return len(self._videos[index]["files"])

    def obj_ids(self, index: int) -> List[int]:
        return [int(a["id"]) for a in self._videos[index]["anns"]]

    def categories(self, index: int) -> Dict[int, int]:
        """Object id -> category_id of video ``index``."""
        return {int(a["id"]): int(a.get("category_id", 1)) for a in self._videos[index]["anns"]}

    def frame_stem(self, index: int, t: int) -> str:
        return Path(self._videos[index]["files"][t]).stem

    def size(self, index: int) -> Tuple[int, int]:
        """(H, W) of video ``index``: its ``height`` / ``width``, else its first frame's."""
        if index not in self._sizes:
            video = self._videos[index]["video"]
            if "height" in video and "width" in video:
                self._sizes[index] = (int(video["height"]), int(video["width"]))
            else:
                h, w = self.frame(index, 0).shape[:2]
                self._sizes[index] = (h, w)
        return self._sizes[index]

    def frame(self, index: int, t: int) -> np.ndarray:
        path = self.image_root / self._videos[index]["files"][t]
        rgb = load_rgb(path)
        video = self._videos[index]["video"]
        if "height" in video and "width" in video and rgb.shape[:2] != (int(video["height"]), int(video["width"])):
            raise DatasetError(
                f"frame {path} is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but {self.path} gives video "
                f"{video['id']!r} the size {video['width']}x{video['height']}."
            )
        return rgb

    def masks(self, index: int, t: int) -> np.ndarray:
        size = self.size(index)
        anns = self._videos[index]["anns"]
        out = np.zeros((len(anns), *size), dtype=bool)
        for n, ann in enumerate(anns):
            where = f"{self.path}: annotation {ann['id']}, frame {t}"
            out[n] = decode_segmentation(ann["segmentations"][t], size, where)
        return out


def coco_video_json(videos: Sequence[Mapping[str, Any]], category_name: str = "object") -> Dict[str, Any]:
    """The YouTube-VIS layout of predicted (or annotated) masks, segmentations as RLE.

    Args:
        videos: per video a mapping with ``file_names`` (T frame paths), ``height``, ``width``
            and ``masks``: {object id: (T, H, W) bool}; optionally ``name``.
        category_name: the one category every object is given.

    Returns:
        ``{"info", "videos", "annotations", "categories"}``, JSON-serialisable. Annotation ids
        are the object ids (made unique across videos by numbering on when they repeat).
    """
    out: Dict[str, Any] = {
        "info": {"description": "sam-i2v masks"},
        "videos": [],
        "annotations": [],
        "categories": [{"id": 1, "name": category_name}],
    }
    used: set = set()
    for v, video in enumerate(videos, start=1):
        files = list(video["file_names"])
        h, w = int(video["height"]), int(video["width"])
        record = {"id": v, "file_names": files, "height": h, "width": w, "length": len(files)}
        if video.get("name"):
            record["name"] = str(video["name"])
        out["videos"].append(record)
        for obj_id, masks in video["masks"].items():
            ann_id = int(obj_id)
            while ann_id in used:
                ann_id += 1
            used.add(ann_id)
            segs: List[Optional[Dict[str, Any]]] = []
            boxes: List[Optional[List[float]]] = []
            areas: List[Optional[int]] = []
            for mask in masks:
                if not mask.any():
                    segs.append(None)
                    boxes.append(None)
                    areas.append(None)
                    continue
                rle = masks_io.encode_rle(mask)
                coco = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
                segs.append(rle)
                boxes.append([float(x) for x in mask_utils.toBbox(coco)])
                areas.append(int(mask_utils.area(coco)))
            out["annotations"].append(
                {
                    "id": ann_id,
                    "video_id": v,
                    "category_id": 1,
                    "iscrowd": 0,
                    "height": h,
                    "width": w,
                    "length": len(files),
                    "segmentations": segs,
                    "bboxes": boxes,
                    "areas": areas,
                }
            )
    return out
