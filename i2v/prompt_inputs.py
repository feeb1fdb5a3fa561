"""Validation and conversion of user prompts (points, labels, boxes, masks).

Everything a user may pass (lists, numpy arrays, torch tensors; SAM 2's shapes) is checked
here before any state changes, so a bad prompt raises :class:`i2v.errors.PromptError` and
leaves the inference state as it was.

Coordinates: with ``normalize_coords=True`` (the default, as in SAM 2) points and boxes are in
video pixels; with ``normalize_coords=False`` they are already in [0, 1] and are scaled by the
video's width and height. Points outside the frame are an error; boxes are clipped to the
frame (detector boxes often overhang it), and a box entirely outside is an error.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from i2v.errors import PromptError

#: What the prompt API takes for points, labels, boxes and masks: a numpy array, a torch tensor,
#: or (nested) lists / tuples of numbers. Shapes and values are checked at run time here.
ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[Any]]

VALID_LABELS = (0, 1, 2, 3)


def _to_numpy(x: ArrayLike, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if _has_complex(x):
        raise PromptError(f"{what} must be real numbers, got complex values: {x!r}.")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} must be numeric, got {x!r}.") from exc
    return arr


def _has_complex(x: object) -> bool:
    """Whether a nested list/tuple holds a complex number (numpy would drop the imaginary part)."""
    if isinstance(x, (complex, np.complexfloating)):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_complex(v) for v in x)
    return isinstance(x, np.ndarray) and np.iscomplexobj(x)


def _unit_hint(values: np.ndarray, normalize_coords: bool) -> str:
    """With normalize_coords=False, values beyond 1 are almost surely pixels: say so."""
    if not normalize_coords and np.abs(values).max() > 1:
        return (
            " With normalize_coords=False coordinates are fractions of the width and height in "
            "[0, 1]; for pixel coordinates pass normalize_coords=True (the default)."
        )
    return ""


def _scale(width: int, height: int, normalize_coords: bool) -> np.ndarray:
    # normalize_coords=False means SAM 2's "already in [0, 1]": bring them to pixels.
    return np.array([1.0, 1.0]) if normalize_coords else np.array([float(width), float(height)])


def check_points(
    points: Optional[ArrayLike],
    labels: Optional[ArrayLike],
    width: int,
    height: int,
    normalize_coords: bool = True,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Validate clicks; returns ((P, 2) float XY in pixels, (P,) int labels) or (None, None).

    Accepts points of shape (P, 2) or (1, P, 2) and labels of shape (P,) or (1, P).
    """
    if points is None and labels is None:
        return None, None
    if points is None or labels is None:
        raise PromptError("points and labels go together: pass both (labels 1 = positive, 0 = negative).")
    pts = _to_numpy(points, "points")
    lab = _to_numpy(labels, "labels")
    if pts.ndim == 3 and pts.shape[0] == 1:
        pts = pts[0]
    if lab.ndim == 2 and lab.shape[0] == 1:
        lab = lab[0]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points must have shape (P, 2) as [[x, y], ...], got shape {pts.shape}.")
    if lab.ndim != 1:
        raise PromptError(f"labels must have shape (P,), got shape {lab.shape}.")
    if pts.shape[0] != lab.shape[0]:
        raise PromptError(f"got {pts.shape[0]} points but {lab.shape[0]} labels; pass one label per point.")
    if pts.shape[0] == 0:
        raise PromptError("points is empty; pass at least one point, or use box= / add_new_mask.")
    if not np.isfinite(pts).all():
        raise PromptError(f"points contain NaN or infinity: {pts.tolist()}.")
    if not np.isfinite(lab).all() or not np.isin(lab, VALID_LABELS).all():
        raise PromptError(f"labels must be 1 (positive) or 0 (negative) (2/3: box corners), got {lab.tolist()}.")
    raw = pts
    pts = pts * _scale(width, height, normalize_coords)
    outside = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
    if outside.any():
        bad = pts[outside][0].tolist()
        unit = "pixels" if normalize_coords else "(after scaling [0, 1] coordinates)"
        raise PromptError(
            f"point {bad} lies outside the {width}x{height} frame {unit}; points must satisfy "
            f"0 <= x <= {width} and 0 <= y <= {height}.{_unit_hint(raw, normalize_coords)}"
        )
    return pts.astype(np.float64), lab.astype(np.int64)


