"""Score a folder of predicted masks, as the DAVIS / YouTube-VOS servers take them, without a model.

The folder holds ``<video>/<frame stem>.png`` palette (or grayscale) PNGs, pixel value = object
id (0 = background), one per frame of each video at the frame's size: the layout
``sam-i2v eval --save-masks`` writes and the challenge servers read. Each video of the dataset
is scored as :func:`i2v.eval.vos.evaluate` scores a predictor's masks (same frames, same
metrics), so ``sam-i2v eval --save-masks DIR`` followed by ``sam-i2v eval --predictions DIR``
prints the same numbers.

A label map cannot hold overlapping objects, so there is nothing to resolve: each pixel belongs
to the object whose id it holds. As in the DAVIS toolkit, a PNG is needed for every frame that
is scored (other frames may be missing), and an id that is not one of the video's annotated
objects is an error, not a silently ignored object.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from i2v.data.base import VideoDataset
from i2v.errors import DatasetError
from i2v.eval.metrics import SCORING_RULES, _scored_frames, evaluate_sequence
from i2v.eval.vos import VOSResult, scoring_rule
from i2v.io.masks import label_map_to_masks, load_palette_png

PathLike = Union[str, Path]


def read_predictions(
    pred_dir: PathLike,
    dataset: VideoDataset,
    index: int,
    frames: Optional[Union[Sequence[int], np.ndarray]] = None,
) -> np.ndarray:
    """The predicted masks of video ``index`` read from ``pred_dir/<video>/<frame stem>.png``.

    Args:
        pred_dir: the predictions folder.
        dataset: the dataset that names the videos, frames and objects.
        index: the video's index in ``dataset``.
        frames: the frames whose PNG must exist; None = every frame. Other frames' PNGs are
            read when present and left empty when not.

    Returns:
        (T, N, H, W) bool masks in ``dataset.obj_ids(index)`` order.

    Raises:
        DatasetError: a missing video folder or PNG, a PNG of the wrong size, or an id that is
            not one of the video's objects.
    """
    name = dataset.video_name(index)
    folder = Path(pred_dir) / name
    num = dataset.num_frames(index)
    ids = list(dataset.obj_ids(index))
    required = set(range(num) if frames is None else (int(t) for t in frames))
    if not folder.is_dir():
        raise DatasetError(
            f"the predictions have no folder for video {name!r} (looked for {folder}); expected "
            f"{Path(pred_dir)}/<video>/<frame>.png for every video of the split, as "
            f"sam-i2v eval --save-masks writes them."
        )
    paths = [folder / f"{dataset.frame_stem(index, t)}.png" for t in range(num)]
    missing = [p.name for t, p in enumerate(paths) if t in required and not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(
            f"the predictions of video {name!r} lack {len(missing)} scored frame(s): {shown} in {folder}. "
            f"Write one PNG per frame, named after the frame's file (as the dataset's JPEGs)."
        )
    h, w = dataset.frame(index, 0).shape[:2]
    preds = np.zeros((num, len(ids), h, w), dtype=bool)
    for t, path in enumerate(paths):
        if t not in required and not path.is_file():
            continue
        labels = load_palette_png(path)
        if labels.shape != (h, w):
            raise DatasetError(
                f"prediction {path} is {labels.shape[1]}x{labels.shape[0]} but the video's frames are "
                f"{w}x{h}; write the masks at the frames' own size."
            )
        unknown = sorted(set(np.unique(labels).tolist()) - {0, *ids})
        if unknown:
            raise DatasetError(
                f"prediction {path} holds object id(s) {unknown}, but video {name!r} annotates only "
                f"objects {ids}; number the predicted objects as the first frame's annotation does."
            )
        preds[t] = label_map_to_masks(labels, ids)
    return preds


def score_predictions(
    pred_dir: PathLike,
    dataset: VideoDataset,
    indices: Optional[Sequence[int]] = None,
    method: Optional[str] = None,
    progress: bool = True,
    scoring: Optional[str] = None,
) -> VOSResult:
    """Score the PNGs of ``pred_dir`` against videos ``indices`` of ``dataset`` (all by default).

    ``scoring`` picks the frames that count, as in :func:`i2v.eval.vos.evaluate` (None: the
    dataset's own rule). ``method`` names the result (default: the folder's name); its
    protocol is ``"given"``.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DatasetError(
            f"--predictions {pred_dir} is not a folder; pass the folder that holds <video>/<frame>.png for each video."
        )
    scoring = scoring_rule(dataset) if scoring is None else scoring
    if scoring not in SCORING_RULES:
        raise ValueError(f"unknown scoring {scoring!r}; choose one of {SCORING_RULES}.")
    result = VOSResult(method or pred_dir.name or "predictions", "given", scoring=scoring)
    indices = list(range(len(dataset))) if indices is None else list(indices)
    for i in tqdm(indices, desc=f"score {result.method}", unit="video", disable=not progress):
        start = time.perf_counter()
        num = dataset.num_frames(i)
        annotated = np.array([dataset.is_annotated(i, t) for t in range(num)])
        frames = _scored_frames(num, annotated, True, scoring)
        preds = read_predictions(pred_dir, dataset, i, frames)
        gts = np.stack([dataset.masks(i, t) for t in range(num)])
        scores = evaluate_sequence(preds, gts, annotated, scoring=scoring)
        result.add_video(dataset.video_name(i), dataset.obj_ids(i), scores, time.perf_counter() - start)
    return result


def unscored_videos(pred_dir: PathLike, dataset: VideoDataset) -> List[str]:
    """Folders of ``pred_dir`` that name no video of ``dataset`` (a wrong split, or a typo)."""
    names = {dataset.video_name(i) for i in range(len(dataset))}
    return sorted(p.name for p in Path(pred_dir).iterdir() if p.is_dir() and p.name not in names)
