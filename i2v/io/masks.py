"""Mask conversions and mask files: logits, COCO run-length encoding, DAVIS palette PNGs.

* :func:`logits_to_masks` thresholds the predictor's mask logits.
* :func:`encode_rle` / :func:`decode_rle` (and the batch forms :func:`encode_rles` /
  :func:`decode_rles`) convert to and from COCO RLE with ``pycocotools``; ``counts`` is a
  ``str`` so that the dicts are JSON-serialisable.
* :func:`save_palette_png` / :func:`load_palette_png` write and read DAVIS-style annotation
  PNGs, whose pixel values are object ids (0 = background) shown with :func:`davis_palette`.
* :func:`masks_to_label_map` / :func:`label_map_to_masks` convert between per-object boolean
  masks and such label maps.

PNGs are written atomically (:func:`i2v.io.atomic.atomic_path`): a reader never sees half a
file, and an interrupted write leaves any previous file in place.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from i2v.errors import DatasetError
from i2v.io.atomic import atomic_path

PathLike = Union[str, "os.PathLike[str]"]
RLE = Dict[str, Any]

# PIL modes whose pixels are one integer each, i.e. readable as a label map.
_SINGLE_CHANNEL_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L")


def logits_to_masks(logits: Any, threshold: float = 0.0) -> np.ndarray:
    """Binarise mask logits: ``logits > threshold``.

    Args:
        logits: (N, 1, H, W) or (N, H, W) float torch tensor (any device) or numpy array.
        threshold: logit threshold; 0.0 is probability 0.5.

    Returns:
        (N, H, W) bool numpy array.
    """
    if hasattr(logits, "detach"):  # a torch tensor; compare on its device, then copy bools
        masks = (logits.detach() > threshold).cpu().numpy()
    else:
        masks = np.asarray(logits) > threshold
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise DatasetError(f"mask logits have shape {masks.shape}; expected (N, 1, H, W) or (N, H, W).")
    return masks


def _check_masks(masks: np.ndarray, ndim: int, what: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != ndim:
        want = "(H, W)" if ndim == 2 else "(N, H, W)"
        raise DatasetError(f"{what} has shape {masks.shape}; expected {want}.")
    if masks.dtype != bool and not np.isin(masks, (0, 1)).all():
        raise DatasetError(
            f"{what} has dtype {masks.dtype} with values other than 0 and 1; pass a boolean mask (e.g. logits > 0)."
        )
    return masks


def encode_rle(mask: np.ndarray) -> RLE:
    """COCO RLE of one mask.

    Args:
        mask: (H, W) bool (or 0/1) array.

    Returns:
        ``{"size": [H, W], "counts": str}`` (compressed COCO counts).
    """
    mask = _check_masks(mask, 2, "mask")
    # pycocotools reads column-major uint8 memory.
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_rles(masks: np.ndarray) -> List[RLE]:
    """COCO RLEs of a batch of masks: (N, H, W) bool -> N dicts as in :func:`encode_rle`."""
    masks = _check_masks(masks, 3, "masks")
    return [encode_rle(mask) for mask in masks]


def _compressed_total(counts: bytes) -> Optional[int]:
    """Sum of the runs in COCO's compressed counts string; None if it is malformed.

    Each run is stored as 5-bit groups in characters offset by 48: bit 0x20 says that more
    groups follow, bit 0x10 of the last group is the sign, and runs after the second are
    deltas from the run two places earlier.
    """
    runs: List[int] = []
    value = shift = 0
    for char in counts:
        group = char - 48
        if not 0 <= group < 64:
            return None
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
        value = shift = 0
    return None if shift else sum(runs)


def _to_coco(rle: RLE) -> RLE:
    """Validate a user RLE dict and turn it into pycocotools' compressed form."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DatasetError(f"an RLE must be a dict with 'size' and 'counts', got {rle!r:.80}.")
    try:
        height, width = (int(s) for s in rle["size"])
    except (TypeError, ValueError):
        raise DatasetError(f"RLE 'size' must be [height, width], got {rle['size']!r:.80}.") from None
    if height < 0 or width < 0:
        raise DatasetError(f"RLE 'size' must be non-negative, got [{height}, {width}].")
    counts = rle["counts"]
    # pycocotools checks only that the runs do not overflow the mask: runs that stop short
    # leave the rest of the decoded mask uninitialised, so check they cover it exactly.
    if isinstance(counts, list):  # uncompressed RLE, as in COCO "iscrowd" annotations
        if not all(isinstance(c, (int, np.integer)) and c >= 0 for c in counts):
            raise DatasetError("uncompressed RLE counts must be non-negative integers.")
        total: Optional[int] = int(sum(counts))
    else:
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii")
            except UnicodeEncodeError:
                raise DatasetError(
                    f"RLE counts {counts!r:.40} are not a COCO compressed string (ASCII characters only)."
                ) from None
        if not isinstance(counts, bytes):
            raise DatasetError(f"RLE counts must be a str, bytes or list of ints, got {type(counts).__name__}.")
        total = _compressed_total(counts)
        if total is None:
            raise DatasetError(
                f"RLE counts {counts!r:.40} are not a valid COCO compressed string; the annotation is corrupt."
            )
    if total != height * width:
        raise DatasetError(
            f"RLE counts cover {total} pixels but its size [{height}, {width}] has "
            f"{height * width}; the size does not belong to these counts, or they are corrupt."
        )
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts}


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode one COCO RLE (compressed ``str``/``bytes`` counts or uncompressed list).

    Returns:
        (H, W) bool array.
    """
    coco = _to_coco(rle)
    try:
        with warnings.catch_warnings():
            # pycocotools' Cython array lacks NumPy 2's __array__(copy=...); harmless noise.
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            mask = mask_utils.decode(coco)
    except Exception as exc:  # pycocotools raises bare exceptions on malformed counts
        raise DatasetError(f"RLE of size {coco['size']} could not be decoded: {exc}") from exc
    return np.ascontiguousarray(mask, dtype=bool)


def decode_rles(rles: Sequence[RLE], shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Decode a batch of RLEs of one size.

    Args:
        rles: N RLE dicts.
        shape: (H, W), needed only when ``rles`` is empty.

    Returns:
        (N, H, W) bool array.
    """
    masks = [decode_rle(rle) for rle in rles]
    if not masks:
        if shape is None:
            raise DatasetError("decode_rles got no RLEs; pass shape=(H, W) for an empty batch.")
        return np.zeros((0, *shape), dtype=bool)
    for i, mask in enumerate(masks):
        if mask.shape != masks[0].shape:
            raise DatasetError(f"RLE {i} has size {mask.shape} but RLE 0 has {masks[0].shape}.")
    return np.stack(masks)


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map: (256, 3) uint8, entry 0 black, 1 (128, 0, 0), ...

    Bit ``3j + c`` of an index sets bit ``7 - j`` of colour channel ``c``, so small ids get
    bright, well-separated colours.
    """
    ids = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for j in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * j + channel)) & 1) << (7 - j)
    return palette.astype(np.uint8)


def save_palette_png(path: PathLike, label_map: np.ndarray) -> None:
    """Write a label map as a DAVIS palette PNG (atomically).

    Args:
        path: destination file.
        label_map: (H, W) uint8, pixel value = object id, 0 = background.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or label_map.dtype != np.uint8:
        raise DatasetError(
            f"label map has shape {label_map.shape} and dtype {label_map.dtype}; expected (H, W) uint8 object ids."
        )
    image = Image.fromarray(np.ascontiguousarray(label_map))
    image.putpalette(davis_palette().tobytes())  # makes the "L" image a "P" image
    with atomic_path(Path(path)) as tmp:
        image.save(tmp, format="PNG")