def check_box(box: Optional[ArrayLike], width: int, height: int, normalize_coords: bool = True) -> Optional[np.ndarray]:
    """Validate a box [x0, y0, x1, y1]; returns (4,) float XYXY in pixels, clipped to the frame."""
    if box is None:
        return None
    b = _to_numpy(box, "box").reshape(-1)
    if b.shape != (4,):
        raise PromptError(f"box must be [x0, y0, x1, y1], got {b.size} values.")
    if not np.isfinite(b).all():
        raise PromptError(f"box contains NaN or infinity: {b.tolist()}.")
    raw = b
    b = b * np.tile(_scale(width, height, normalize_coords), 2)
    if b[2] < b[0] or b[3] < b[1]:
        raise PromptError(f"box {b.tolist()} has x1 < x0 or y1 < y0; pass [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1.")
    if b[2] < 0 or b[3] < 0 or b[0] > width or b[1] > height:  # outside along either axis
        raise PromptError(
            f"box {b.tolist()} lies entirely outside the {width}x{height} frame; boxes must overlap "
            f"0 <= x <= {width}, 0 <= y <= {height} (overhanging parts are clipped).{_unit_hint(raw, normalize_coords)}"
        )
    return np.clip(b, 0, [width, height, width, height])


def check_mask(mask: ArrayLike, width: int, height: int) -> torch.Tensor:
    """Validate a mask prompt of any size; returns (H, W) float {0, 1} at the video's size.

    Accepts (h, w) or (1, h, w) bool / uint8 / float arrays or tensors; float masks are
    thresholded at 0.5, integer masks at != 0 (negative values are an error). Other sizes are
    resized (nearest neighbour), except a transposed (W, H) mask, which is an error.
    """
    if isinstance(mask, torch.Tensor):
        m = mask.detach().cpu()
    else:
        try:
            # Contiguous: torch cannot wrap negative strides (a flipped mask such as m[::-1]).
            m = torch.as_tensor(np.ascontiguousarray(np.asarray(mask)))
        except (TypeError, ValueError) as exc:
            raise PromptError(f"mask must be an array or tensor, got {type(mask).__name__}.") from exc
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise PromptError(f"mask must have shape (H, W), got {tuple(m.shape)}.")
    if m.numel() == 0:
        raise PromptError("mask is empty (zero pixels).")
    if m.is_complex():
        raise PromptError("mask has complex values; pass a bool, integer or real-valued mask.")
    if tuple(m.shape) == (width, height) and width != height:
        raise PromptError(
            f"mask has shape {tuple(m.shape)}, the video's ({height}, {width}) transposed: masks are "
            "(H, W), rows first. Transpose it (mask.T) before passing it."
        )
    if m.dtype.is_floating_point:
        if not torch.isfinite(m).all():
            raise PromptError("mask contains NaN or infinity.")
        m = m > 0.5
    else:
        if m.dtype.is_signed and bool((m < 0).any()):
            raise PromptError(
                f"mask holds negative values (min {int(m.min())}); integer masks are 0 for background "
                "and positive for the object. A uint8 255 read as int8 is -1: pass it as uint8 or bool."
            )
        m = m != 0
    m = m.float()
    if tuple(m.shape) != (height, width):
        m = F.interpolate(m[None, None], size=(height, width), mode="nearest")[0, 0]
    return m


def check_frame_index(frame_idx: object, num_frames: int) -> int:
    """An integer in [0, num_frames), or FrameIndexError."""
    from i2v.errors import FrameIndexError

    if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
        raise FrameIndexError(f"frame_idx must be an integer, got {frame_idx!r}.")
    if not 0 <= int(frame_idx) < num_frames:
        raise FrameIndexError(
            f"frame_idx {int(frame_idx)} is outside the video: it has {num_frames} frames (valid 0..{num_frames - 1})."
        )
    return int(frame_idx)


def check_frame_count(max_frame_num_to_track: object) -> int:
    """A non-negative integer number of frames to track past the start, or FrameIndexError."""
    from i2v.errors import FrameIndexError

    n = max_frame_num_to_track
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise FrameIndexError(
            f"max_frame_num_to_track must be an integer >= 0 (k tracks k + 1 frames) or None "
            f"for the whole video, got {n!r}."
        )
    return int(n)


def check_obj_id(obj_id: object) -> int:
    """Object ids are integers (as in SAM 2)."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise PromptError(f"obj_id must be an integer, got {obj_id!r}.")
    return int(obj_id)
