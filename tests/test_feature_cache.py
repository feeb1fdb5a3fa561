"""The frozen-feature cache: keyed by SAM hash, exact, never crossed between SAMs, atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from safetensors import safe_open
from torchvision.transforms import InterpolationMode

import i2v.train.feature_cache as fc
from i2v.build import build_sam_i2v
from i2v.cli import main
from i2v.data.clips import ClipAugment
from i2v.model import SamI2V
from i2v.train.clip_step import clip_loss, prepare_clip
from i2v.train.config import TrainConfig, train_config_from_dict
from i2v.train.data import ResizeOnly, build_train_dataset, clip_augment, open_videos
from i2v.train.feature_cache import FeatureCache, FeatureCacheMiss, fill_cache


def tiny_config(tmp_path: Path, sam_file: Path, **extra: object) -> TrainConfig:
    data = {
        "sam_checkpoint": str(sam_file),
        "output_dir": str(tmp_path / "run"),
        "data": [
            {
                "type": "synthetic",
                "num_videos": 2,
                "synthetic": {"height": 48, "width": 64, "num_frames": 3, "max_objects": 1},
            }
        ],
        "clip": {"num_frames": 3, "max_objects": 1},
        "feature_cache": {"enabled": True, "dtype": "float32", "dir": str(tmp_path / "cache")},
    }
    data.update(extra)
    return train_config_from_dict(data)


@pytest.fixture(scope="module")
def model(tiny_sam_file: Path) -> SamI2V:
    return build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu").train()


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> SamI2V:
    from i2v.sam_builder import load_sam

    path = tmp_path_factory.mktemp("other") / "other_sam.pth"
    torch.save(load_sam("tiny", seed=7).sam.state_dict(), path)
    return build_sam_i2v("tiny", sam_checkpoint=path, device="cpu").train()


def test_cache_files_are_keyed_by_sam_hash_and_cover_every_frame(
    tmp_path: Path, tiny_sam_file: Path, model: SamI2V
) -> None:
    cfg = tiny_config(tmp_path, tiny_sam_file)
    report = fill_cache(cfg, model, progress=False)
    assert (report.videos_computed, report.frames_computed) == (2, 6)
    cache = FeatureCache.for_run(cfg, model)
    assert model.sam_sha256 in str(cache.dir) and cache.dir.is_relative_to(tmp_path / "cache")
    files = sorted(cache.dir.rglob("*.safetensors"))
    assert len(files) == 2
    with safe_open(str(files[0]), framework="pt") as f:
        assert f.metadata()["sam_sha256"] == model.sam_sha256
        assert f.get_tensor("frame_indices").tolist() == [0, 1, 2]
        c = model.sam.prompt_encoder.embed_dim
        assert tuple(f.get_slice("features").get_shape()) == (3, c, *model.embedding_size)
    again = fill_cache(cfg, model, progress=False)  # complete videos are not recomputed
    assert (again.videos_computed, again.videos_skipped) == (0, 2)


def test_cache_features_command(
    tmp_path: Path, tiny_sam_file: Path, model: SamI2V, capsys: pytest.CaptureFixture
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        json.dumps(
            {
                "sam_checkpoint": str(tiny_sam_file),
                "output_dir": str(tmp_path / "run"),
                "data": [
                    {"type": "synthetic", "num_videos": 1, "synthetic": {"height": 48, "width": 64, "num_frames": 2}}
                ],
                "feature_cache": {"enabled": True},
            }
        )
    )
    assert main(["cache-features", "--config", str(recipe), "--no-progress", "clip.size=[32,40]"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["frames_computed"] == 2 and f"s{model.image_size}-32x40-float16" in report["dir"]
    assert len(list((tmp_path / "run" / "feature_cache").rglob("*.safetensors"))) == 1


def test_training_from_cache_equals_training_on_the_fly(tmp_path: Path, tiny_sam_file: Path, model: SamI2V) -> None:
    cfg = tiny_config(tmp_path, tiny_sam_file)
    clip = build_train_dataset(cfg)[0]
    cache = FeatureCache.for_run(cfg, model)
    prepared = prepare_clip(model, clip.frames, clip.masks)
    encode = lambda rows: model.encode_images(prepared.images[rows])  # noqa: E731
    on_the_fly = model.encode_images(prepared.images)
    filled = cache.embeddings(clip.name, clip.frame_indices.tolist(), encode)  # miss: computed and stored
    cached = cache.embeddings(clip.name, clip.frame_indices.tolist(), None)  # hit: read from disk
    torch.testing.assert_close(cached, on_the_fly, rtol=1e-5, atol=1e-5)
    assert torch.equal(filled, cached)

    def loss(emb: torch.Tensor) -> torch.Tensor:
        return clip_loss(model, emb, prepared.gt, clip.annotated, cfg.prompts, cfg.loss, np.random.default_rng(3)).total

    torch.testing.assert_close(loss(cached), loss(on_the_fly), rtol=1e-5, atol=1e-5)


def test_a_cache_of_another_sam_is_never_used(
    tmp_path: Path, tiny_sam_file: Path, model: SamI2V, other_model: SamI2V
) -> None:
    cfg = tiny_config(tmp_path, tiny_sam_file)
    fill_cache(cfg, model, progress=False)
    mine, theirs = FeatureCache.for_run(cfg, model), FeatureCache.for_run(cfg, other_model)
    assert mine.dir != theirs.dir
    name = build_train_dataset(cfg)[0].name
    assert mine.stored_frames(name) and not theirs.stored_frames(name)
    with pytest.raises(FeatureCacheMiss, match="cache-features"):
        theirs.embeddings(name, [0, 1], None)
    # even a file copied by hand into the other SAM's folder is refused (its metadata says whose it is)
    theirs.path(name).parent.mkdir(parents=True)
    theirs.path(name).write_bytes(mine.path(name).read_bytes())
    assert theirs.read(name, [0, 1]) == {}


def test_cache_writes_are_atomic(
    tmp_path: Path, tiny_sam_file: Path, model: SamI2V, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(tmp_path, tiny_sam_file)
    cache = FeatureCache.for_run(cfg, model)
    name = "synthetic-x/video"
    cache.write(name, {0: torch.ones(2, 4, 4)})
    before = cache.path(name).read_bytes()

    def crash(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(fc, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.write(name, {1: torch.zeros(2, 4, 4)})
    assert cache.path(name).read_bytes() == before  # the old file is intact...
    assert [p.name for p in cache.path(name).parent.iterdir()] == [cache.path(name).name]  # ...and no temp left
    monkeypatch.undo()
    cache.write(name, {1: torch.zeros(2, 4, 4)})  # merged with what was there
    assert cache.stored_frames(name) == [0, 1]
    torch.testing.assert_close(cache.embeddings(name, [1, 0, 1], None)[:, 0, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_cache_turns_pixel_augmentation_off(tmp_path: Path, tiny_sam_file: Path) -> None:
    cached = tiny_config(tmp_path, tiny_sam_file, clip={"num_frames": 3, "size": [32, 40]})
    assert isinstance(clip_augment(cached), ResizeOnly)
    assert clip_augment(tiny_config(tmp_path, tiny_sam_file)) is None
    uncached = tiny_config(tmp_path, tiny_sam_file, feature_cache={"enabled": False})
    aug = clip_augment(uncached)
    assert isinstance(aug, ClipAugment) and not isinstance(aug, ResizeOnly) and aug.hflip_prob > 0
    # frames are the video's own frames, only resized: no flip, crop or colour change
    ds = build_train_dataset(cached)
    clip = ds[1]
    videos = open_videos(cached.data[0])
    v = videos.dataset.video_name(clip.video_index)
    raw = torch.from_numpy(videos.clip(clip.video_index, clip.frame_indices.tolist()).frames).permute(0, 3, 1, 2)
    expected = TF.resize(raw, [32, 40], interpolation=InterpolationMode.BILINEAR, antialias=True)
    assert clip.name.endswith(v) and torch.equal(clip.frames, expected)
