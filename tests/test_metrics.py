"""Tests for i2v.eval.metrics against the DAVIS 2017 toolkit conventions.

Hand-computed values pin each convention; a deliberately literal, loop-based reference
(written from the toolkit's definitions in davis2017/metrics.py and davis2017/utils.py)
checks the vectorised code on many random masks.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from i2v.eval import metrics
from i2v.eval.metrics import (
    SequenceScores,
    boundary_f,
    boundary_f_batch,
    evaluate_sequence,
    jaccard,
    jaccard_batch,
    sequence_stats,
)

# ----------------------------------------------------------------------------------------
# Literal reference implementation (slow, loops only).
# ----------------------------------------------------------------------------------------


def ref_jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    inter = union = 0
    for y in range(pred.shape[0]):
        for x in range(pred.shape[1]):
            if void is not None and void[y, x]:
                continue
            inter += bool(pred[y, x]) and bool(gt[y, x])
            union += bool(pred[y, x]) or bool(gt[y, x])
    return 1.0 if union == 0 else inter / union


def ref_seg2bmap(seg: np.ndarray) -> np.ndarray:
    h, w = seg.shape
    s = seg.astype(bool)
    b = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            last_row, last_col = y == h - 1, x == w - 1
            if last_row and last_col:
                b[y, x] = False
            elif last_row:
                b[y, x] = s[y, x] != s[y, x + 1]
            elif last_col:
                b[y, x] = s[y, x] != s[y + 1, x]
            else:
                b[y, x] = s[y, x] != s[y, x + 1] or s[y, x] != s[y + 1, x] or s[y, x] != s[y + 1, x + 1]
    return b


def ref_disk(radius: float) -> np.ndarray:
    coords = list(np.arange(-radius, radius + 1))  # skimage's grid, also for non-integer radii
    return np.array([[cx * cx + cy * cy <= radius * radius for cx in coords] for cy in coords])


def ref_dilated_at(bmap: np.ndarray, kernel: np.ndarray, y: int, x: int) -> bool:
    """cv2.dilate output at (y, x): anchor (kh//2, kw//2), no mirroring, outside ignored."""
    kh, kw = kernel.shape
    for ky in range(kh):
        for kx in range(kw):
            sy, sx = y + ky - kh // 2, x + kx - kw // 2
            if kernel[ky, kx] and 0 <= sy < bmap.shape[0] and 0 <= sx < bmap.shape[1]:
                if bmap[sy, sx]:
                    return True
    return False


def ref_boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008, void: np.ndarray | None = None) -> float:
    keep = np.ones(pred.shape, bool) if void is None else ~void.astype(bool)
    fg_b = ref_seg2bmap(pred.astype(bool) & keep)
    gt_b = ref_seg2bmap(gt.astype(bool) & keep)
    if bound_th >= 1:
        radius = bound_th
    else:
        radius = math.ceil(bound_th * math.sqrt(pred.shape[0] ** 2 + pred.shape[1] ** 2))
    kernel = ref_disk(radius)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    fg_match = sum(ref_dilated_at(gt_b, kernel, y, x) for y, x in zip(*np.nonzero(fg_b)))
    gt_match = sum(ref_dilated_at(fg_b, kernel, y, x) for y, x in zip(*np.nonzero(gt_b)))
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match / n_fg, gt_match / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def ref_stats(values: list[float]) -> tuple[float, float, float]:
    def nanmean(xs: list[float]) -> float:
        kept = [v for v in xs if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    recall = sum(1 for v in values if v > 0.5) / n  # NaN > 0.5 is False
    edges = [int(round(1 + i * (n - 1) / 4 + 1e-10)) - 1 for i in range(5)]
    first, last = values[edges[0] : edges[1] + 1], values[edges[3] : edges[4] + 1]
    return nanmean(values), recall, nanmean(first) - nanmean(last)


# ----------------------------------------------------------------------------------------
# Random mask generators.
# ----------------------------------------------------------------------------------------


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(6)
    if kind == 0:
        return rng.random((h, w)) < rng.random()
    if kind == 1:
        return np.zeros((h, w), bool)
    if kind == 2:
        return np.ones((h, w), bool)
    m = np.zeros((h, w), bool)
    if kind == 3:
        m[rng.integers(h), rng.integers(w)] = True
        return m
    for _ in range(rng.integers(1, 4)):  # rectangles, often clipped by the border
        y0, x0 = int(rng.integers(-3, h)), int(rng.integers(-3, w))
        y1, x1 = y0 + int(rng.integers(1, h + 3)), x0 + int(rng.integers(1, w + 3))
        m[max(y0, 0) : y1, max(x0, 0) : x1] ^= True
    return m


THRESHOLDS = [0.008, 0.0, 0.05, 0.15, 1, 2, 3, 1.5, 2.3, 2.5]


def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# ----------------------------------------------------------------------------------------
# Jaccard.
# ----------------------------------------------------------------------------------------


def test_jaccard_conventions() -> None:
    empty, full = np.zeros((4, 5), bool), np.ones((4, 5), bool)
    dot = square(4, 5, 1, 2, 1, 2)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(empty, dot) == 0.0 and jaccard(dot, empty) == 0.0
    assert jaccard(full, full) == 1.0
    assert jaccard(full, empty) == 0.0
    assert jaccard(dot, dot) == 1.0
    assert jaccard(dot, square(4, 5, 3, 4, 4, 5)) == 0.0
    assert jaccard(full, dot) == pytest.approx(1 / 20, abs=1e-15)


def test_jaccard_shifted_squares_by_hand() -> None:
    gt = square(20, 20, 5, 10, 5, 10)
    pred = square(20, 20, 5, 10, 7, 12)  # shifted right by 2: overlap 5x3, union 35
    assert jaccard(pred, gt) == pytest.approx(15 / 35, abs=1e-15)
    assert jaccard(pred.astype(np.uint8), gt.astype(np.int64)) == pytest.approx(15 / 35)


def test_jaccard_void() -> None:
    gt = square(10, 10, 2, 6, 2, 6)
    pred = gt | square(10, 10, 7, 9, 7, 9)  # 4 extra pixels
    assert jaccard(pred, gt) == pytest.approx(16 / 20)
    assert jaccard(pred, gt, void=square(10, 10, 7, 9, 7, 9)) == 1.0
    assert jaccard(pred, gt, void=square(10, 10, 2, 4, 2, 6)) == pytest.approx(8 / 12)
    assert jaccard(pred, gt, void=np.ones((10, 10), bool)) == 1.0  # empty union


# ----------------------------------------------------------------------------------------
# Boundary map, disk, F.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pixel", "expected"),
    [
        ((2, 2), {(1, 1), (1, 2), (2, 1), (2, 2)}),  # offset half a pixel towards the origin
        ((0, 0), {(0, 0)}),  # top-left corner: nothing above or left of it
        ((4, 4), {(3, 3), (3, 4), (4, 3)}),  # bottom-right pixel is never a boundary
        ((4, 1), {(3, 0), (3, 1), (4, 0), (4, 1)}),  # last row: only the right neighbour
        ((1, 4), {(0, 3), (0, 4), (1, 3), (1, 4)}),  # last column: only the bottom one
    ],
)
def test_seg2bmap_one_pixel(pixel: tuple[int, int], expected: set[tuple[int, int]]) -> None:
    seg = np.zeros((5, 5), bool)
    seg[pixel] = True
    got = {(int(y), int(x)) for y, x in zip(*np.nonzero(metrics._seg2bmap(seg)))}
    assert got == expected


