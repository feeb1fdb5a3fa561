"""Dataset readers on tiny fixtures in the real formats, and training clip sampling."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from i2v.data.base import VideoDataset
from i2v.data.clips import ClipAugment, ClipDataset, MixedDataset, TrainClip, collate_clips
from i2v.data.davis import DavisDataset, MOSEDataset, YouTubeVOSDataset
from i2v.data.registry import make_dataset
from i2v.data.sa1b import SA1BDataset, SA1BPseudoVideo
from i2v.data.sav import SAVDataset
from i2v.errors import DatasetError, I2VError

try:  # pytest puts tests/ on sys.path unless tests/ becomes a package
    import fixtures_datasets as fx
except ImportError:  # pragma: no cover
    from tests import fixtures_datasets as fx


def jpeg(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


# ---------------------------------------------------------------- DAVIS / YouTube-VOS / MOSE


def test_davis_reads_frames_masks_ids_and_void(tmp_path: Path) -> None:
    labels = fx.make_davis(tmp_path)
    ds = DavisDataset(tmp_path, split="val")
    assert len(ds) == 2 and [ds.video_name(i) for i in range(2)] == ["seqA", "seqB"]
    assert ds.num_frames(0) == 5 and ds.obj_ids(0) == [1, 2]
    assert ds.obj_ids(1) == [1, 3]  # object 2 only appears at frame 2: not a first-frame object
    for t in range(5):
        lab = labels["seqA"][t]
        m = ds.masks(0, t)
        assert m.dtype == bool and m.shape == (2, fx.H, fx.W)
        assert np.array_equal(m[0], lab == 1) and np.array_equal(m[1], lab == 2)
        assert np.array_equal(ds.void_mask(0, t), lab == 255) and ds.void_mask(0, t).any()
        assert not (m.any(0) & ds.void_mask(0, t)).any()
        path = tmp_path / "JPEGImages/480p/seqA" / f"{t:05d}.jpg"
        assert np.array_equal(ds.frame(0, t), jpeg(path))
        assert ds.is_annotated(0, t)
    clip = ds.clip(1, [0, 2, 4])
    assert clip.frames.shape == (3, fx.H, fx.W, 3) and clip.obj_ids == [1, 3]
    assert np.array_equal(clip.masks[1, 1], labels["seqB"][2] == 3)
    # the frame shows the object's colour under its mask (JPEG is lossy: loose tolerance)
    assert np.abs(clip.frames[0][clip.masks[0, 0]].astype(int) - fx.OBJ_COLOURS[1]).mean() < 20
    assert len(DavisDataset(tmp_path, split="train")) == 1


def test_davis_2016_merges_objects(tmp_path: Path) -> None:
    labels = fx.make_davis(tmp_path)
    (tmp_path / "ImageSets/2016").mkdir()
    (tmp_path / "ImageSets/2016/val.txt").write_text("seqA\n")
    ds = DavisDataset(tmp_path, split="val", year=2016)
    assert ds.obj_ids(0) == [1]
    lab = labels["seqA"][3]
    assert np.array_equal(ds.masks(0, 3)[0], (lab == 1) | (lab == 2))


def test_davis_errors_name_the_file(tmp_path: Path) -> None:
    fx.make_davis(tmp_path)
    with pytest.raises(DatasetError, match="test-dev.txt"):
        DavisDataset(tmp_path, split="test-dev")
    bad = tmp_path / "Annotations/480p/seqA/00002.png"
    bad.write_bytes(b"not a png")
    ds = DavisDataset(tmp_path)
    with pytest.raises(DatasetError, match="00002.png"):
        ds.masks(0, 2)
    Image.new("RGB", (fx.W, fx.H)).save(bad)
    with pytest.raises(DatasetError, match=r"00002\.png.*mode 'RGB'"):
        ds.masks(0, 2)
    (tmp_path / "Annotations/480p/seqB/00000.png").unlink()
    with pytest.raises(DatasetError, match="00000.png"):
        DavisDataset(tmp_path).obj_ids(1)
    assert issubclass(DatasetError, I2VError)


def test_davis_missing_frame_annotation_is_unannotated(tmp_path: Path) -> None:
    fx.make_davis(tmp_path)
    (tmp_path / "Annotations/480p/seqA/00003.png").unlink()
    ds = DavisDataset(tmp_path)
    assert [ds.is_annotated(0, t) for t in range(5)] == [True, True, True, False, True]
    m = ds.masks(0, 3)
    assert m.shape == (2, fx.H, fx.W) and not m.any()
    assert ds.clip(0, [2, 3]).annotated.tolist() == [True, False]


def test_ytvos_sparse_annotations_and_meta(tmp_path: Path) -> None:
    labs = fx.make_ytvos(tmp_path)
    ds = YouTubeVOSDataset(tmp_path, split="valid")
    assert len(ds) == 1 and ds.video_name(0) == "0a1b2c3d4e" and ds.num_frames(0) == 5
    assert ds.obj_ids(0) == [1, 2]
    assert [ds.is_annotated(0, t) for t in range(5)] == [True, False, True, False, False]
    m0, m1, m2 = ds.masks(0, 0), ds.masks(0, 1), ds.masks(0, 2)
    assert np.array_equal(m0[0], labs["00000"] == 1) and not m0[1].any()
    assert m1.shape == (2, fx.H, fx.W) and not m1.any()
    assert not m2[0].any() and np.array_equal(m2[1], labs["00010"] == 2)
    path = tmp_path / "valid/JPEGImages/0a1b2c3d4e/00015.jpg"
    assert np.array_equal(ds.frame(0, 3), jpeg(path))


def test_ytvos_without_meta_and_mose(tmp_path: Path) -> None:
    fx.make_ytvos(tmp_path, meta=False)
    assert YouTubeVOSDataset(tmp_path, split="valid").obj_ids(0) == [1, 2]  # union of PNGs
    fx.make_ytvos(tmp_path / "mose", split="train", meta=False)
    ds = MOSEDataset(tmp_path / "mose", split="train")
    assert ds.obj_ids(0) == [1, 2] and ds.num_frames(0) == 5


def test_ytvos_corrupt_meta(tmp_path: Path) -> None:
    fx.make_ytvos(tmp_path)
    (tmp_path / "valid/meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="meta.json"):
        YouTubeVOSDataset(tmp_path)
    (tmp_path / "valid/meta.json").write_text('{"videos": {"v": {"objs": {}}}}')
    with pytest.raises(DatasetError, match="meta.json"):
        YouTubeVOSDataset(tmp_path)
    with pytest.raises(DatasetError, match="nosplit"):
        YouTubeVOSDataset(tmp_path, split="nosplit")


# ---------------------------------------------------------------- SA-V


def test_sav_train_json_with_extracted_jpegs(tmp_path: Path) -> None:
    vid = fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=4)  # SAM 2 extraction: 0, 4, 8
    ds = SAVDataset(tmp_path, split="sav_train")
    assert len(ds) == 1 and ds.video_name(0) == vid
    assert ds.num_frames(0) == 3 and ds.obj_ids(0) == [0, 1]
    assert [ds.frame_number(0, t) for t in range(3)] == [0, 4, 8]
    assert all(ds.is_annotated(0, t) for t in range(3))
    for t, n in enumerate([0, 4, 8]):
        lab = fx.sav_labels(n)
        m = ds.masks(0, t)
        assert np.array_equal(m[0], lab == 1) and np.array_equal(m[1], lab == 2)
        path = tmp_path / "sav_train/JPEGImages_24fps" / vid / f"{n:05d}.jpg"
        assert np.array_equal(ds.frame(0, t), jpeg(path))
    assert not ds.masks(0, 0)[1].any()  # null RLE: masklet 1 not there yet


def test_sav_train_all_frames_sparse_annotation(tmp_path: Path) -> None:
    fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=1)
    ds = SAVDataset(tmp_path, split="sav_train")
    assert ds.num_frames(0) == 9
    assert [ds.is_annotated(0, t) for t in range(9)] == [t % 4 == 0 for t in range(9)]
    assert not ds.masks(0, 5).any() and ds.masks(0, 4)[1].any()
    sub = SAVDataset(tmp_path, split="sav_train", annotated_only=True)
    assert sub.num_frames(0) == 3 and [sub.frame_number(0, t) for t in range(3)] == [0, 4, 8]
    clip = ds.clip(0, [3, 4])
    assert clip.annotated.tolist() == [False, True]


def test_sav_train_mp4(tmp_path: Path) -> None:
    fx.make_sav_train(tmp_path, n_frames=9, mp4=True)
    ds = SAVDataset(tmp_path, split="sav_train")
    assert ds.num_frames(0) == 9
    clip = ds.clip(0, [0, 4, 8])
    assert clip.frames.shape == (3, fx.H, fx.W, 3) and clip.annotated.all()
    for k, n in enumerate([0, 4, 8]):
        lab = fx.sav_labels(n)
        assert np.array_equal(clip.masks[k, 0], lab == 1)
        assert np.abs(clip.frames[k].astype(int) - fx.paint(lab)).mean() < 25  # lossy codec
    assert np.array_equal(ds.frame(0, 4), clip.frames[1])


def test_sav_val_png_layout(tmp_path: Path) -> None:
    vid = fx.make_sav_val(tmp_path)
    ds = SAVDataset(tmp_path, split="sav_val")
    assert ds.video_name(0) == vid and ds.num_frames(0) == 9 and ds.obj_ids(0) == [0, 1]
    assert [ds.is_annotated(0, t) for t in range(9)] == [t % 4 == 0 for t in range(9)]
    lab = fx.sav_labels(8)
    assert np.array_equal(ds.masks(0, 8)[1], lab == 2)
    assert not ds.masks(0, 0)[1].any() and not ds.masks(0, 2).any()


def test_sav_errors(tmp_path: Path) -> None:
    vid = fx.make_sav_train(tmp_path)
    path = tmp_path / "sav_train/sav_000" / f"{vid}_manual.json"
    path.write_text("{")
    with pytest.raises(DatasetError, match=f"{vid}_manual.json"):
        SAVDataset(tmp_path).obj_ids(0)
    path.write_text('{"video_height": 24}')
    with pytest.raises(DatasetError, match=rf"{vid}_manual\.json.*video_width"):
        SAVDataset(tmp_path).obj_ids(0)
    with pytest.raises(DatasetError, match="auto"):
        SAVDataset(tmp_path, annotation="auto")


# ---------------------------------------------------------------- SA-1B


def test_sa1b_image_as_one_frame_video(tmp_path: Path) -> None:
    name, lab = fx.make_sa1b(tmp_path)
    ds = SA1BDataset(tmp_path)
    assert len(ds) == 1 and ds.video_name(0) == name and ds.num_frames(0) == 1
    assert ds.obj_ids(0) == [3, 7, 11]
    m = ds.masks(0, 0)
    assert np.array_equal(m[1], lab == 1) and np.array_equal(m[0], (lab == 2) | (lab == 3))
    assert np.array_equal(m[2], lab == 3)
    assert np.array_equal(ds.frame(0, 0), jpeg(tmp_path / "sa_1.jpg"))
    assert SA1BDataset(tmp_path, max_objects=2).obj_ids(0) == [3, 7]  # the two largest
    rand = [SA1BDataset(tmp_path, max_objects=2, selection="random", seed=s).obj_ids(0) for s in range(8)]
    assert all(len(r) == 2 for r in rand) and len({tuple(r) for r in rand}) > 1
    assert rand[5] == SA1BDataset(tmp_path, max_objects=2, selection="random", seed=5).obj_ids(0)
    (tmp_path / "sa_1.json").unlink()
    with pytest.raises(DatasetError, match="sa_1.json"):
        SA1BDataset(tmp_path).masks(0, 0)


def test_sa1b_pseudo_video(tmp_path: Path) -> None:
    fx.make_sa1b(tmp_path)
    src = SA1BDataset(tmp_path)
    pv = SA1BPseudoVideo(src, num_frames=6, seed=1)
    assert pv.num_frames(0) == 6 and pv.obj_ids(0) == [3, 7, 11]
    clip = pv.clip(0, range(6))
    assert np.array_equal(clip.frames[0], src.frame(0, 0))
    assert np.array_equal(clip.masks[0], src.masks(0, 0))
    assert clip.annotated.all() and clip.masks.dtype == bool
    assert not np.array_equal(clip.masks[5], clip.masks[0])  # it moves
    # image and masks move together: pixels under object 7's mask keep its colour
    for t in range(6):
        sel = clip.masks[t, 1]
        if sel.sum() > 4:
            assert np.abs(clip.frames[t][sel].astype(int) - fx.OBJ_COLOURS[1]).mean() < 60
    motion = pv.motion(0)
    assert np.allclose(motion[0], 0) and (np.abs(motion) <= pv.bounds + 1e-9).all()
    again = SA1BPseudoVideo(SA1BDataset(tmp_path), num_frames=6, seed=1).clip(0, range(6))
    assert np.array_equal(again.frames, clip.frames) and np.array_equal(again.masks, clip.masks)
    other = SA1BPseudoVideo(src, num_frames=6, seed=2).clip(0, range(6))
    assert not np.array_equal(other.frames, clip.frames)
    assert np.array_equal(pv.frame(0, 3), clip.frames[3])
    # through the registry, the seed also drives a random choice of masks
    built = make_dataset("sa1b_pseudo", str(tmp_path), seed=5, selection="random", max_objects=2)
    assert built.seed == 5 and built.dataset.seed == 5
    assert built.obj_ids(0) == SA1BDataset(tmp_path, max_objects=2, selection="random", seed=5).obj_ids(0)


# ---------------------------------------------------------------- clips


class ToyVideos(VideoDataset):
    """In-memory videos drawn like the fixtures: object k moves right; object 2 appears at
    frame ``late`` (so it is not visible on earlier frames)."""

    def __init__(self, n_videos: int = 3, n_frames: int = 12, late: int = 6) -> None:
        self.n_videos, self.n, self.late = n_videos, n_frames, late

    def __len__(self) -> int:
        return self.n_videos

    def video_name(self, index: int) -> str:
        return f"toy{index}"

    def num_frames(self, index: int) -> int:
        return self.n

    def obj_ids(self, index: int) -> List[int]:
        return [1, 2, 3]

    def _lab(self, t: int) -> np.ndarray:
        return fx.labels_at(t % 12, [1, 3] + ([2] if t >= self.late else []))

    def frame(self, index: int, t: int) -> np.ndarray:
        return fx.paint(self._lab(t))

    def masks(self, index: int, t: int) -> np.ndarray:
        return self._lab(t)[None] == np.array([1, 2, 3])[:, None, None]


def same(a: TrainClip, b: TrainClip) -> bool:
    return all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("frames", "masks", "annotated", "obj_ids", "frame_indices")
    )


def test_clip_determinism_and_epochs() -> None:
    def make() -> ClipDataset:
        return ClipDataset(
            ToyVideos(),
            num_frames=4,
            stride=(1, 3),
            reverse_prob=0.5,
            max_objects=2,
            seed=7,
            augment=ClipAugment(size=(16, 16)),
        )

    a, b = make(), make()
    for i in range(len(a)):
        assert same(a[i], b[i])
    c = a[1]
    assert c.frames.shape == (4, 3, 16, 16) and c.frames.dtype == torch.uint8
    assert c.masks.dtype == torch.bool and c.masks.shape[:2] == (4, len(c.obj_ids)) <= (4, 2)
    epoch1 = [a[len(a) + i] for i in range(len(a))]
    b.set_epoch(1)
    assert all(same(epoch1[i], b[i]) for i in range(len(a)))
    assert not all(same(epoch1[i], a[i]) for i in range(len(a)))


def test_clip_reverse_and_first_frame_visibility() -> None:
    toy = ToyVideos(late=6)
    ds = ClipDataset(toy, num_frames=3, stride=2, reverse_prob=1.0, max_objects=3, seed=0)
    fwd = ClipDataset(toy, num_frames=3, stride=2, reverse_prob=0.0, max_objects=3, seed=0)
    for epoch in range(6):
        ds.set_epoch(epoch)
        fwd.set_epoch(epoch)
        for i in range(len(ds)):
            c, f = ds[i], fwd[i]
            idx = c.frame_indices.tolist()
            assert idx == sorted(idx, reverse=True) and idx[0] - idx[1] == 2
            assert (f.frame_indices.diff() == 2).all()
            for clip in (c, f):
                assert clip.masks[0].flatten(1).any(1).all()  # every object visible on frame 0
                raw = toy.clip(clip.video_index, clip.frame_indices.tolist())
                assert torch.equal(clip.frames, torch.from_numpy(raw.frames).permute(0, 3, 1, 2))
            if 2 in f.obj_ids.tolist():
                assert f.frame_indices[0] >= 6


def test_augmentation_is_consistent_across_frames_and_masks() -> None:
    aug = ClipAugment(size=(20, 24), hflip_prob=1.0, crop_scale=(0.6, 0.9), hue=0.0)
    ds = ClipDataset(ToyVideos(late=0), num_frames=4, max_objects=3, seed=3, augment=aug)
    for i in range(len(ds)):
        c = ds[i]
        assert c.frames.shape == (4, 3, 20, 24)
        frames = c.frames.permute(0, 2, 3, 1).numpy().astype(int)
        for t in range(4):
            for k, obj in enumerate(c.obj_ids.tolist()):
                m = c.masks[t, k].numpy()
                # interior only: resampling blends colours across the object's boundary
                sel = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
                sel = np.pad(sel, 1)
                if not sel.any():
                    continue
                colour = np.array(fx.OBJ_COLOURS[obj])
                # the dominant channels of the object's colour stay dominant under jitter
                px = frames[t][sel]
                assert (px[:, colour > 0].min(1) > px[:, colour == 0].max(1) + 50).all()
    # flip alone: compare with the unflipped clip exactly
    flip = ClipDataset(
        ToyVideos(),
        num_frames=2,
        seed=1,
        augment=ClipAugment(hflip_prob=1.0, brightness=0, contrast=0, saturation=0, hue=0),
    )
    plain = ClipDataset(ToyVideos(), num_frames=2, seed=1)
    f, p = flip[0], plain[0]
    assert torch.equal(f.frame_indices, p.frame_indices)
    assert torch.equal(f.masks, p.masks.flip(-1)) and torch.equal(f.frames, p.frames.flip(-1))


def test_clips_from_sparse_annotations_start_on_annotated_frames(tmp_path: Path) -> None:
    fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=1)
    sav = SAVDataset(tmp_path)
    ds = ClipDataset(sav, num_frames=3, stride=1, reverse_prob=0.5, seed=0, length=10)
    for i in range(10):
        c = ds[i]
        assert bool(c.annotated[0]) and int(c.frame_indices[0]) % 4 == 0


def test_collate_and_mixed_dataset() -> None:
    a = ClipDataset(ToyVideos(late=0), num_frames=3, max_objects=3, seed=0)
    b = ClipDataset(ToyVideos(late=100), num_frames=3, max_objects=1, seed=0)
    batch = collate_clips([a[0], b[0]])
    assert batch.frames.shape == (2, 3, 3, fx.H, fx.W)
    assert batch.masks.shape == (2, 3, 3, fx.H, fx.W)
    assert batch.obj_valid.tolist() == [[True, True, True], [True, False, False]]
    assert batch.obj_ids[1, 1:].tolist() == [-1, -1] and not batch.masks[1, :, 1:].any()
    loader = torch.utils.data.DataLoader(a, batch_size=3, collate_fn=collate_clips)
    assert next(iter(loader)).frames.shape[0] == 3
    mix = MixedDataset([a, b], weights=[0.0, 1.0], length=5, seed=4)
    assert all(mix[i].obj_ids.numel() == 1 for i in range(5))
    mix2 = MixedDataset([a, b], weights=[1.0, 1.0], length=20, seed=4)
    again = MixedDataset([a, b], weights=[1.0, 1.0], length=20, seed=4)
    assert all(same(mix2[i], again[i]) for i in range(20))
    assert {mix2[i].obj_ids.numel() for i in range(20)} == {1, 3}  # both datasets drawn
    with pytest.raises(ValueError):
        MixedDataset([a, b], weights=[1.0], length=5)
    with pytest.raises(ValueError, match="frame shapes"):
        collate_clips([a[0], ClipDataset(ToyVideos(), num_frames=2)[0]])
