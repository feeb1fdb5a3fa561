"""Reliability of the dataset readers and the feature cache on damaged files (issue 18)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fixtures_datasets as fx
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from i2v.data.sa1b import SA1BDataset
from i2v.data.sav import SAVDataset
from i2v.errors import DatasetError
from i2v.train.feature_cache import FeatureCache


def _short_rle(height: int, width: int) -> dict:
    """An all-background RLE whose runs cover one column less than its size says."""
    rle = fx.rle(np.zeros((height, width - 1), dtype=bool))
    return {"size": [height, width], "counts": rle["counts"]}


def test_sav_rle_that_does_not_cover_its_frame_is_an_error_naming_the_file(tmp_path: Path) -> None:
    vid = fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=4)
    path = tmp_path / "sav_train" / "sav_000" / f"{vid}_manual.json"
    ann = json.loads(path.read_text())
    h, w = int(ann["video_height"]), int(ann["video_width"])
    ann["masklet"][0][0] = _short_rle(h, w)  # pycocotools would leave a column uninitialised
    path.write_text(json.dumps(ann))
    ds = SAVDataset(tmp_path, split="sav_train")
    with pytest.raises(DatasetError, match=rf"{path.name}.*cover {h * (w - 1)} pixels"):
        ds.masks(0, 0)


def test_sa1b_rle_that_does_not_cover_its_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    name, _ = fx.make_sa1b(tmp_path)
    path = tmp_path / f"{name}.json"
    data = json.loads(path.read_text())
    h, w = data["image"]["height"], data["image"]["width"]
    for ann in data["annotations"]:
        ann["segmentation"] = _short_rle(h, w)
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"{path.name}.*cover"):
        SA1BDataset(tmp_path).masks(0, 0)


# ---------------------------------------------------------------- feature cache


def _damage(path: Path, how: str, cache: FeatureCache, name: str) -> None:
    if how == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif how == "cut short":
        path.write_bytes(path.read_bytes()[:-100])
    else:  # an index longer than the features it indexes
        save_file(
            {"features": torch.zeros(2, 4, 2, 2), "frame_indices": torch.arange(3)},
            str(path),
            metadata=cache._metadata(name),
        )


@pytest.mark.parametrize("how", ["garbage", "cut short", "long index"])
def test_a_damaged_feature_cache_file_is_a_miss_that_is_recomputed(tmp_path: Path, how: str) -> None:
    cache = FeatureCache(tmp_path, "abc", image_size=32)
    name = "synthetic-train/video_0"
    feats = torch.arange(3 * 4 * 2 * 2, dtype=torch.float32).reshape(3, 4, 2, 2)
    cache.write(name, {t: feats[t] for t in range(3)})
    path = cache.path(name)
    _damage(path, how, cache, name)
    encode = lambda rows: feats[[0, 2]][rows]  # noqa: E731  (frames 0 and 2 of the clip)
    with pytest.warns(RuntimeWarning, match=re.escape(str(path))):
        got = cache.embeddings(name, [0, 2], encode)
    torch.testing.assert_close(got, feats[[0, 2]].half())
    assert cache.stored_frames(name) == [0, 2]  # rewritten whole