def test_seg2bmap_border_is_not_a_contour() -> None:
    assert not metrics._seg2bmap(np.ones((5, 6), bool)).any()
    left = square(5, 6, 0, 5, 0, 3)  # touches top, left and bottom borders
    expected = np.zeros((5, 6), bool)
    expected[:, 2] = True  # only the internal edge, on its inner side
    np.testing.assert_array_equal(metrics._seg2bmap(left), expected)


def test_disk_matches_skimage_definition() -> None:
    np.testing.assert_array_equal(metrics._disk(0), [[True]])
    np.testing.assert_array_equal(metrics._disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    d2 = metrics._disk(2)
    assert d2.shape == (5, 5) and d2.sum() == 13 and not d2[0, 0] and not d2[0, 1]
    assert metrics._disk(8.0).shape == (17, 17)
    # A non-integer radius gives skimage's even-sized grid of half-integer offsets.
    np.testing.assert_array_equal(metrics._disk(1.5), [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    for r in (0, 1, 2, 3, 5, 8.0, 1.5, 2.3, 2.5):
        np.testing.assert_array_equal(metrics._disk(r), ref_disk(r))


def test_tolerance_radius() -> None:
    assert metrics._tolerance_radius(0.008, (480, 854)) == 8  # ceil(0.008 * 979.65)
    assert metrics._tolerance_radius(0.008, (30, 30)) == 1
    assert metrics._tolerance_radius(3, (480, 854)) == 3
    assert metrics._tolerance_radius(1, (480, 854)) == 1  # >= 1 means pixels
    with pytest.raises(ValueError):
        metrics._tolerance_radius(-0.1, (10, 10))


def test_boundary_f_empty_and_full_conventions() -> None:
    empty, full = np.zeros((8, 8), bool), np.ones((8, 8), bool)
    blob = square(8, 8, 2, 5, 2, 5)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, blob) == 0.0  # P = 1, R = 0
    assert boundary_f(blob, empty) == 0.0  # P = 0, R = 1
    assert boundary_f(full, full) == 1.0
    # A full mask has no contour (the image border is not one), so it ties with empty.
    assert boundary_f(full, empty) == 1.0
    assert boundary_f(full, blob) == 0.0
    assert boundary_f(blob, blob) == 1.0


def test_boundary_f_one_pixel_tolerance() -> None:
    gt = square(30, 30, 10, 11, 10, 11)
    right2 = square(30, 30, 10, 11, 12, 13)
    # Boundaries are 2x2 blocks; at 1 px half of each block matches the other.
    assert boundary_f(right2, gt) == pytest.approx(0.5)  # default: ceil(0.008 * 42.4) = 1 px
    assert boundary_f(right2, gt, bound_th=1) == pytest.approx(0.5)
    assert boundary_f(right2, gt, bound_th=2) == 1.0
    # Diagonal offset: a disk (not a square) of radius 2 only reaches one pixel of each block.
    diag2 = square(30, 30, 12, 13, 12, 13)
    assert boundary_f(diag2, gt, bound_th=2) == pytest.approx(0.25)


def test_boundary_f_squares_by_hand() -> None:
    gt = square(20, 20, 5, 10, 5, 10)  # boundary ring [4, 9]^2 minus [5, 8]^2: 20 px
    shifted = square(20, 20, 5, 10, 7, 12)
    # Each ring: 5 of 6 pixels on each horizontal side and 2 of 8 vertical ones match at 1 px.
    assert boundary_f(shifted, gt, bound_th=1) == pytest.approx(0.6, abs=1e-15)
    with_speck = gt | square(20, 20, 15, 16, 15, 16)  # adds a far 4-pixel boundary
    p, r = 20 / 24, 1.0
    assert boundary_f(with_speck, gt, bound_th=1) == pytest.approx(2 * p * r / (p + r))
    assert boundary_f(gt, with_speck, bound_th=1) == pytest.approx(2 * p * r / (p + r))


def test_boundary_f_void_zeroes_masks_first() -> None:
    gt = square(12, 12, 2, 6, 2, 6)
    speck = square(12, 12, 8, 10, 8, 10)
    assert boundary_f(gt | speck, gt) < 1.0
    assert boundary_f(gt | speck, gt, void=speck) == 1.0
    # Void inside both masks cuts a hole in both: still identical contours.
    assert boundary_f(gt, gt, void=square(12, 12, 3, 5, 3, 5)) == 1.0
    # Void turns a full mask (no contour) into one with a contour around the hole.
    hole = square(12, 12, 4, 7, 4, 7)
    assert boundary_f(np.ones((12, 12), bool), np.zeros((12, 12), bool), void=hole) == 0.0
    assert boundary_f(np.ones((12, 12), bool), np.ones((12, 12), bool), void=hole) == 1.0


# ----------------------------------------------------------------------------------------
# Agreement with the literal reference.
# ----------------------------------------------------------------------------------------


def test_matches_reference_on_random_masks() -> None:
    rng = np.random.default_rng(2017)
    for i in range(250):
        h, w = int(rng.integers(1, 15)), int(rng.integers(1, 15))
        pred, gt = random_mask(rng, h, w), random_mask(rng, h, w)
        void = rng.random((h, w)) < 0.15 if i % 3 == 0 else None
        th = THRESHOLDS[i % len(THRESHOLDS)]
        assert abs(jaccard(pred, gt, void) - ref_jaccard(pred, gt, void)) <= 1e-9
        got, want = boundary_f(pred, gt, th, void), ref_boundary_f(pred, gt, th, void)
        assert abs(got - want) <= 1e-9, (h, w, th, got, want)


def test_matches_reference_on_larger_blobs() -> None:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:40, :64]
    for th in (0.008, 0.05, 4):  # 1, 4 and 4 px on a 40x64 frame
        for _ in range(4):
            cy, cx = rng.uniform(0, 40), rng.uniform(0, 64)
            ry, rx = rng.uniform(3, 20), rng.uniform(3, 30)
            gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            pred = ((yy - cy - rng.normal(0, 2)) / ry) ** 2 + ((xx - cx) / (rx * 0.9)) ** 2 < 1
            pred ^= rng.random(pred.shape) < 0.01
            assert abs(boundary_f(pred, gt, th) - ref_boundary_f(pred, gt, th)) <= 1e-9


@settings(max_examples=60, deadline=None, database=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    th=st.sampled_from(THRESHOLDS),
)
def test_matches_reference_hypothesis(h: int, w: int, seed: int, th: float) -> None:
    rng = np.random.default_rng(seed)
    pred, gt = random_mask(rng, h, w), random_mask(rng, h, w)
    assert abs(boundary_f(pred, gt, th) - ref_boundary_f(pred, gt, th)) <= 1e-9
    assert abs(jaccard(pred, gt) - ref_jaccard(pred, gt)) <= 1e-9


def test_batch_matches_single() -> None:
    rng = np.random.default_rng(3)
    preds = np.stack([random_mask(rng, 11, 13) for _ in range(40)]).reshape(2, 20, 11, 13)
    gts = np.stack([random_mask(rng, 11, 13) for _ in range(40)]).reshape(2, 20, 11, 13)
    void = rng.random(preds.shape) < 0.1
    jb, fb = jaccard_batch(preds, gts, void), boundary_f_batch(preds, gts, 2, void)
    assert jb.shape == fb.shape == (2, 20)  # 40 masks: spans several internal chunks
    for a in range(2):
        for t in range(20):
            assert jb[a, t] == jaccard(preds[a, t], gts[a, t], void[a, t])
            assert fb[a, t] == boundary_f(preds[a, t], gts[a, t], 2, void[a, t])


def test_davis_sized_frame_is_fast() -> None:
    yy, xx = np.mgrid[:480, :854]
    gt = (yy - 240) ** 2 / 150**2 + (xx - 400) ** 2 / 260**2 < 1
    preds = np.stack([np.roll(gt, shift, axis=1) for shift in (0, 8, 9, 16)])
    start = time.process_time()  # CPU time: insensitive to other processes on the machine
    f = boundary_f_batch(preds, np.repeat(gt[None], 4, axis=0))
    j = jaccard_batch(preds, np.repeat(gt[None], 4, axis=0))
    elapsed = time.process_time() - start
    assert elapsed < 4.0, f"{elapsed:.2f} s for 4 frame-objects"  # typically ~0.1 s
    # The default tolerance is 8 px here: an 8 px shift still matches, 9 px does not.
    assert j[0] == f[0] == f[1] == 1.0
    assert 0 < f[3] < f[2] < 1


# ----------------------------------------------------------------------------------------
# Sequence statistics.
# ----------------------------------------------------------------------------------------


def test_recall_is_strictly_above_half() -> None:
    assert sequence_stats([0.5, 0.5, 0.6, 0.4])[1] == 0.25
    assert sequence_stats([0.5] * 7)[1] == 0.0
    assert sequence_stats(np.array([0.500001]))[1] == 1.0


def test_decay_four_bins() -> None:
    # T = 8: edges round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]; bins share their edges.
    v = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    mean, recall, decay = sequence_stats(v)
    assert mean == pytest.approx(0.55) and recall == 0.5
    assert decay == pytest.approx(0.8 - 0.3)
    # T = 7: linspace gives 2.5 and 5.5; the +1e-10 rounds both up (edges [0, 2, 3, 5, 6]),
    # where plain round-half-to-even would have put the first edge at 1.
    assert sequence_stats([1.0, 0.8, 0.3, 0.5, 0.5, 0.2, 0.0])[2] == pytest.approx(0.7 - 0.1)


def test_short_sequences() -> None:
    assert sequence_stats([0.7]) == (0.7, 1.0, 0.0)
    assert sequence_stats([0.9, 0.3])[2] == pytest.approx(0.6)
    assert sequence_stats([0.9, 0.5, 0.1])[2] == pytest.approx(0.7 - 0.1)
    assert all(math.isnan(x) for x in sequence_stats([]))


def test_stats_nan_handling() -> None:
    mean, recall, decay = sequence_stats([math.nan, 1.0, 0.0, math.nan, 0.6])
    assert mean == pytest.approx(1.6 / 3)
    assert recall == pytest.approx(2 / 5)  # a NaN frame counts as a miss
    assert decay == pytest.approx(1.0 - 0.6)  # bins [nan, 1.0] and [nan, 0.6]
    assert math.isnan(sequence_stats([math.nan] * 3 + [0.3, 0.2, 0.1, 0.0, 0.9])[2])


def test_stats_match_reference() -> None:
    rng = np.random.default_rng(11)
    for t in list(range(1, 40)) + [80, 104, 255]:
        v = rng.random(t)
        v[rng.random(t) < 0.1] = np.nan
        got, want = sequence_stats(v), ref_stats(list(v))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)


