"""The click and box prompts of the evaluation protocols follow segment_anything's conventions."""

from __future__ import annotations

import numpy as np

from i2v.eval.vos import _box, corrective_click, interior_point


def _square() -> np.ndarray:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:7, 3:8] = True  # rows 2..6, columns 3..7: centre pixel (x=5, y=4)
    return mask


def test_clicks_are_pixel_indices_at_the_deepest_interior_pixel() -> None:
    assert interior_point(_square()) == (5.0, 4.0)
    gt = _square()
    pred = gt.copy()
    pred[2:7, 3:5] = False  # the left two columns are missed: a positive click inside them
    (x, y), label = corrective_click(pred, gt)
    assert label == 1 and 3.0 <= x <= 4.0 and 2.0 <= y <= 6.0 and x == int(x) and y == int(y)


def test_boxes_have_inclusive_maxima_like_segment_anythings_mask_to_box() -> None:
    assert _box(_square()) == [3.0, 2.0, 7.0, 6.0]
