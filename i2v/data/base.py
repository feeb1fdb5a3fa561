"""The interface every video dataset reader implements.

A reader indexes videos on disk (or generates them) and hands out frames and masks one frame
at a time, so that neither a whole video nor a whole dataset is ever held in memory.

Two optional hooks serve evaluation: :attr:`VideoDataset.has_full_ground_truth` says whether
the local annotations can be scored (False for challenge splits such as YouTube-VOS ``valid``,
whose ground truth stays on the server), and :meth:`VideoDataset.frame_stem` names frame ``t``
as the dataset's own files do, so that predicted masks can be written under the same names.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np


@dataclass
class VideoClip:
    """Frames and ground-truth masks of some frames of one video.

    Attributes:
        name: the video's name (unique within its dataset).
        frame_indices: (T,) indices of these frames in the source video.
        frames: (T, H, W, 3) uint8 RGB.
        masks: (T, N, H, W) bool, one channel per object in ``obj_ids`` (all False where the
            object is absent on that frame).
        obj_ids: the N object ids, as the dataset names them.
        annotated: (T,) bool, False on frames that carry no annotation at all (e.g. SA-V
            annotates every 4th frame); losses and metrics skip those frames.
    """

    name: str
    frame_indices: np.ndarray
    frames: np.ndarray
    masks: np.ndarray
    obj_ids: List[int]
    annotated: np.ndarray

    def __post_init__(self) -> None:
        t = len(self.frame_indices)
        if self.frames.shape[0] != t or self.masks.shape[0] != t or self.annotated.shape[0] != t:
            raise ValueError(
                f"VideoClip {self.name!r}: frames {self.frames.shape}, masks {self.masks.shape} "
                f"and annotated {self.annotated.shape} must share their first dimension ({t})."
            )
        if self.masks.shape[1] != len(self.obj_ids):
            raise ValueError(
                f"VideoClip {self.name!r}: {self.masks.shape[1]} mask channels but {len(self.obj_ids)} obj_ids."
            )


class VideoDataset(abc.ABC):
    """A list of videos with per-frame instance masks.

    Subclasses implement the five abstract methods; :meth:`clip` is built on them.

    Attributes:
        has_full_ground_truth: True when the local annotations are the split's full ground
            truth, so J/F computed from them mean something. Readers set it False for splits
            whose annotations give only each object's first mask (YouTube-VOS / MOSE
            ``valid``, DAVIS ``test-dev``): their scores come from the challenge servers.
    """

    has_full_ground_truth: bool = True

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of videos."""

    @abc.abstractmethod
    def video_name(self, index: int) -> str:
        """Name of video ``index``."""

    @abc.abstractmethod
    def num_frames(self, index: int) -> int:
        """Number of frames of video ``index``."""

    @abc.abstractmethod
    def obj_ids(self, index: int) -> List[int]:
        """Ids of the annotated objects of video ``index`` (sorted ascending)."""

    @abc.abstractmethod
    def frame(self, index: int, t: int) -> np.ndarray:
        """Frame ``t`` of video ``index`` as (H, W, 3) uint8 RGB."""

    @abc.abstractmethod
    def masks(self, index: int, t: int) -> np.ndarray:
        """Masks of frame ``t`` of video ``index``: (N, H, W) bool in ``obj_ids`` order."""

    def is_annotated(self, index: int, t: int) -> bool:
        """Whether frame ``t`` carries annotations (True unless the format skips frames)."""
        return True

    def frame_stem(self, index: int, t: int) -> str:
        """File stem of frame ``t`` of video ``index`` (``"00000"``...); readers of frame
        folders return the stem of the frame's file, others its zero-padded index."""
        return f"{t:05d}"

    def clip(self, index: int, frame_indices: Sequence[int]) -> VideoClip:
        """Read the given frames of video ``index`` with their masks."""
        idx = np.asarray(list(frame_indices), dtype=np.int64)
        frames = np.stack([self.frame(index, int(t)) for t in idx])
        masks = np.stack([self.masks(index, int(t)) for t in idx])
        annotated = np.array([self.is_annotated(index, int(t)) for t in idx], dtype=bool)
        return VideoClip(
            name=self.video_name(index),
            frame_indices=idx,
            frames=frames,
            masks=masks,
            obj_ids=list(self.obj_ids(index)),
            annotated=annotated,
        )
