"""Tests of i2v.io.masks: thresholding, COCO RLE, DAVIS palette PNGs, label maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from i2v.errors import DatasetError
from i2v.io.masks import (
    davis_palette,
    decode_rle,
    decode_rles,
    encode_rle,
    encode_rles,
    label_map_to_masks,
    load_palette_png,
    logits_to_masks,
    masks_to_label_map,
    save_palette_png,
)


def random_masks(n: int = 3, h: int = 17, w: int = 23, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w)) > 0.5


# ---- logits --------------------------------------------------------------------------------


def test_logits_to_masks_torch_and_numpy() -> None:
    logits = torch.tensor([[[[-1.0, 0.0], [0.5, 2.0]]]])  # (1, 1, 2, 2)
    expected = np.array([[[False, False], [True, True]]])
    np.testing.assert_array_equal(logits_to_masks(logits), expected)
    np.testing.assert_array_equal(logits_to_masks(logits[:, 0].numpy()), expected)
    np.testing.assert_array_equal(logits_to_masks(logits, threshold=1.0), [[[False, False], [False, True]]])
    assert logits_to_masks(logits).dtype == bool


def test_logits_to_masks_bad_shape() -> None:
    with pytest.raises(DatasetError, match=r"\(N, 1, H, W\) or \(N, H, W\)"):
        logits_to_masks(np.zeros((2, 2, 4, 4)))


# ---- RLE -----------------------------------------------------------------------------------


def test_rle_round_trip_is_json_serialisable() -> None:
    mask = random_masks(1)[0]
    rle = encode_rle(mask)
    assert rle["size"] == [17, 23] and isinstance(rle["counts"], str)
    rle = json.loads(json.dumps(rle))
    decoded = decode_rle(rle)
    assert decoded.dtype == bool and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, mask)


def test_rle_accepts_non_contiguous_and_uint8_masks() -> None:
    mask = random_masks(1, 20, 30)[0]
    np.testing.assert_array_equal(decode_rle(encode_rle(mask[::2, ::3])), mask[::2, ::3])
    np.testing.assert_array_equal(decode_rle(encode_rle(mask.astype(np.uint8))), mask)


def test_rle_batches() -> None:
    masks = random_masks(4)
    rles = encode_rles(masks)
    assert len(rles) == 4
    np.testing.assert_array_equal(decode_rles(rles), masks)
    assert decode_rles([], shape=(5, 6)).shape == (0, 5, 6)
    with pytest.raises(DatasetError, match="shape="):
        decode_rles([])


def test_uncompressed_rle_and_bytes_counts() -> None:
    # column-major runs: 5 zeros, 2 ones, 2 zeros, 2 ones, 9 zeros in a 4x5 mask
    mask = decode_rle({"size": [4, 5], "counts": [5, 2, 2, 2, 9]})
    expected = np.zeros((4, 5), bool)
    expected[1:3, 1] = expected[1:3, 2] = True
    np.testing.assert_array_equal(mask, expected)
    compressed = encode_rle(expected)
    np.testing.assert_array_equal(decode_rle({"size": [4, 5], "counts": compressed["counts"].encode()}), expected)


def test_rle_errors() -> None:
    with pytest.raises(DatasetError, match="'size' and 'counts'"):
        decode_rle({"counts": "abc"})
    with pytest.raises(DatasetError, match=r"expected \(H, W\)"):
        encode_rle(np.zeros((1, 2, 2), bool))
    with pytest.raises(DatasetError, match="values other than 0 and 1"):
        encode_rle(np.full((2, 2), 7, np.uint8))
    with pytest.raises(DatasetError, match="RLE 1 has size"):
        decode_rles([encode_rle(np.zeros((2, 2), bool)), encode_rle(np.zeros((3, 2), bool))])


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40)))
def test_rle_round_trip_property(mask: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask)


# ---- palette and PNGs ----------------------------------------------------------------------


def test_davis_palette_known_entries() -> None:
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[:9].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
        [0, 128, 128],
        [128, 128, 128],
        [64, 0, 0],
    ]
    assert palette[255].tolist() == [224, 224, 192]  # VOC's "void" colour
    assert len({tuple(c) for c in palette}) == 256


def test_palette_png_round_trip(tmp_path: Path) -> None:
    label_map = np.random.default_rng(0).integers(0, 6, (13, 9), dtype=np.uint8)
    path = tmp_path / "sub" / "00000.png"
    save_palette_png(path, label_map)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    np.testing.assert_array_equal(load_palette_png(path), label_map)
    assert [p.name for p in path.parent.iterdir()] == ["00000.png"]  # no temp file left


def test_load_grayscale_png(tmp_path: Path) -> None:
    label_map = np.array([[0, 1], [2, 255]], np.uint8)
    Image.fromarray(label_map).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_palette_png(tmp_path / "g.png"), label_map)


def test_load_palette_png_errors(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match="rgb.png is a RGB image; expected a single-channel"):
        load_palette_png(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match="missing.png does not exist"):
        load_palette_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="junk.png could not be read"):
        load_palette_png(tmp_path / "junk.png")
    Image.fromarray(np.full((2, 2), 300, np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(DatasetError, match="ids up to 300"):
        load_palette_png(tmp_path / "big.png")


def test_save_palette_png_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"\(H, W\) uint8"):
        save_palette_png(tmp_path / "x.png", np.zeros((2, 2), np.int32))
    assert list(tmp_path.iterdir()) == []


# ---- label maps ----------------------------------------------------------------------------


def test_masks_to_label_map_later_objects_win() -> None:
    masks = np.zeros((2, 2, 3), bool)
    masks[0, :, :2] = True
    masks[1, :, 1:] = True
    label_map = masks_to_label_map(masks, [5, 9])
    assert label_map.dtype == np.uint8
    assert label_map.tolist() == [[5, 9, 9], [5, 9, 9]]


def test_label_map_to_masks_round_trip() -> None:
    label_map = np.array([[0, 3, 3], [7, 7, 0]], np.uint8)
    masks = label_map_to_masks(label_map, [3, 7, 42])
    assert masks.shape == (3, 2, 3) and masks.dtype == bool
    assert not masks[2].any()  # absent id -> empty mask
    np.testing.assert_array_equal(masks_to_label_map(masks[:2], [3, 7]), label_map)
    assert label_map_to_masks(label_map, []).shape == (0, 2, 3)


def test_label_map_errors() -> None:
    masks = random_masks(2)
    with pytest.raises(DatasetError, match="2 masks but 1 obj_ids"):
        masks_to_label_map(masks, [1])
    with pytest.raises(DatasetError, match=r"\[0, 256\].*1..255"):
        masks_to_label_map(masks, [0, 256])
    with pytest.raises(DatasetError, match=r"expected \(H, W\)"):
        label_map_to_masks(np.zeros((1, 2, 2)), [1])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 255), min_size=1, max_size=5, unique=True), st.integers(0, 99))
def test_disjoint_masks_round_trip_property(ids: list, seed: int) -> None:
    label_idx = np.random.default_rng(seed).integers(0, len(ids) + 1, (6, 7))
    lookup = np.array([0] + ids, np.uint8)
    label_map = lookup[label_idx]
    masks = label_map_to_masks(label_map, ids)
    np.testing.assert_array_equal(masks_to_label_map(masks, ids), label_map)
