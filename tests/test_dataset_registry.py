"""The dataset registry is the one list of readers: training recipes, the eval CLI and
``make_dataset`` all follow it, so a new reader is its module plus one registry entry."""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

import pytest

from i2v.data import registry
from i2v.data.base import VideoDataset
from i2v.data.registry import DATASETS, DatasetEntry, make_dataset
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.eval.cli import add_parser
from i2v.train.config import DataSpec
from i2v.train.data import open_reader


def _toy(root: Optional[str], split: str, **options: Any) -> VideoDataset:
    """A stand-in reader: a small synthetic set that records what it was opened with."""
    ds = SyntheticVideoDataset("val", num_videos=2, config=SyntheticConfig(num_frames=3, height=32, width=32))
    ds.opened_with = {"root": root, "split": split, **options}  # type: ignore[attr-defined]
    return ds


@pytest.fixture
def toy_reader(monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
    entry = DatasetEntry(
        _toy,
        "held_out",
        required={"annotations": "the path of its JSON file"},
        recipe_options={"index_file": "annotations", "seed": "seed"},
    )
    monkeypatch.setitem(DATASETS, "toy", entry)
    return {"entry": entry}


def test_a_registered_reader_is_a_recipe_type_and_an_eval_choice(toy_reader) -> None:
    spec = DataSpec(type="toy", root="/data/toy", annotations="toy.json", seed=7)
    ds = open_reader(spec, split="train")
    assert ds.opened_with == {"root": "/data/toy", "split": "train", "index_file": "toy.json", "seed": 7}
    assert make_dataset("toy", "/data/toy").opened_with["split"] == "held_out"

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "--dataset", "toy", "--root", "/data/toy"])
    assert args.dataset == "toy"


def test_registry_entries_drive_recipe_checks(toy_reader) -> None:
    with pytest.raises(ValueError, match="a 'toy' dataset needs annotations: the path of its JSON file"):
        DataSpec(type="toy", root="/data/toy")
    with pytest.raises(ValueError, match="a 'toy' dataset needs root"):
        DataSpec(type="toy", annotations="toy.json")
    with pytest.raises(ValueError, match="data type must be one of .*toy"):
        DataSpec(type="toys")


def test_the_bundled_readers_keep_their_options() -> None:
    assert list(DATASETS) == ["synthetic", "davis", "ytvos", "mose", "sav", "sa1b", "sa1b_pseudo", "folder", "coco"]
    assert registry.DEFAULT_SPLITS["sav"] == "sav_val" and registry.DEFAULT_SPLITS["davis"] == "val"
    assert [name for name, entry in DATASETS.items() if not entry.evaluable] == ["sa1b", "sa1b_pseudo"]
    for name, entry in DATASETS.items():  # every recipe option names a real DataSpec field
        for field_name in entry.recipe_options.values():
            assert hasattr(DataSpec(type="synthetic"), field_name), (name, field_name)


def test_synthetic_recipe_takes_num_videos_from_the_override_then_the_spec() -> None:
    config = SyntheticConfig(num_frames=3, height=32, width=32)
    assert len(open_reader(DataSpec(type="synthetic", synthetic=config))) == 100
    assert len(open_reader(DataSpec(type="synthetic", synthetic=config, num_videos=5))) == 5
    assert len(open_reader(DataSpec(type="synthetic", synthetic=config, num_videos=5), num_videos=3)) == 3
