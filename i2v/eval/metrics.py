"""Video object segmentation metrics, numerically identical to the DAVIS 2017 toolkit.

The reference is ``davis2017-evaluation`` (``davis2017/metrics.py``: ``db_eval_iou``,
``db_eval_boundary``, ``f_measure``, ``_seg2bmap``; ``davis2017/utils.py``:
``db_statistics``; ``davis2017/evaluation.py``: the semi-supervised protocol). Everything here
is vectorised numpy/scipy and reproduces the toolkit's conventions exactly:

* **J** (region similarity) is intersection over union; two empty masks give ``J = 1``.
  Void pixels are removed from both the intersection and the union.
* **F** (contour accuracy) compares one-pixel-wide boundary maps. A pixel is a boundary pixel
  when it differs from its right, bottom or bottom-right neighbour; on the last row only the
  right neighbour is compared, on the last column only the bottom one, and the bottom-right
  pixel is never a boundary, so the image border itself is not a contour. Boundaries match
  within ``bound_th`` pixels when ``bound_th >= 1``, else within
  ``ceil(bound_th * hypot(H, W))`` pixels (8 px on a 480x854 frame), through a dilation by
  skimage's ``disk`` footprint with OpenCV's ``dilate`` anchoring. An empty predicted boundary
  has precision 1, an empty ground-truth boundary has recall 1 (so both empty give ``F = 1``
  and exactly one empty gives ``F = 0``); ``P + R = 0`` gives ``F = 0``. Void pixels are
  zeroed in both masks before the boundaries are extracted.
* **Statistics** per object: mean (NaN-ignoring), recall (fraction of frames with value
  strictly above 0.5) and decay (see :func:`sequence_stats`).

Which frames are scored follows the benchmark's own evaluator (:data:`SCORING_RULES`, argument
``scoring`` of :func:`evaluate_sequence`):

* ``"davis"`` (DAVIS 2017 toolkit, ``davis2017/evaluation.py``, which slices the sequence's
  masks ``[:, 1:-1]``): the annotated frames except frames 0 and T-1 of the video; every object
  is scored on every one of them (an object absent in both masks scores J = F = 1).
* ``"sav"`` (SA-V val/test, SAM 2's ``sav_dataset/utils/sav_benchmark.py``): the annotated
  frames except the first and the last *annotated* frame (``VideoEvaluator`` drops
  ``all_frames[1:-1]`` of each object's PNG folder; SA-V stores a PNG for every object on every
  annotated frame, so these are the video's annotated frames). Each object is scored only from
  the first of those frames on which its ground truth or its prediction is non-empty (the
  toolkit's ``Evaluator`` starts an object's list when it first sees it in either), and only if
  its ground truth is non-empty on one of them (``Evaluator.conclude`` keeps the objects seen
  in the ground truth). Frames an object is not scored on hold NaN.

Both benchmarks then average per object (the mean over its scored frames) and over all objects
of all videos; J&F is the mean of the two averages.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import maximum_filter1d

__all__ = [
    "SCORING_RULES",
    "SequenceScores",
    "boundary_f",
    "boundary_f_batch",
    "evaluate_sequence",
    "jaccard",
    "jaccard_batch",
    "sequence_stats",
]

# Masks per vectorised step: bounds peak memory (about 10 full-frame copies per mask).
_CHUNK = 16

# Frame-scoring conventions of the official evaluators (see the module docstring).
SCORING_RULES = ("davis", "sav")


def _prepare(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None, ndim: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate shapes and cast to bool (nonzero = foreground, like ``astype(np.bool)``)."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} does not match gt shape {g.shape}")
    if void is not None and np.shape(void) != p.shape:
        raise ValueError(f"void shape {np.shape(void)} does not match mask shape {p.shape}")
    if (ndim is not None and p.ndim != ndim) or p.ndim < 2:
        want = f"{ndim}-D (H, W)" if ndim is not None else "(..., H, W)"
        raise ValueError(f"masks must be {want}, got shape {p.shape}")
    if 0 in p.shape[-2:]:
        raise ValueError(f"masks must have at least one pixel, got shape {p.shape}")
    v = None if void is None else np.asarray(void).astype(bool, copy=False)
    return p.astype(bool, copy=False), g.astype(bool, copy=False), v


def _chunked(fn: Callable[..., np.ndarray], first: np.ndarray, *others: np.ndarray | None) -> np.ndarray:
    """Apply ``fn`` to (K, H, W) slices of (..., H, W) arrays and restore the leading shape."""
    lead, hw = first.shape[:-2], first.shape[-2:]
    head = first.reshape(-1, *hw)  # (K, H, W)
    flat = [head] + [None if a is None else a.reshape(-1, *hw) for a in others]
    k = head.shape[0]
    parts = [fn(*(None if a is None else a[i : i + _CHUNK] for a in flat)) for i in range(0, k, _CHUNK)]
    return (np.concatenate(parts) if parts else np.zeros(0)).reshape(lead)


def _jaccard_stack(p: np.ndarray, g: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    inter, union = p & g, p | g
    if void is not None:
        inter &= ~void
        union &= ~void
    n_inter, n_union = inter.sum(axis=(-2, -1)), union.sum(axis=(-2, -1))
    return np.where(n_union == 0, 1.0, n_inter / np.maximum(n_union, 1))


def jaccard_batch(preds: np.ndarray, gts: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Region similarity J for a stack of masks.

    Args:
        preds: (..., H, W) predicted masks (bool or {0, 1}).
        gts: (..., H, W) ground-truth masks, same shape.
        void: optional (..., H, W) pixels to ignore.
    Returns:
        (...) float64 array of J values in [0, 1]; 1 where both masks are empty.
    """
    p, g, v = _prepare(preds, gts, void, None)
    return _chunked(_jaccard_stack, p, g, v)


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J of one (H, W) mask pair, as ``db_eval_iou``."""
    p, g, v = _prepare(pred, gt, void, 2)
    return float(_jaccard_stack(p, g, v))


def _seg2bmap(seg: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> boundary map, with the toolkit's ``_seg2bmap`` edge handling."""
    b = np.zeros_like(seg)
    core = seg[..., :-1, :-1]
    b[..., :-1, :-1] = (core != seg[..., :-1, 1:]) | (core != seg[..., 1:, :-1]) | (core != seg[..., 1:, 1:])
    b[..., -1, :-1] = seg[..., -1, :-1] != seg[..., -1, 1:]
    b[..., :-1, -1] = seg[..., :-1, -1] != seg[..., 1:, -1]
    return b  # bottom-right pixel stays False, as in the toolkit