def load_palette_png(path: PathLike) -> np.ndarray:
    """Read an annotation PNG as a (H, W) uint8 label map (pixel value = object id).

    Palette ("P") images give their palette indices; single-channel grayscale images give
    their values. Colour (RGB/RGBA) images are rejected: their colours would have to be
    mapped back to ids, which is ambiguous.

    Raises:
        DatasetError: missing, corrupt, colour, or ids above 255.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            labels = np.array(image) if mode in _SINGLE_CHANNEL_MODES else None
    except FileNotFoundError:
        raise DatasetError(f"annotation {path} does not exist.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"annotation {path} could not be read ({exc}); it is corrupt or not an image.") from exc
    if labels is None:
        raise DatasetError(
            f"annotation {path} is a {mode} image; expected a single-channel PNG (palette or "
            "grayscale) whose pixel values are object ids. Save annotations with "
            "save_palette_png."
        )
    if labels.max(initial=0) > 255:
        raise DatasetError(f"annotation {path} has ids up to {labels.max()}; at most 255 fit.")
    return labels.astype(np.uint8)


def _check_obj_ids(obj_ids: Sequence[int], count: int) -> List[int]:
    ids = [int(i) for i in obj_ids]
    if len(ids) != count:
        raise DatasetError(f"{count} masks but {len(ids)} obj_ids; give one id per mask.")
    bad = [i for i in ids if not 1 <= i <= 255]
    if bad:
        raise DatasetError(f"object ids {bad} do not fit a uint8 label map: use 1..255 (0 is background).")
    return ids


def masks_to_label_map(masks: np.ndarray, obj_ids: Sequence[int]) -> np.ndarray:
    """Paint per-object masks into one label map.

    Args:
        masks: (N, H, W) bool.
        obj_ids: N ids in 1..255.

    Returns:
        (H, W) uint8; where masks overlap, the later object in ``obj_ids`` wins.
    """
    masks = _check_masks(masks, 3, "masks")
    ids = _check_obj_ids(obj_ids, masks.shape[0])
    label_map = np.zeros(masks.shape[1:], dtype=np.uint8)
    for mask, obj_id in zip(masks, ids):
        label_map[mask.astype(bool)] = obj_id
    return label_map


def label_map_to_masks(label_map: np.ndarray, obj_ids: Sequence[int]) -> np.ndarray:
    """Split a label map into per-object masks.

    Args:
        label_map: (H, W) integer object ids.
        obj_ids: N ids; an id absent from the map gives an all-False mask.

    Returns:
        (N, H, W) bool, in ``obj_ids`` order.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise DatasetError(f"label map has shape {label_map.shape}; expected (H, W).")
    ids = np.asarray([int(i) for i in obj_ids], dtype=np.int64).reshape(-1, 1, 1)
    return label_map[None] == ids
