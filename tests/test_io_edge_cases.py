"""Edge cases of i2v.io, prompt validation, streaming and the segment CLI: 16-bit frames, odd
frame names, malformed RLEs, flipped and wide masks, bad command-line values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2v.cli import main
from i2v.errors import DatasetError, PromptError
from i2v.io.masks import decode_rle, encode_rle
from i2v.io.video_source import open_video
from i2v.prompt_inputs import check_mask
from i2v.segment_cli import _load_mask, group_prompts
from i2v.streaming import StreamSource

# ---- 16-bit grayscale frames ---------------------------------------------------------------


def test_sixteen_bit_grayscale_frames_are_scaled_not_clipped(tmp_path: Path) -> None:
    levels = (np.arange(6 * 8).reshape(6, 8) * 1300).astype(np.uint16)  # 0 .. 61100
    expected = np.repeat((levels >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    Image.fromarray(levels).save(tmp_path / "00000.png")
    assert Image.open(tmp_path / "00000.png").mode.startswith("I")
    np.testing.assert_array_equal(open_video(tmp_path).frame(0), expected)
    np.testing.assert_array_equal(open_video([Image.fromarray(levels)]).frame(0), expected)


# ---- frame folders -------------------------------------------------------------------------


def test_folder_with_non_decimal_digit_names_opens(tmp_path: Path) -> None:
    # "²" is a digit to str.isdigit but int() cannot parse it: sort by name instead of crashing.
    for name in ("1.png", "\u00b2.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
    video = open_video(tmp_path)
    assert [p.name for p in video.paths] == ["1.png", "\u00b2.png"]


# ---- streaming -----------------------------------------------------------------------------


def test_stream_push_accepts_uint8_tensors() -> None:
    frame = torch.arange(4 * 5 * 3, dtype=torch.uint8).reshape(4, 5, 3)
    stream = StreamSource()
    assert stream.push(frame) == 0
    assert stream.push(frame.permute(2, 0, 1)) == 1  # channels-first
    assert stream.push(frame[:, :, 0]) == 2  # grayscale
    np.testing.assert_array_equal(stream.frame(0), frame.numpy())
    np.testing.assert_array_equal(stream.frame(1), frame.numpy())
    np.testing.assert_array_equal(stream.frame(2), np.repeat(frame.numpy()[:, :, :1], 3, axis=2))


# ---- COCO RLE ------------------------------------------------------------------------------


def test_rle_whose_counts_do_not_cover_its_size_is_rejected() -> None:
    mask = np.zeros((50, 70), bool)
    mask[::2] = True
    rle = encode_rle(mask)
    # pycocotools would decode these, leaving the uncovered pixels uninitialised.
    with pytest.raises(DatasetError, match="cover 3500 pixels but its size"):
        decode_rle({"size": [100, 70], "counts": rle["counts"]})
    with pytest.raises(DatasetError, match="cover 2 pixels"):
        decode_rle({"size": [2, 2], "counts": [1, 1]})
    np.testing.assert_array_equal(decode_rle({"size": [2, 2], "counts": [1, 3]}).ravel(), [False, True, True, True])


@pytest.mark.parametrize(
    "rle, match",
    [
        ({"size": [5], "counts": "PP"}, r"'size' must be \[height, width\]"),
        ({"size": [-1, 7], "counts": []}, "non-negative"),
        ({"size": [5, 7], "counts": "\u00e9"}, "ASCII"),
        ({"size": [2, 2], "counts": [1, -1, 4]}, "non-negative integers"),
        ({"size": [5, 7], "counts": 5}, "str, bytes or list"),
    ],
)
def test_malformed_rle_raises_dataset_error(rle: dict, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        decode_rle(rle)


# ---- mask prompts --------------------------------------------------------------------------


def test_check_mask_accepts_flipped_and_wide_integer_masks() -> None:
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = True
    flipped = check_mask(mask[::-1], 6, 4)  # negative strides
    assert flipped[2, 2] == 1 and flipped.sum() == 1
    for dtype in (np.uint16, np.uint32, np.uint64):  # 16-bit PNG masks load as uint16
        assert check_mask(mask.astype(dtype) * 300, 6, 4).sum() == 1


# ---- segment CLI ---------------------------------------------------------------------------


def test_segment_non_integer_frame_or_label_exits_with_a_message(tmp_path: Path, capsys) -> None:
    video = tmp_path / "v.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(video)
    out = tmp_path / "out"
    assert main(["segment", str(video), "--frame", "x", "--obj-id", "1", "--point", "1,2", "--out", str(out)]) == 2
    assert "--frame 'x' must be an integer" in capsys.readouterr().err
    assert main(["segment", str(video), "--obj-id", "one", "--point", "1,2", "--out", str(out)]) == 2
    assert "--obj-id 'one' must be an integer" in capsys.readouterr().err
    with pytest.raises(PromptError, match="label 0.5"):  # was silently truncated to 0
        group_prompts([("obj_id", "1"), ("point", "1,2,0.5")])


def test_segment_mask_file_errors_are_prompt_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="does not exist"):
        _load_mask(str(tmp_path / "missing.png"))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(PromptError, match="not a readable image"):
        _load_mask(str(tmp_path / "notes.txt"))
    Image.fromarray(np.array([[0, 3]], np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(_load_mask(str(tmp_path / "m.png")), [[False, True]])
