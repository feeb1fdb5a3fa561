"""One's own dataset object, for training from Python (``i2v.train(config, dataset=...)``).

Any object with these six methods will do; it need not subclass
:class:`~i2v.data.base.VideoDataset` (the readers' base class, which has them):

    __len__()                 number of videos
    video_name(i)             a unique name (str) of video i
    num_frames(i)             its number of frames
    obj_ids(i)                its object ids, a list of ints
    frame(i, t)               frame t as an (H, W, 3) uint8 RGB array
    masks(i, t)               the objects' masks on frame t: (N, H, W) bool, N = len(obj_ids(i)),
                              all False where an object is absent
    is_annotated(i, t)        optional: False for a frame without ground truth (default True)

Training clips are cut from these videos as from the built-in readers (frame stride, time
reversal, augmentation, objects visible on the clip's first frame). :func:`as_video_dataset`
checks the object, and its first video's first frame, before training starts.
"""

from __future__ import annotations

from typing import Any, List

import numpy as np

from i2v.data.base import VideoDataset
from i2v.errors import DatasetError

#: The methods a dataset object must have (``is_annotated`` is optional).
REQUIRED_METHODS = ("__len__", "video_name", "num_frames", "obj_ids", "frame", "masks")


class UserVideos(VideoDataset):
    """A :class:`VideoDataset` view of an object that has the protocol's methods."""

    def __init__(self, videos: Any) -> None:
        self.videos = videos

    def __len__(self) -> int:
        return int(len(self.videos))

    def video_name(self, index: int) -> str:
        return str(self.videos.video_name(index))

    def num_frames(self, index: int) -> int:
        return int(self.videos.num_frames(index))

    def obj_ids(self, index: int) -> List[int]:
        return [int(i) for i in self.videos.obj_ids(index)]

    def frame(self, index: int, t: int) -> np.ndarray:
        return np.asarray(self.videos.frame(index, t))

    def masks(self, index: int, t: int) -> np.ndarray:
        return np.asarray(self.videos.masks(index, t)).astype(bool, copy=False)

    def is_annotated(self, index: int, t: int) -> bool:
        check = getattr(self.videos, "is_annotated", None)
        return True if check is None else bool(check(index, t))


def _fail(name: str, problem: str) -> DatasetError:
    return DatasetError(
        f"the dataset object ({name}) {problem}. A dataset object needs "
        f"{', '.join(REQUIRED_METHODS)} (and optionally is_annotated); see i2v.data.custom."
    )


def as_video_dataset(videos: Any) -> VideoDataset:
    """Check that ``videos`` follows the dataset protocol and return it as a VideoDataset.

    The first frame of the first video is read to check types and shapes.

    Raises:
        DatasetError: a method is missing, there is no video, or the first frame or its masks
            have the wrong type, shape or count of objects.
    """
    name = type(videos).__name__
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(videos, m, None))]
    if missing:
        raise _fail(name, f"lacks {', '.join(missing)}")
    dataset = videos if isinstance(videos, VideoDataset) else UserVideos(videos)
    if len(dataset) < 1:
        raise _fail(name, "holds no video")
    if dataset.num_frames(0) < 1:
        raise _fail(name, f"says video 0 ({dataset.video_name(0)!r}) has {dataset.num_frames(0)} frames")
    frame = dataset.frame(0, 0)
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = (
            f"a {frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        )
        raise _fail(name, f"returns {what} from frame(0, 0); expected an (H, W, 3) uint8 RGB array")
    masks, ids = dataset.masks(0, 0), dataset.obj_ids(0)
    if (
        not isinstance(masks, np.ndarray)
        or masks.ndim != 3
        or masks.shape[1:] != frame.shape[:2]
        or masks.shape[0] != len(ids)
    ):
        shape = masks.shape if isinstance(masks, np.ndarray) else type(masks).__name__
        raise _fail(
            name,
            f"returns masks(0, 0) of shape {shape} for a frame of {frame.shape[:2]} and {len(ids)} "
            f"object(s) {list(ids)}; expected (N, H, W) bool, one mask per object id",
        )
    return dataset
