"""SA-1B images as one-frame videos, and pseudo-videos made from them by smooth random motion.

SA-1B layout (as released in the ``sa_000000.tar ...`` archives and read by SAM 2's
``SA1BRawDataset``): ``sa_<n>.jpg`` next to ``sa_<n>.json``, where the JSON is
``{"image": {"image_id", "width", "height", "file_name"}, "annotations": [{"id", "segmentation":
{"size": [h, w], "counts": str}, "bbox", "area", "predicted_iou", "stability_score", ...}]}``.
An image carries ~100 masks, so :class:`SA1BDataset` keeps ``max_objects`` of them.

:class:`SA1BPseudoVideo` turns any one-frame :class:`~i2v.data.base.VideoDataset` into clips by
warping the image and its masks with one affine motion (translation, scale, rotation) that starts
at the identity and moves along a smooth random path; the same warp is applied to image and masks
(bilinear for the image, nearest for the masks), so the masks stay exact labels of the pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from i2v.data.base import VideoClip, VideoDataset
from i2v.data.files import decode_rle, load_json, load_rgb, require_dir
from i2v.data.sav import MAX_SIDE
from i2v.errors import DatasetError, FrameIndexError

PathLike = Union[str, Path]


class SA1BDataset(VideoDataset):
    """SA-1B images (``root/*.jpg`` with ``<annotation_dir>/<stem>.json``) as one-frame videos.

    Args:
        root: folder of ``sa_<n>.jpg`` images.
        annotation_dir: folder of the ``sa_<n>.json`` files (default: ``root``).
        max_objects: keep at most this many masks per image (None: all).
        selection: which masks to keep when there are more: ``"area"`` takes the largest
            (ties by id; deterministic, ignores ``seed``), ``"random"`` a random subset drawn
            from ``numpy.random.default_rng([seed, index])``.
        seed: seed of ``"random"`` selection.
        min_area: drop masks smaller than this many pixels (SA-1B has many tiny ones).

    Object ids are the annotations' ``id`` fields, returned sorted ascending.
    """

    def __init__(
        self,
        root: PathLike,
        annotation_dir: Optional[PathLike] = None,
        max_objects: Optional[int] = None,
        selection: str = "area",
        seed: int = 0,
        min_area: float = 1.0,
    ) -> None:
        if selection not in ("area", "random"):
            raise DatasetError(f"selection must be 'area' or 'random', got {selection!r}")
        if max_objects is not None and max_objects < 1:
            raise DatasetError(f"max_objects must be >= 1 or None, got {max_objects}")
        self.root = require_dir(Path(root), "the SA-1B image folder")
        self.annotation_dir = require_dir(
            Path(annotation_dir) if annotation_dir is not None else self.root,
            "the SA-1B annotation folder",
        )
        self.images = sorted(p for p in self.root.iterdir() if p.suffix.lower() == ".jpg")
        if not self.images:
            raise DatasetError(f"SA-1B folder {self.root} holds no .jpg images.")
        self.max_objects, self.selection, self.seed, self.min_area = (max_objects, selection, seed, min_area)
        self._cache: "OrderedDict[int, Tuple[List[int], List[Dict[str, Any]], Tuple[int, int]]]"
        self._cache = OrderedDict()

    def __len__(self) -> int:
        return len(self.images)

    def video_name(self, index: int) -> str:
        return self.images[index].stem

    def num_frames(self, index: int) -> int:
        return 1

    def _annotations(self, index: int) -> Tuple[List[int], List[Dict[str, Any]], Tuple[int, int]]:
        """Selected (ids, RLEs, (H, W)) of image ``index``, ids ascending."""
        if index in self._cache:
            return self._cache[index]
        path = self.annotation_dir / f"{self.images[index].stem}.json"
        data = load_json(path, "SA-1B annotation")
        try:
            size = (int(data["image"]["height"]), int(data["image"]["width"]))
            anns = [
                (int(a.get("id", k)), float(a["area"]), a["segmentation"]) for k, a in enumerate(data["annotations"])
            ]
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DatasetError(
                f"SA-1B annotation {path} lacks or mangles a field ({exc!r}); expected "
                f'{{"image": {{"height", "width", ...}}, "annotations": [{{"id", "area", '
                f'"segmentation": {{"size", "counts"}}}}, ...]}}.'
            ) from exc
        if not (1 <= size[0] <= MAX_SIDE and 1 <= size[1] <= MAX_SIDE):
            raise DatasetError(
                f"SA-1B annotation {path}: image height x width is {size[0]}x{size[1]}, "
                f"expected sides in 1..{MAX_SIDE}; the file is corrupt. Re-extract it."
            )
        seen: Dict[int, int] = {}
        for ann_id, _, _ in anns:
            seen[ann_id] = seen.get(ann_id, 0) + 1
        repeated = sorted(i for i, n in seen.items() if n > 1)
        if repeated:
            raise DatasetError(
                f"SA-1B annotation {path}: annotation id(s) {repeated[:5]} occur more than once; "
                "each mask needs its own id. Re-extract the file or renumber its annotations."
            )
        anns = [a for a in anns if a[1] >= self.min_area]
        if self.max_objects is not None and len(anns) > self.max_objects:
            if self.selection == "area":
                anns = sorted(anns, key=lambda a: (-a[1], a[0]))[: self.max_objects]
            else:
                rng = np.random.default_rng([self.seed, index])
                keep = rng.choice(len(anns), size=self.max_objects, replace=False)
                anns = [anns[i] for i in keep]
        anns.sort(key=lambda a: a[0])
        entry = ([a[0] for a in anns], [a[2] for a in anns], size)
        self._cache[index] = entry
        if len(self._cache) > 2:  # masks() and obj_ids() of the same image are asked together
            self._cache.popitem(last=False)
        return entry

    def obj_ids(self, index: int) -> List[int]:
        return list(self._annotations(index)[0])

    def frame(self, index: int, t: int) -> np.ndarray:
        _check_frame(t, 1)
        img = load_rgb(self.images[index])
        size = self._annotations(index)[2]
        if img.shape[:2] != size:
            raise DatasetError(
                f"SA-1B image {self.images[index]} is {img.shape[1]}x{img.shape[0]} but its "
                f"annotation {self.annotation_dir / (self.images[index].stem + '.json')} is "
                f"{size[1]}x{size[0]}; the masks would not line up (was the image resized?)."
            )
        return img

    def masks(self, index: int, t: int) -> np.ndarray:
        _check_frame(t, 1)
        ids, rles, size = self._annotations(index)
        out = np.zeros((len(ids),) + size, dtype=bool)
        path = self.annotation_dir / f"{self.video_name(index)}.json"
        for k, rle in enumerate(rles):
            out[k] = decode_rle(rle, size, f"SA-1B annotation {path}: object {ids[k]}")
        return out


def _check_frame(t: int, n: int) -> None:
    if not 0 <= t < n:
        raise FrameIndexError(f"frame {t} out of range for a {n}-frame video")


class SA1BPseudoVideo(VideoDataset):
    """Clips of ``num_frames`` frames made by moving one image (and its masks) smoothly.

    Each parameter p (x/y translation as a fraction of width/height, log-scale, rotation in
    degrees) follows the quadratic Bezier curve ``p(u) = 2u(1-u) m + u^2 e`` over
    ``u = t / (num_frames - 1)``, from the identity at frame 0 (so frame 0 is the source image
    itself) through control point ``m`` to end point ``e``, both drawn uniformly within the
    bounds. The curve stays inside the bounds and has no jumps. Everything is drawn from
    ``numpy.random.default_rng([seed, index])``, so a clip depends only on (seed, index).

    Args:
        dataset: a dataset of one-frame videos (e.g. :class:`SA1BDataset`); frame 0 is used.
        num_frames: frames per pseudo-video.
        seed: seed of the motion.
        max_translate: bound of |translation| as a fraction of the image side.
        max_scale: bound of |log scale| (0.2: scale within [0.82, 1.22]).
        max_rotate: bound of |rotation| in degrees.
    """

    def __init__(
        self,
        dataset: VideoDataset,
        num_frames: int = 8,
        seed: int = 0,
        max_translate: float = 0.1,
        max_scale: float = 0.2,
        max_rotate: float = 15.0,
    ) -> None:
        if num_frames < 1:
            raise DatasetError(f"num_frames must be >= 1, got {num_frames}")
        self.dataset, self.frames_per_video, self.seed = dataset, num_frames, seed
        self.bounds = np.array([max_translate, max_translate, max_scale, max_rotate], dtype=float)
        self._source: Optional[Tuple[int, torch.Tensor, torch.Tensor]] = None

    def __len__(self) -> int:
        return len(self.dataset)

    def video_name(self, index: int) -> str:
        return self.dataset.video_name(index)

    def num_frames(self, index: int) -> int:
        return self.frames_per_video

    def obj_ids(self, index: int) -> List[int]:
        return self.dataset.obj_ids(index)

    def motion(self, index: int) -> np.ndarray:
        """(T, 4) motion parameters per frame: tx, ty (fractions), log-scale, angle (degrees)."""
        rng = np.random.default_rng([self.seed, index])
        mid, end = rng.uniform(-self.bounds, self.bounds, size=(2, 4))
        u = np.linspace(0.0, 1.0, self.frames_per_video)[:, None] if self.frames_per_video > 1 else np.zeros((1, 1))
        return 2 * u * (1 - u) * mid + u**2 * end

    def _load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Source image (3, H, W) uint8 and masks (N, H, W) uint8, cached for the last index."""
        if self._source is None or self._source[0] != index:
            img = torch.from_numpy(self.dataset.frame(index, 0)).permute(2, 0, 1).contiguous()
            masks = torch.from_numpy(self.dataset.masks(index, 0).astype(np.uint8))
            self._source = (index, img, masks)
        return self._source[1], self._source[2]

    def _render(self, index: int, t: int) -> Tuple[np.ndarray, np.ndarray]:
        """Frame ``t``: (H, W, 3) uint8 image and (N, H, W) bool masks."""
        _check_frame(t, self.frames_per_video)
        img, masks = self._load(index)
        tx, ty, log_s, angle = self.motion(index)[t]
        if t > 0:  # frame 0 is the identity; skip resampling so it is bit-exact
            h, w = img.shape[-2:]
            kw = dict(
                angle=float(angle),
                translate=[float(tx * w), float(ty * h)],
                scale=float(np.exp(log_s)),
                shear=[0.0, 0.0],
            )
            img = TF.affine(img, interpolation=InterpolationMode.BILINEAR, **kw)
            if masks.shape[0] > 0:
                masks = TF.affine(masks, interpolation=InterpolationMode.NEAREST, **kw)
        return img.permute(1, 2, 0).numpy(), masks.numpy() > 0

    def frame(self, index: int, t: int) -> np.ndarray:
        return self._render(index, t)[0]

    def masks(self, index: int, t: int) -> np.ndarray:
        return self._render(index, t)[1]

    def clip(self, index: int, frame_indices: Sequence[int]) -> VideoClip:
        """Render the requested frames, warping each frame's image and masks together once."""
        idx = np.asarray(list(frame_indices), dtype=np.int64)
        rendered = [self._render(index, int(t)) for t in idx]
        return VideoClip(
            name=self.video_name(index),
            frame_indices=idx,
            frames=np.stack([r[0] for r in rendered]),
            masks=np.stack([r[1] for r in rendered]),
            obj_ids=self.obj_ids(index),
            annotated=np.ones(len(idx), dtype=bool),
        )
