"""Dataset readers refuse frames whose size differs from their annotations (SA-1B, SA-V train)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from i2v.data.sa1b import SA1BDataset, SA1BPseudoVideo
from i2v.data.sav import SAVDataset
from i2v.errors import DatasetError

try:  # pytest puts tests/ on sys.path unless tests/ becomes a package
    import fixtures_datasets as fx
except ImportError:  # pragma: no cover
    from tests import fixtures_datasets as fx


def _resize_jpegs(folder: Path, factor: float) -> None:
    for p in folder.glob("*.jpg"):
        with Image.open(p) as im:
            im.resize((int(fx.W * factor), int(fx.H * factor))).save(p)


def test_sa1b_image_resized_against_its_annotation_is_an_error(tmp_path: Path) -> None:
    # SA-1B masks are RLEs of the image's size (json "image": {"height", "width"}); a locally
    # downscaled jpg must not be returned next to full-size masks.
    fx.make_sa1b(tmp_path)
    _resize_jpegs(tmp_path, 0.5)
    ds = SA1BDataset(tmp_path)
    with pytest.raises(DatasetError, match=r"sa_1\.jpg.*16x12.*sa_1\.json.*32x24"):
        ds.clip(0, [0])
    with pytest.raises(DatasetError, match="sa_1.jpg"):
        SA1BPseudoVideo(ds, num_frames=3).clip(0, [0, 1, 2])


def test_sav_train_frames_of_another_size_than_the_masklets_is_an_error(tmp_path: Path) -> None:
    # SA-V train masklet RLEs have the json's video_height x video_width; extracted JPEGs of
    # another size would silently misalign frames and masks.
    vid = fx.make_sav_train(tmp_path)
    _resize_jpegs(tmp_path / "sav_train" / "JPEGImages_24fps" / vid, 2)
    ds = SAVDataset(tmp_path, "sav_train")
    with pytest.raises(DatasetError, match=r"sav_000001.*64x48.*_manual\.json says 32x24"):
        ds.clip(0, [0, 1])
    with pytest.raises(DatasetError, match="64x48"):
        ds.frame(0, 0)