def test_stats_rejects_2d() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        sequence_stats(np.zeros((2, 3)))


# ----------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [jaccard, boundary_f, jaccard_batch, boundary_f_batch])
def test_shape_mismatch_names_both_shapes(fn) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        fn(np.zeros((3, 4)), np.zeros((4, 3)))


def test_other_shape_errors() -> None:
    m = np.zeros((3, 4), bool)
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3, 4\)"):
        jaccard(m, m, void=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3, 4\)"):
        boundary_f(m, m, void=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        jaccard(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="at least one pixel"):
        boundary_f(np.zeros((0, 4)), np.zeros((0, 4)))
    seq = np.zeros((2, 1, 5, 6), bool)
    with pytest.raises(ValueError, match=r"\(2, 5, 7\).*\(2, 5, 6\)"):
        evaluate_sequence(seq, seq, void=np.zeros((2, 5, 7), bool))
    with pytest.raises(ValueError, match=r"\(2, 1, 5, 6\).*\(2, 1, 6, 5\)"):
        evaluate_sequence(seq, np.zeros((2, 1, 6, 5), bool))


# ----------------------------------------------------------------------------------------
# Sequence evaluation.
# ----------------------------------------------------------------------------------------


def _toy_sequence(t: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    gts = np.zeros((t, 3, 16, 20), bool)
    preds = np.zeros_like(gts)
    for i in range(t):
        gts[i, 0] = square(16, 20, 2, 8, 2 + i, 9 + i)
        preds[i, 0] = square(16, 20, 2, 8, 2 + (i * 3) // 2, 9 + i)  # drifts off over time
        gts[i, 1] = random_mask(rng, 16, 20)
        preds[i, 1] = random_mask(rng, 16, 20)
        # object 2 is absent in both prediction and ground truth
    return preds, gts


def test_evaluate_sequence_davis_protocol() -> None:
    preds, gts = _toy_sequence()
    s = evaluate_sequence(preds, gts)
    assert isinstance(s, SequenceScores)
    np.testing.assert_array_equal(s.frames, [1, 2, 3, 4, 5])  # first and last frame dropped
    assert s.j.shape == s.f.shape == (3, 5)
    for k in range(3):
        for col, t in enumerate(s.frames):
            assert s.j[k, col] == jaccard(preds[t, k], gts[t, k])
            assert s.f[k, col] == boundary_f(preds[t, k], gts[t, k])
        assert (s.j_mean[k], s.j_recall[k], s.j_decay[k]) == sequence_stats(s.j[k])
        assert (s.f_mean[k], s.f_recall[k], s.f_decay[k]) == sequence_stats(s.f[k])
    np.testing.assert_array_equal(s.j[2], 1.0)  # absent object: empty vs empty
    np.testing.assert_array_equal(s.f[2], 1.0)
    assert s.j_decay[0] > 0  # the drifting object gets worse
    np.testing.assert_allclose(s.jf_mean, (s.j_mean + s.f_mean) / 2)


def test_evaluate_sequence_frame_selection() -> None:
    preds, gts = _toy_sequence()
    mask = np.array([1, 0, 1, 0, 1, 1, 1], bool)
    np.testing.assert_array_equal(evaluate_sequence(preds, gts, mask).frames, [2, 4, 5])
    np.testing.assert_array_equal(evaluate_sequence(preds, gts, [0, 3]).frames, [3])
    s = evaluate_sequence(preds, gts, mask, drop_first_last=False)
    np.testing.assert_array_equal(s.frames, [0, 2, 4, 5, 6])
    assert s.j[0, 0] == 1.0  # frame 0 of object 0 is a perfect match
    with pytest.raises(ValueError, match=r"\(3,\)"):
        evaluate_sequence(preds, gts, np.ones(3, bool))


def test_evaluate_sequence_too_short_gives_nan() -> None:
    preds, gts = _toy_sequence(2)
    s = evaluate_sequence(preds, gts)
    assert s.j.shape == (3, 0)
    assert np.isnan(s.j_mean).all() and np.isnan(s.f_decay).all()


def test_evaluate_sequence_void_applies_to_all_objects() -> None:
    preds, gts = _toy_sequence()
    void = np.zeros(gts.shape[:1] + gts.shape[2:], bool)
    void[:, 8:, :] = True
    s = evaluate_sequence(preds, gts, void=void, drop_first_last=False)
    for t in range(7):
        for k in range(3):
            assert s.j[k, t] == jaccard(preds[t, k], gts[t, k], void[t])
            assert s.f[k, t] == boundary_f(preds[t, k], gts[t, k], void=void[t])
