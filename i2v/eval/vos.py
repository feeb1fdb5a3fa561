"""Video object segmentation evaluation: run a predictor on a dataset, score it as DAVIS does.

Protocols (as in SAM 2's evaluation): ``mask`` (semi-supervised: the ground-truth mask on the
object's first annotated frame), ``box`` (its box), ``click1`` / ``click3`` / ``click5`` (a
click at the object's interior point farthest from its boundary, then corrective clicks on
the largest error region of the current prediction on that frame).

Predicted masks can also be written in the layout the DAVIS and YouTube-VOS servers take
(:func:`write_prediction_pngs`): ``<dir>/<video>/<frame stem>.png``, one DAVIS-palette PNG per
frame of the video at the frame's size, pixel value = object id (0 = background).
:func:`evaluate` writes them while scoring (``save_masks``); :func:`export_masks` writes them
without scoring, for splits whose ground truth lives on a challenge server
(``has_full_ground_truth`` False).

Overlaps are resolved before anything is scored or written, with SAM 2's rule (its
``non_overlap_masks``): on each pixel only the object with the highest logit can be
foreground. So the masks that are scored are exactly the label maps that are written, and
scoring the written PNGs with the DAVIS toolkit gives the printed numbers.

Which frames count follows each benchmark's official evaluator (:func:`scoring_rule`, see
:mod:`i2v.eval.metrics`): SA-V drops the first and last *annotated* frames and scores each
object from its first appearance (SAM 2's ``sav_dataset/utils/sav_benchmark.py``); every other
dataset (DAVIS, and locally YouTube-VOS, MOSE, synthetic) follows the DAVIS 2017 toolkit,
which drops frames 0 and T-1 of the video.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from i2v.data.base import VideoDataset
from i2v.data.sav import SAVDataset
from i2v.eval.metrics import SCORING_RULES, evaluate_sequence
from i2v.io.masks import logits_to_masks, masks_to_label_map, save_palette_png
from i2v.io.video_source import VideoSource

PROTOCOLS = ("mask", "box", "click1", "click3", "click5")

PathLike = Union[str, Path]


class DatasetVideo(VideoSource):
    """Video ``index`` of a dataset, read lazily through the VideoSource interface."""

    def __init__(self, dataset: VideoDataset, index: int) -> None:
        h, w = dataset.frame(index, 0).shape[:2]
        super().__init__(dataset.num_frames(index), h, w, cache_size=0)
        self.dataset, self.index = dataset, index

    def _read(self, t: int) -> np.ndarray:
        return self.dataset.frame(self.index, t)


def interior_point(region: np.ndarray) -> Tuple[float, float]:
    """(x, y) of the pixel of ``region`` farthest from its boundary, as the pixel's index (the
    convention of SamPredictor's point prompts: SAM's prompt encoder adds the half pixel)."""
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> Optional[Tuple[Tuple[float, float], int]]:
    """A click on the larger error region: positive on missed pixels, negative on extra ones,
    on its deepest pixel (deterministic, for evaluation; training samples its clicks with
    :func:`i2v.train.prompts.sample_corrective_click`)."""
    fn, fp = gt & ~pred, pred & ~gt
    if not fn.any() and not fp.any():
        return None
    region, label = (fn, 1) if fn.sum() >= fp.sum() else (fp, 0)
    return interior_point(region), label


def _box(mask: np.ndarray) -> List[float]:
    """The tight XYXY box of a mask with inclusive maxima (segment_anything's mask-to-box)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def prompt_object(predictor: Any, state: Any, t: int, obj_id: int, gt: np.ndarray, protocol: str) -> None:
    """Give object ``obj_id`` its first-frame prompt under ``protocol``."""
    if protocol == "mask":
        predictor.add_new_mask(state, t, obj_id, gt)
        return
    if protocol == "box":
        predictor.add_new_points_or_box(state, t, obj_id, box=_box(gt))
        return
    clicks = int(protocol[len("click") :])
    points, labels = [interior_point(gt)], [1]
    for k in range(clicks):
        _, ids, logits = predictor.add_new_points_or_box(
            state, t, obj_id, points=points[-1:], labels=labels[-1:], clear_old_points=k == 0
        )
        if k + 1 == clicks:
            break
        pred = logits_to_masks(logits[ids.index(obj_id)])[0]
        click = corrective_click(pred, gt)
        if click is None:
            break
        points.append(click[0])
        labels.append(click[1])


@dataclass
class VideoRow:
    """Scores of one video (means over its objects)."""

    name: str
    num_objects: int
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    jf_mean: float
    seconds: float


@dataclass
class VOSResult:
    """A method's scores on a dataset: per-video rows and per-object means."""

    method: str
    protocol: str
    rows: List[VideoRow] = field(default_factory=list)
    objects: Dict[str, List[float]] = field(
        default_factory=lambda: {k: [] for k in ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")}
    )
    scoring: str = "davis"  # frame-scoring rule of the scores (see i2v.eval.metrics)
    # "<video>_<object id>" per entry of ``objects``, as the DAVIS toolkit names its rows
    object_names: List[str] = field(default_factory=list)

    def add_video(self, name: str, obj_ids: Sequence[int], scores: Any, seconds: float) -> None:
        """Append one video's :class:`~i2v.eval.metrics.SequenceScores` (objects ``obj_ids``)."""
        for key in self.objects:
            self.objects[key].extend(getattr(scores, key).tolist())
        self.object_names.extend(f"{name}_{int(i)}" for i in obj_ids)
        means = {k: float(np.nanmean(getattr(scores, k))) for k in self.objects}
        self.rows.append(
            VideoRow(name, len(obj_ids), **means, jf_mean=(means["j_mean"] + means["f_mean"]) / 2, seconds=seconds)
        )

    def object_rows(self) -> List[Dict[str, Any]]:
        """Per object: ``{"name", "j_mean", "f_mean", ...}``, in scoring order."""
        return [
            {"name": n, **{k: float(v[i]) for k, v in self.objects.items()}} for i, n in enumerate(self.object_names)
        ]

    def summary(self) -> Dict[str, float]:
        """DAVIS-style overall figures: means over all objects of all videos."""
        out = {k: float(np.nanmean(v)) if v else float("nan") for k, v in self.objects.items()}
        out["jf_mean"] = (out["j_mean"] + out["f_mean"]) / 2
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {
            "method": self.method,
            "protocol": self.protocol,
            "scoring": self.scoring,
            "summary": self.summary(),
            "videos": [asdict(r) for r in self.rows],
            "objects": self.object_rows(),
        }


def segment_video(predictor: Any, dataset: VideoDataset, index: int, protocol: str) -> Tuple[np.ndarray, np.ndarray]:
    """Run ``predictor`` on one video; returns (preds, gts), both (T, N, H, W) bool.

    An object counts from the frame of its first prompt. Where objects' masks overlap, only
    the object with the highest logit keeps the pixel (SAM 2's ``non_overlap_masks`` rule),
    so ``preds`` never overlap and equal the label maps :func:`write_prediction_pngs` writes.
    """
    num = dataset.num_frames(index)
    gts = np.stack([dataset.masks(index, t) for t in range(num)])
    ids = list(dataset.obj_ids(index))
    video = DatasetVideo(dataset, index)
    # The runner shows one bar per dataset; the predictor's own per-video bars stay off.
    shown, predictor.progress = getattr(predictor, "progress", False), False
    try:
        return _segment(predictor, dataset, index, protocol, video, gts, ids, num)
    finally:
        predictor.progress = shown
        video.close()


def _segment(
    predictor: Any,
    dataset: VideoDataset,
    index: int,
    protocol: str,
    video: VideoSource,
    gts: np.ndarray,
    ids: List[int],
    num: int,
) -> Tuple[np.ndarray, np.ndarray]:
    from i2v.video_predictor import apply_non_overlapping_constraints

    state = predictor.init_state(video)
    starts = {}
    for n, obj_id in enumerate(ids):
        visible = [t for t in range(num) if dataset.is_annotated(index, t) and gts[t, n].any()]
        if visible:
            starts[obj_id] = visible[0]
            prompt_object(predictor, state, visible[0], obj_id, gts[visible[0], n], protocol)
    preds = np.zeros_like(gts)
    if starts:
        for t, out_ids, logits in predictor.propagate_in_video(state, start_frame_idx=min(starts.values())):
            # (N, 1, H, W) in the dataset's object order; -inf before an object's first prompt
            scores = torch.full((len(ids), 1, *logits.shape[-2:]), float("-inf"), device=logits.device)
            for n, obj_id in enumerate(ids):
                if obj_id in out_ids and t >= starts.get(obj_id, num):
                    scores[n] = logits[out_ids.index(obj_id)]
            preds[t] = logits_to_masks(apply_non_overlapping_constraints(scores))
    return preds, gts


def write_prediction_pngs(out_dir: PathLike, dataset: VideoDataset, index: int, preds: np.ndarray) -> Path:
    """Write the predicted masks of video ``index`` as DAVIS / YouTube-VOS submission PNGs.

    Each frame ``t`` becomes ``out_dir/<video name>/<frame stem>.png`` (the stem of the
    dataset's own frame file), a DAVIS-palette PNG whose pixel values are object ids at the
    frame's size. :func:`segment_video`'s masks never overlap, so the PNGs hold exactly them;
    masks given here that overlap are painted in id order (the higher id wins). Every file is
    written atomically.

    Args:
        out_dir: the submission folder.
        dataset: the dataset the video comes from (names, frame stems, object ids).
        index: the video's index in ``dataset``.
        preds: (T, N, H, W) bool, as :func:`segment_video` returns them.

    Returns:
        The video's folder.
    """
    ids = list(dataset.obj_ids(index))
    if preds.ndim != 4 or preds.shape[:2] != (dataset.num_frames(index), len(ids)):
        raise ValueError(
            f"predictions of video {dataset.video_name(index)!r} have shape {preds.shape}; "
            f"expected ({dataset.num_frames(index)}, {len(ids)}, H, W) (frames, objects, H, W)."
        )
    folder = Path(out_dir) / dataset.video_name(index)
    for t in range(len(preds)):
        save_palette_png(folder / f"{dataset.frame_stem(index, t)}.png", masks_to_label_map(preds[t], ids))
    return folder


def scoring_rule(dataset: VideoDataset) -> str:
    """The frame-scoring rule of ``dataset``'s official evaluator (one of ``SCORING_RULES``).

    ``"sav"`` for SA-V (SAM 2's ``sav_dataset/utils/sav_benchmark.py``: first and last
    annotated frames dropped, each object scored from its first appearance), ``"davis"`` for
    every other reader (the DAVIS 2017 toolkit: frames 0 and T-1 of the video dropped). The
    YouTube-VOS and MOSE benchmarks are scored on their challenge servers; locally their
    splits with ground truth, like the synthetic videos, are scored with the DAVIS rule.
    """
    return "sav" if isinstance(dataset, SAVDataset) else "davis"


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")


def export_masks(
    predictor: Any,
    dataset: VideoDataset,
    out_dir: PathLike,
    indices: Optional[Sequence[int]] = None,
    protocol: str = "mask",
    method: str = "model",
    progress: bool = True,
) -> List[Path]:
    """Segment videos ``indices`` of ``dataset`` and write their masks, without scoring.

    For splits whose ground truth is held by a challenge server: the masks go to ``out_dir``
    as :func:`write_prediction_pngs` lays them out. Returns the video folders written.
    """
    _check_protocol(protocol)
    indices = list(range(len(dataset))) if indices is None else list(indices)
    folders = []
    for i in tqdm(indices, desc=f"predict {method}/{protocol}", unit="video", disable=not progress):
        preds, _ = segment_video(predictor, dataset, i, protocol)
        folders.append(write_prediction_pngs(out_dir, dataset, i, preds))
    return folders


def evaluate(
    predictor: Any,
    dataset: VideoDataset,
    indices: Optional[Sequence[int]] = None,
    protocol: str = "mask",
    method: str = "model",
    progress: bool = True,
    save_masks: Optional[PathLike] = None,
    scoring: Optional[str] = None,
) -> VOSResult:
    """Score ``predictor`` on videos ``indices`` of ``dataset`` (all by default).

    With ``save_masks`` a folder, each video's predicted masks are also written there (see
    :func:`write_prediction_pngs`) from the same run that is scored. ``scoring`` picks the
    frames that count (``"davis"`` or ``"sav"``, see :mod:`i2v.eval.metrics`); None takes
    the dataset's own (:func:`scoring_rule`).
    """
    _check_protocol(protocol)
    scoring = scoring_rule(dataset) if scoring is None else scoring
    if scoring not in SCORING_RULES:
        raise ValueError(f"unknown scoring {scoring!r}; choose one of {SCORING_RULES}.")
    result = VOSResult(method, protocol, scoring=scoring)
    indices = list(range(len(dataset))) if indices is None else list(indices)
    for i in tqdm(indices, desc=f"eval {method}/{protocol}", unit="video", disable=not progress):
        start = time.perf_counter()
        preds, gts = segment_video(predictor, dataset, i, protocol)
        annotated = np.array([dataset.is_annotated(i, t) for t in range(len(gts))])
        scores = evaluate_sequence(preds, gts, annotated, scoring=scoring)
        result.add_video(dataset.video_name(i), dataset.obj_ids(i), scores, time.perf_counter() - start)
        if save_masks is not None:  # after timing: writing files is not the method's cost
            write_prediction_pngs(save_masks, dataset, i, preds)
    return result
