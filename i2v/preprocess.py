"""How a frame becomes SAM's input: part of the model's identity, recorded with the adapters.

- ``"sam"`` (default): SAM's own: resize the longest side to S, ImageNet mean/std, pad to S x S
  (exactly ``segment_anything.SamPredictor``'s).
- ``"medsam"``: MedSAM's: squash the frame to S x S (aspect ratio not kept), scale intensities
  to [0, 1] by the resized image's min and max, no mean/std, no padding.

Both expose the same coordinate transform (``apply_coords``, ``apply_boxes``,
``get_preprocess_shape``) so prompts and masks follow the frame.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Tuple

import numpy as np
import torch
from PIL import Image
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

PREPROCESS_MODES = ("sam", "medsam")


class SquashResize:
    """MedSAM's geometry: every frame is resized to ``target_length`` x ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 → (S, S, 3) uint8 (bicubic, as MedSAM's resize)."""
        s = self.target_length
        return np.array(Image.fromarray(image).resize((s, s), Image.Resampling.BICUBIC))

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """(..., 2) XY pixel coordinates on the frame → on the S x S input."""
        h, w = original_size
        out = deepcopy(coords).astype(float)
        out[..., 0] = out[..., 0] * (self.target_length / w)
        out[..., 1] = out[..., 1] * (self.target_length / h)
        return out

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """(B, 4) XYXY boxes on the frame → on the S x S input."""
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> Tuple[int, int]:
        return long_side_length, long_side_length


def make_transform(mode: str, image_size: int) -> "ResizeLongestSide | SquashResize":
    """The coordinate transform of preprocessing ``mode`` for an S = ``image_size`` input."""
    if mode == "medsam":
        return SquashResize(image_size)
    return ResizeLongestSide(image_size)


def normalise(mode: str, sam: Sam, x: torch.Tensor) -> torch.Tensor:
    """(1, 3, h', w') resized pixels in [0, 255] → (1, 3, S, S) SAM input.

    ``"sam"``: SAM's mean/std and right/bottom padding. ``"medsam"``: min-max to [0, 1].
    """
    if mode == "medsam":
        x = x.float()
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo).clamp(min=1e-8)
    return sam.preprocess(x)