def _tolerance_radius(bound_th: float, shape: tuple[int, ...]) -> float:
    if not (np.isfinite(bound_th) and bound_th >= 0):
        raise ValueError(f"bound_th must be finite and >= 0, got {bound_th}")
    return bound_th if bound_th >= 1 else float(np.ceil(bound_th * np.linalg.norm(shape[-2:])))


def _disk(radius: float) -> np.ndarray:
    """skimage ``disk(radius)``: a non-integer radius >= 1 gives an even-sized, offset grid."""
    axis = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(axis, axis)
    return x**2 + y**2 <= radius**2


def _dilate(bmap: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Binary dilation of (..., H, W) maps with ``cv2.dilate`` semantics.

    OpenCV anchors the kernel at (kh // 2, kw // 2), does not mirror it, and ignores pixels
    outside the image. The kernel is split into horizontal runs: each run is one 1-D running
    max (cheap, O(pixels)), shifted vertically to every kernel row that contains it.
    """
    kh, kw = kernel.shape
    h, w = bmap.shape[-2:]
    rows_by_run: dict[tuple[int, int], list[int]] = {}
    for ky in range(kh):
        cols = np.flatnonzero(kernel[ky]) - kw // 2
        for run in np.split(cols, np.flatnonzero(np.diff(cols) != 1) + 1):
            if run.size:
                rows_by_run.setdefault((int(run[0]), int(run[-1])), []).append(ky - kh // 2)
    # Zero padding so that a run reaching past the border still sees in-image pixels.
    padded = np.pad(bmap, [(0, 0)] * (bmap.ndim - 1) + [(kw, kw)])
    out = np.zeros_like(bmap)
    for (lo, hi), dys in rows_by_run.items():
        size = hi - lo + 1
        # maximum_filter1d's window at p is [p - size//2, p - size//2 + size - 1].
        start = kw + lo + size // 2
        run_max = maximum_filter1d(padded, size, axis=-1, mode="constant", cval=0)
        run_max = run_max[..., start : start + w]
        for dy in dys:  # out[y] |= run_max[y + dy]
            if abs(dy) >= h:
                continue
            if dy >= 0:
                out[..., : h - dy, :] |= run_max[..., dy:, :]
            else:
                out[..., -dy:, :] |= run_max[..., : h + dy, :]
    return out


def _boundary_f_stack(p: np.ndarray, g: np.ndarray, void: np.ndarray | None, kernel: np.ndarray) -> np.ndarray:
    if void is not None:
        p, g = p & ~void, g & ~void
    fg_b, gt_b = _seg2bmap(p), _seg2bmap(g)
    n_fg, n_gt = fg_b.sum(axis=(-2, -1)), gt_b.sum(axis=(-2, -1))
    fg_hit = (fg_b & _dilate(gt_b, kernel)).sum(axis=(-2, -1))
    gt_hit = (gt_b & _dilate(fg_b, kernel)).sum(axis=(-2, -1))
    # An empty side scores 1; the other side's hits are then 0, which yields the toolkit's
    # (P, R) = (1, 0) / (0, 1) / (1, 1) special cases without branching.
    precision = np.where(n_fg == 0, 1.0, fg_hit / np.maximum(n_fg, 1))
    recall = np.where(n_gt == 0, 1.0, gt_hit / np.maximum(n_gt, 1))
    denom = precision + recall
    return np.where(denom == 0, 0.0, 2 * precision * recall / np.where(denom == 0, 1.0, denom))


def boundary_f_batch(
    preds: np.ndarray,
    gts: np.ndarray,
    bound_th: float = 0.008,
    void: np.ndarray | None = None,
) -> np.ndarray:
    """Contour accuracy F for a stack of masks.

    Args:
        preds: (..., H, W) predicted masks (bool or {0, 1}).
        gts: (..., H, W) ground-truth masks, same shape.
        bound_th: match tolerance; pixels if >= 1, else a fraction of the image diagonal.
        void: optional (..., H, W) pixels zeroed in both masks before boundary extraction.
    Returns:
        (...) float64 array of F values in [0, 1].
    """
    p, g, v = _prepare(preds, gts, void, None)
    kernel = _disk(_tolerance_radius(bound_th, p.shape))
    return _chunked(lambda a, b, c: _boundary_f_stack(a, b, c, kernel), p, g, v)


def boundary_f(
    pred: np.ndarray,
    gt: np.ndarray,
    bound_th: float = 0.008,
    void: np.ndarray | None = None,
) -> float:
    """Contour accuracy F of one (H, W) mask pair, as ``db_eval_boundary`` / ``f_measure``."""
    p, g, v = _prepare(pred, gt, void, 2)
    return float(_boundary_f_stack(p, g, v, _disk(_tolerance_radius(bound_th, p.shape))))


def sequence_stats(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame scores, as ``db_statistics``.

    Args:
        values: (T,) per-frame J or F values; NaN marks a frame without a score.
    Returns:
        ``mean``: NaN-ignoring mean. ``recall``: fraction of the T entries strictly above 0.5
        (a NaN entry counts as a miss, as in the toolkit). ``decay``: NaN-ignoring mean of the
        first of 4 temporal bins minus that of the last; bin edges are
        ``round(linspace(1, T, 5) + 1e-10) - 1`` and each bin includes its right edge, so
        neighbouring bins share a frame. Short sequences follow the same formula: T = 1 gives
        decay 0, T = 2 gives ``v[0] - v[1]``, T = 3 gives ``mean(v[:2]) - v[2]``. An empty
        sequence gives (NaN, NaN, NaN); an all-NaN bin gives a NaN decay.
        The toolkit stores the bin edges as uint8, which overflows from T = 256 on (with a
        numpy-version dependent result); here edges never wrap, so results agree for T <= 255.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D (T,), got shape {v.shape}")
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    edges = (np.round(np.linspace(1, v.size, 5) + 1e-10) - 1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices give NaN
        mean = np.nanmean(v)
        decay = np.nanmean(v[edges[0] : edges[1] + 1]) - np.nanmean(v[edges[3] : edges[4] + 1])
    return float(mean), float(np.mean(v > 0.5)), float(decay)


@dataclass
class SequenceScores:
    """Per-object scores of one sequence; N objects, F scored frames."""

    frames: np.ndarray  # (F,) int64 indices of the scored frames
    j: np.ndarray  # (N, F) per-frame J; NaN where the object is not scored ("sav" rule)
    f: np.ndarray  # (N, F) per-frame F; NaN likewise
    j_mean: np.ndarray  # (N,)
    j_recall: np.ndarray  # (N,)
    j_decay: np.ndarray  # (N,)
    f_mean: np.ndarray  # (N,)
    f_recall: np.ndarray  # (N,)
    f_decay: np.ndarray  # (N,)

    @property
    def jf_mean(self) -> np.ndarray:
        """(N,) per-object (J mean + F mean) / 2."""
        return (self.j_mean + self.f_mean) / 2


def _scored_frames(
    t: int,
    annotated: np.ndarray | Sequence[int] | Sequence[bool] | None,
    drop_first_last: bool,
    scoring: str = "davis",
) -> np.ndarray:
    """Indices of the frames scored: the annotated ones, less the ends ``scoring`` drops."""
    keep = np.ones(t, dtype=bool)
    if annotated is not None:
        a = np.asarray(annotated)
        if a.dtype == bool:
            if a.shape != (t,):
                raise ValueError(f"annotated mask shape {a.shape} does not match (T,) = ({t},)")
            keep = a.copy()
        else:
            keep = np.zeros(t, dtype=bool)
            keep[a.astype(np.int64)] = True  # out-of-range indices raise IndexError
    if drop_first_last:
        # "davis": frames 0 and T-1 of the video; "sav": the first and last annotated frames.
        ends = np.arange(t) if scoring == "davis" else np.flatnonzero(keep)
        keep[ends[:1]] = False
        keep[ends[-1:]] = False
    return np.flatnonzero(keep)


def evaluate_sequence(
    preds: np.ndarray,
    gts: np.ndarray,
    annotated: np.ndarray | Sequence[int] | Sequence[bool] | None = None,
    *,
    void: np.ndarray | None = None,
    bound_th: float = 0.008,
    drop_first_last: bool = True,
    scoring: str = "davis",
) -> SequenceScores:
    """Score every object of one sequence with a semi-supervised VOS protocol.

    Args:
        preds: (T, N, H, W) bool predicted masks, one channel per object.
        gts: (T, N, H, W) bool ground-truth masks.
        annotated: frames that carry ground truth, as a (T,) bool mask or integer indices;
            None means every frame.
        void: optional (T, H, W) pixels ignored for all objects. The official toolkit maps
            DAVIS void (255) to background before scoring, so leave this None to
            reproduce published numbers.
        bound_th: F tolerance, see :func:`boundary_f_batch`.
        drop_first_last: drop the first and last frame (the prompt frame and the last
            frame), as the semi-supervised evaluations do: frames 0 and T-1 of the video
            under ``"davis"``, the first and last annotated frames under ``"sav"``.
        scoring: ``"davis"`` (DAVIS 2017 toolkit) or ``"sav"`` (SAM 2's SA-V evaluator), see
            the module docstring. ``"sav"`` also leaves each object unscored (NaN) on the
            frames before it first shows in its ground truth or prediction, and on all frames
            when its ground truth is empty on every scored frame; its statistics are those of
            its scored frames.
    Returns:
        :class:`SequenceScores`; with no frame left the stats are NaN.
    """
    if scoring not in SCORING_RULES:
        raise ValueError(f"scoring must be one of {SCORING_RULES}, got {scoring!r}")
    p, g, _ = _prepare(preds, gts, None, 4)
    t, n = p.shape[:2]
    thw = (t, *p.shape[2:])
    if void is not None and np.shape(void) != thw:
        raise ValueError(f"void shape {np.shape(void)} does not match (T, H, W) = {thw}")
    frames = _scored_frames(t, annotated, drop_first_last, scoring)
    v = None if void is None else np.broadcast_to(np.asarray(void)[frames, None], p[frames].shape)
    j = jaccard_batch(p[frames], g[frames], v).reshape(len(frames), n).T
    f = boundary_f_batch(p[frames], g[frames], bound_th, v).reshape(len(frames), n).T
    scored = np.ones_like(j, dtype=bool)  # (N, F)
    if scoring == "sav":
        in_gt = np.asarray(g.any(axis=(-2, -1)))[frames].T  # (N, F)
        seen = in_gt | np.asarray(p.any(axis=(-2, -1)))[frames].T
        scored = np.logical_or.accumulate(seen, axis=1) & in_gt.any(axis=1, keepdims=True)
        j[~scored] = np.nan
        f[~scored] = np.nan
    js = np.array([sequence_stats(row[keep]) for row, keep in zip(j, scored)]).reshape(n, 3)
    fs = np.array([sequence_stats(row[keep]) for row, keep in zip(f, scored)]).reshape(n, 3)
    return SequenceScores(frames, j, f, *js.T, *fs.T)
