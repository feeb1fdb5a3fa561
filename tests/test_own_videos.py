"""One's own videos: the folder layout, COCO-style video JSON, and ``segment --format coco``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from own_videos import H, W, labels_at, make_video, paint, save_mask
from PIL import Image

from i2v.cli import main
from i2v.data.coco_video import CocoVideoDataset, coco_video_json
from i2v.data.folder import FolderDataset
from i2v.data.registry import make_dataset
from i2v.errors import DatasetError
from i2v.io.masks import encode_rle, load_palette_png, save_palette_png


def _mean_colour(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return frame[mask].reshape(-1, 3).mean(axis=0)


# -- folder layout ------------------------------------------------------------------------------
def test_jpeg_frames_in_natural_order_with_palette_masks_and_unlabelled_frames(tmp_path: Path) -> None:
    names = [f"img_{t + 1}" for t in range(11)]  # img_10 sorts before img_2 by name, not naturally
    labels = make_video(tmp_path / "cat", n=11, names=names, annotated=[0, 5, 9])
    ds = FolderDataset(tmp_path)
    assert len(ds) == 1 and ds.video_name(0) == "cat" and ds.num_frames(0) == 11
    assert [ds.frame_stem(0, t) for t in range(11)] == names
    assert ds.obj_ids(0) == [1, 2]
    assert [t for t in range(11) if ds.is_annotated(0, t)] == [0, 5, 9]
    for t in (0, 9):  # frame 9 is img_10: its mask and its frame match only in natural order
        masks = ds.masks(0, t)
        assert masks.shape == (2, H, W)
        assert np.array_equal(masks[0], labels[t] == 1) and np.array_equal(masks[1], labels[t] == 2)
        assert np.allclose(_mean_colour(ds.frame(0, t), masks[0]), (230, 40, 40), atol=12)
    assert not ds.masks(0, 3).any()  # unlabelled: no ground truth, flagged by is_annotated


@pytest.mark.parametrize("kind", ["gray", "binary"])
def test_png_frames_with_grayscale_or_binary_masks_in_annotations(tmp_path: Path, kind: str) -> None:
    ids = (1, 2) if kind == "gray" else (1,)
    labels = make_video(tmp_path / "train" / "dog", n=4, ext=".png", kind=kind, ids=ids, mask_dir="Annotations")
    ds = make_dataset("folder", str(tmp_path), "train")  # the split folder is used when it exists
    assert ds.obj_ids(0) == list(ids)
    masks = ds.masks(0, 2)
    assert masks.shape == (len(ids), H, W)
    for n, k in enumerate(ids):
        assert np.array_equal(masks[n], labels[2] == k)
    assert np.array_equal(ds.frame(0, 2), paint(labels[2]))  # PNG frames are lossless
    assert not ds.void_mask(0, 2).any()  # 255 is the object in a 0/255 mask, not void


def test_a_video_file_instead_of_frames(tmp_path: Path) -> None:
    labels = make_video(tmp_path / "street", n=5, video_file=True, annotated=[0, 3])
    ds = FolderDataset(tmp_path)
    assert ds.num_frames(0) == 5 and ds.obj_ids(0) == [1, 2]
    assert [ds.is_annotated(0, t) for t in range(5)] == [True, False, False, True, False]
    masks = ds.masks(0, 3)
    assert np.array_equal(masks[1], labels[3] == 2)
    frame = ds.frame(0, 3)
    assert frame.shape == (H, W, 3)
    assert np.allclose(_mean_colour(frame, masks[1]), (40, 230, 40), atol=30)


def test_mask_of_another_size_is_refused_naming_the_file(tmp_path: Path) -> None:
    make_video(tmp_path / "cat", n=3)
    save_palette_png(tmp_path / "cat" / "masks" / "00001.png", np.zeros((H // 2, W), np.uint8))
    with pytest.raises(DatasetError, match=r"masks/00001.png is 56x20 \(WxH\) but the video's frames are 56x40"):
        FolderDataset(tmp_path).obj_ids(0)
    assert load_palette_png(tmp_path / "cat" / "masks" / "00001.png").shape == (H // 2, W)  # left intact


def test_first_annotated_frame_without_an_object_is_refused(tmp_path: Path) -> None:
    make_video(tmp_path / "cat", n=3, annotated=[1, 2])
    save_palette_png(tmp_path / "cat" / "masks" / "00000.png", np.zeros((H, W), np.uint8))
    with pytest.raises(DatasetError, match="first annotated frame of 'cat' .*has no object"):
        FolderDataset(tmp_path).num_frames(0)


def test_ids_that_change_meaning_are_refused(tmp_path: Path) -> None:
    make_video(tmp_path / "mixed", n=3)
    save_mask(tmp_path / "mixed" / "masks" / "00002.png", labels_at(2), "binary")
    with pytest.raises(DatasetError, match="ids change meaning.*00002.png is a 0/255 mask"):
        FolderDataset(tmp_path).obj_ids(0)

    make_video(tmp_path / "b" / "recoloured", n=3)
    # a tool that numbers colours per frame: id 1 is red on frames 0-1 but green on frame 2
    im = Image.fromarray(labels_at(2), mode="P")
    im.putpalette([0, 0, 0, 0, 128, 0, 128, 0, 0] + [0] * (3 * 253))
    im.save(tmp_path / "b" / "recoloured" / "masks" / "00002.png")
    with pytest.raises(DatasetError, match="id 1 is drawn in colour"):
        FolderDataset(tmp_path / "b").obj_ids(0)


def test_layout_mistakes_say_what_to_do(tmp_path: Path) -> None:
    make_video(tmp_path / "a" / "cat", n=3)
    (tmp_path / "a" / "cat" / "masks" / "00000.png").rename(tmp_path / "a" / "cat" / "masks" / "first.png")
    with pytest.raises(DatasetError, match="first.png matches no frame.*e.g. 00000.png"):
        FolderDataset(tmp_path / "a").obj_ids(0)
    make_video(tmp_path / "b" / "cat", n=2, annotated=[])
    with pytest.raises(DatasetError, match="no masks/ \\(or Annotations/\\) folder"):
        FolderDataset(tmp_path / "b").obj_ids(0)
    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetError, match="holds no video folders"):
        FolderDataset(tmp_path / "c")


# -- COCO video JSON ------------------------------------------------------------------------------
def _polygon(lab: np.ndarray, k: int) -> list:
    ys, xs = np.nonzero(lab == k)  # boxes: the polygon of their pixel corners
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return [[float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]]


def test_coco_video_json_with_rle_and_polygons(tmp_path: Path) -> None:
    n = 3
    labels = {t: labels_at(t) for t in range(n)}
    (tmp_path / "frames" / "cat").mkdir(parents=True)
    for t in range(n):
        Image.fromarray(paint(labels[t])).save(tmp_path / "frames" / "cat" / f"{t:05d}.png")
    rles = []
    for t in range(n):
        flat = (labels[t] == 1).flatten(order="F").astype(np.uint8)
        runs, value, count = [], 0, 0
        for v in flat:
            if v != value:
                runs.append(count)
                value, count = v, 0
            count += 1
        runs.append(count)
        rles.append({"size": [H, W], "counts": runs})
    rles[1] = encode_rle(labels[1] == 1)  # compressed counts too
    data = {
        "videos": [{"id": 5, "file_names": [f"cat/{t:05d}.png" for t in range(n)], "height": H, "width": W}],
        "annotations": [
            {"id": 11, "video_id": 5, "category_id": 3, "segmentations": rles},
            {
                "id": 12,
                "video_id": 5,
                "category_id": 4,
                "segmentations": [_polygon(labels[0], 2), None, _polygon(labels[2], 2)],
            },
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 4, "name": "toy"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    ds = make_dataset("coco", str(tmp_path / "frames"), annotations=str(path))
    assert isinstance(ds, CocoVideoDataset)
    assert len(ds) == 1 and ds.video_name(0) == "cat" and ds.obj_ids(0) == [11, 12]
    assert ds.categories(0) == {11: 3, 12: 4}
    for t in range(n):
        masks = ds.masks(0, t)
        assert np.array_equal(masks[0], labels[t] == 1)
        assert np.array_equal(masks[1], labels[t] == 2 if t != 1 else np.zeros((H, W), bool))
    assert np.array_equal(ds.frame(0, 2), paint(labels[2]))

    data["annotations"][1]["segmentations"] = [None]
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="one entry \\(or null\\) per frame of video 5: 3, got 1"):
        CocoVideoDataset(path, tmp_path / "frames")


def test_coco_writer_and_reader_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = {3: rng.random((4, H, W)) > 0.6, 7: np.zeros((4, H, W), bool)}
    masks[7][2, 5:9, 10:20] = True
    data = coco_video_json(
        [{"name": "v", "file_names": [f"v/{t}.jpg" for t in range(4)], "height": H, "width": W, "masks": masks}]
    )
    path = tmp_path / "out.json"
    path.write_text(json.dumps(data))
    ds = CocoVideoDataset(path, tmp_path)
    assert ds.obj_ids(0) == [3, 7]
    for t in range(4):
        assert np.array_equal(ds.masks(0, t), np.stack([masks[3][t], masks[7][t]]))
    ann7 = next(a for a in data["annotations"] if a["id"] == 7)
    assert ann7["segmentations"][0] is None and ann7["bboxes"][2] == [10.0, 5.0, 10.0, 4.0] and ann7["areas"][2] == 40


def test_segment_format_coco_round_trip(tmp_path: Path) -> None:
    video = tmp_path / "frames" / "clip"
    labels = make_video(video, n=4, ext=".png", annotated=[])
    save_palette_png(tmp_path / "prompt.png", (labels[0] == 1).astype(np.uint8))
    common = [
        str(video),
        "--frame",
        "0",
        "--obj-id",
        "4",
        "--mask",
        str(tmp_path / "prompt.png"),
        "--obj-id",
        "9",
        "--box",
        "8,16,22,26",
        "--device",
        "cpu",
    ]
    assert main(["segment", *common, "--out", str(tmp_path / "png"), "--format", "png"]) == 0
    assert main(["segment", *common, "--out", str(tmp_path / "coco"), "--format", "coco"]) == 0
    path = tmp_path / "coco" / "instances.json"
    data = json.loads(path.read_text())
    ds = CocoVideoDataset(path, tmp_path / "frames")  # file_names are relative to the folder's parent
    assert ds.obj_ids(0) == [4, 9] and ds.num_frames(0) == 4
    assert np.array_equal(ds.frame(0, 1), paint(labels[1]))
    for t in range(4):
        label_map = load_palette_png(tmp_path / "png" / f"{t:05d}.png")
        masks = ds.masks(0, t)
        # the palette PNG paints object 9 over 4 where they overlap; the JSON keeps both whole
        assert np.array_equal(masks[1], label_map == 9)
        assert np.array_equal(masks[0] & ~masks[1], label_map == 4)
    assert ds.masks(0, 0)[0].any()
    for ann in data["annotations"]:  # pycocotools reads every segmentation and agrees on boxes and areas
        for seg, box, area in zip(ann["segmentations"], ann["bboxes"], ann["areas"]):
            if seg is None:
                continue
            rle = {"size": seg["size"], "counts": seg["counts"].encode()}
            assert mask_utils.decode(rle).shape == (H, W)
            assert np.allclose(mask_utils.toBbox(rle), box) and int(mask_utils.area(rle)) == area
