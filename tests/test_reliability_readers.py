"""Damaged dataset files give a DatasetError that names the file and says what to do, never a
numpy / PIL / pycocotools exception and never silently wrong data (issue 18, items 6 and 13).

Every dataset here is written by the test in its real on-disk format (tests/fixtures_datasets.py),
then damaged the way a bad download, a half-finished frame extraction or a hand-made annotation
would damage it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import fixtures_datasets as fx
import numpy as np
import pytest
from PIL import Image

from i2v.data.davis import DavisDataset, YouTubeVOSDataset
from i2v.data.registry import make_dataset
from i2v.data.sa1b import SA1BDataset
from i2v.data.sav import SAVDataset
from i2v.errors import ConfigError, DatasetError, FrameIndexError
from i2v.train.config import load_train_config

REPO = Path(__file__).resolve().parent.parent
HUGE = 2**40


def _read_all(ds: Any, index: int = 0) -> None:
    """Everything a training or evaluation run reads of video ``index``."""
    n = ds.num_frames(index)
    ds.obj_ids(index)
    ds.clip(index, range(n))


# ---------------------------------------------------------------- SA-V masklet JSON


def _sav_json(tmp_path: Path) -> Path:
    vid = fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=4)
    return tmp_path / "sav_train" / "sav_000" / f"{vid}_manual.json"


def _set(key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    return lambda ann: ann.__setitem__(key, value)


SAV_DAMAGE = {
    "masklet not a list": (_set("masklet", 5), "masklet"),
    "masklet empty": (_set("masklet", []), "'masklet' is empty"),
    "frame entry not a list": (lambda a: a["masklet"].__setitem__(1, "abc"), r"masklet\[1\]\) holds a str"),
    "frame entry empty": (lambda a: a["masklet"].__setitem__(0, []), r"masklet\[0\]\) holds 0 entries"),
    "frame entry too long": (lambda a: a["masklet"][2].append(None), r"masklet\[2\]\) holds 3 entries"),
    "more ids than masks": (_set("masklet_id", [0, 1, 2]), "expected a list of 3 RLEs"),
    "repeated ids": (_set("masklet_id", [4, 4]), r"masklet_id \[4, 4\] repeats an id"),
    "negative height": (_set("video_height", -24), r"is -24x32, expected sides in 1\.\.65535"),
    "zero width": (_set("video_width", 0), r"is 24x0"),
    "huge height": (_set("video_height", HUGE), f"is {HUGE}x32"),
    "height not a number": (_set("video_height", "tall"), "lacks or mangles a field"),
    "negative frame count": (_set("video_frame_count", -3), "video_frame_count is -3"),
    "more annotated frames than frames": (
        lambda a: a["masklet"].extend(a["masklet"][:2]),
        "5 annotated frames, the last at frame 16, but video_frame_count is 9",
    ),
    "not an object": (lambda a: (a.clear(), a.update({"masklet": 1})), "lacks or mangles a field"),
    "rle not a dict": (lambda a: a["masklet"][0].__setitem__(0, 7), "masklet 0 of frame 0 is not a valid COCO RLE"),
    "rle bad counts": (
        lambda a: a["masklet"][1][1].__setitem__("counts", "!!!!"),
        "masklet 1 of frame 4 is not a valid COCO RLE.*not a valid COCO compressed string",
    ),
    "rle negative size": (lambda a: a["masklet"][0][0].__setitem__("size", [-24, -32]), "must be non-negative"),
    "rle size of another frame": (
        lambda a: a["masklet"][0].__setitem__(0, fx.rle(np.zeros((32, 24), bool))),
        r"decodes to shape \(32, 24\), expected the image size \(24, 32\)",
    ),
    "rle short of its size": (
        lambda a: a["masklet"][0].__setitem__(
            0, {"size": [24, 32], "counts": fx.rle(np.zeros((24, 31), bool))["counts"]}
        ),
        "cover 744 pixels",
    ),
}


@pytest.mark.parametrize("case", list(SAV_DAMAGE))
def test_a_malformed_sav_masklet_file_is_a_dataset_error_naming_it(tmp_path: Path, case: str) -> None:
    damage, message = SAV_DAMAGE[case]
    path = _sav_json(tmp_path)
    ann = json.loads(path.read_text())
    damage(ann)
    path.write_text(json.dumps(ann))
    ds = SAVDataset(tmp_path, split="sav_train")
    with pytest.raises(DatasetError, match=message) as info:
        _read_all(ds)
    assert path.name in str(info.value)


def test_the_undamaged_sav_fixture_reads_back_its_masks(tmp_path: Path) -> None:
    """The cases above fail because of their damage, not because the fixture is unreadable."""
    _sav_json(tmp_path)
    clip = SAVDataset(tmp_path, split="sav_train").clip(0, [0, 1, 2])
    for k, n in enumerate((0, 4, 8)):
        lab = fx.sav_labels(n)
        np.testing.assert_array_equal(clip.masks[k], np.stack([lab == 1, lab == 2]))


# ---------------------------------------------------------------- SA-V frames


def test_sav_train_extracted_frames_missing_an_annotated_jpeg_is_an_error(tmp_path: Path) -> None:
    vid = fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=4)
    (tmp_path / "sav_train" / "JPEGImages_24fps" / vid / "00004.jpg").unlink()
    for annotated_only in (False, True):  # was: the frame dropped, the video one frame shorter
        ds = SAVDataset(tmp_path, split="sav_train", annotated_only=annotated_only)
        with pytest.raises(
            DatasetError,
            match=r"00004\.jpg\) are missing from .*sav_000001.*Re-run the frame "
            r"extraction",
        ):
            ds.num_frames(0)


def test_sav_train_all_frames_extracted_missing_one_is_an_error(tmp_path: Path) -> None:
    vid = fx.make_sav_train(tmp_path, n_frames=9, jpeg_every=1)
    (tmp_path / "sav_train" / "JPEGImages_24fps" / vid / "00006.jpg").unlink()
    with pytest.raises(DatasetError, match=r"00006\.jpg"):
        SAVDataset(tmp_path, split="sav_train").num_frames(0)
    # and complete folders, of either kind, read as before
    fx.write_jpeg(tmp_path / "sav_train" / "JPEGImages_24fps" / vid / "00006.jpg", fx.paint(fx.sav_labels(6)))
    assert SAVDataset(tmp_path, split="sav_train").num_frames(0) == 9
    assert SAVDataset(tmp_path, split="sav_train", annotated_only=True).num_frames(0) == 3


@pytest.mark.parametrize("lost", ["00004.jpg", "00003.jpg"])  # annotated, and not
def test_sav_val_frame_without_its_jpeg_is_an_error(tmp_path: Path, lost: str) -> None:
    vid = fx.make_sav_val(tmp_path, n_frames=9)
    folder = tmp_path / "sav_val" / "JPEGImages_24fps" / vid
    (folder / lost).unlink()
    with pytest.raises(DatasetError, match=rf"{lost} are missing from .*{vid}.*Restore them"):
        SAVDataset(tmp_path, split="sav_val").num_frames(0)


def test_sav_val_mask_without_a_frame_is_an_error(tmp_path: Path) -> None:
    vid = fx.make_sav_val(tmp_path, n_frames=9)
    extra = tmp_path / "sav_val" / "Annotations_6fps" / vid / "000" / "00012.png"
    fx.write_palette_png(extra, np.ones((fx.H, fx.W), np.uint8))
    with pytest.raises(DatasetError, match=r"00012\.png annotates frame 12 but .* has no 00012\.jpg"):
        SAVDataset(tmp_path, split="sav_val").num_frames(0)


def test_sav_val_frame_of_another_size_mid_video_names_the_file(tmp_path: Path) -> None:
    vid = fx.make_sav_val(tmp_path, n_frames=9)
    bad = tmp_path / "sav_val" / "JPEGImages_24fps" / vid / "00005.jpg"
    fx.write_jpeg(bad, np.zeros((30, 30, 3), np.uint8))
    ds = SAVDataset(tmp_path, split="sav_val")
    with pytest.raises(
        DatasetError,
        match=rf"{bad.name} is 30x30 but the video's first frame 00000.jpg is "
        rf"{fx.W}x{fx.H}",
    ):
        ds.clip(0, range(9))
    ds.clip(0, range(5))  # the frames before it are fine


def test_sav_reader_options_are_checked() -> None:
    with pytest.raises(DatasetError, match="annotation_every must be an integer >= 1"):
        SAVDataset("unused", annotation_every=0)
    with pytest.raises(DatasetError, match="annotation must be 'manual' or 'auto'"):
        SAVDataset("unused", annotation="automatic")


# ---------------------------------------------------------------- DAVIS / YouTube-VOS


def test_davis_frame_of_another_size_mid_video_names_the_file(tmp_path: Path) -> None:
    fx.make_davis(tmp_path)
    bad = tmp_path / "JPEGImages" / "480p" / "seqA" / "00002.jpg"
    fx.write_jpeg(bad, np.zeros((30, 40, 3), np.uint8))
    ds = DavisDataset(tmp_path)
    with pytest.raises(
        DatasetError,
        match=rf"Frame .*seqA.{bad.name} is 40x30 but the video's first frame "
        rf"00000\.jpg is {fx.W}x{fx.H}.*resize",
    ):
        ds.clip(0, range(5))  # was: numpy "all input arrays must have the same shape"
    with pytest.raises(DatasetError, match=bad.name):
        ds.frame(0, 2)  # was: returned silently at its own size


def test_ytvos_frame_of_another_size_mid_video_names_the_file(tmp_path: Path) -> None:
    fx.make_ytvos(tmp_path)
    bad = tmp_path / "valid" / "JPEGImages" / "0a1b2c3d4e" / "00015.jpg"
    fx.write_jpeg(bad, np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(DatasetError, match=rf"{bad.name} is 40x30"):
        YouTubeVOSDataset(tmp_path).clip(0, range(5))


def test_davis_annotation_of_another_size_says_what_to_do(tmp_path: Path) -> None:
    fx.make_davis(tmp_path)
    fx.write_palette_png(tmp_path / "Annotations" / "480p" / "seqA" / "00003.png", np.zeros((30, 40), np.uint8))
    with pytest.raises(DatasetError, match=r"00003\.png is 40x30 but the video's frames are 32x24.*Restore"):
        DavisDataset(tmp_path).clip(0, range(5))


@pytest.mark.parametrize("year", [2017, 2016])
def test_davis_first_frame_annotation_with_no_object_is_an_error(tmp_path: Path, year: int) -> None:
    fx.make_davis(tmp_path)
    (tmp_path / "ImageSets" / "2016").mkdir()
    (tmp_path / "ImageSets" / "2016" / "val.txt").write_text("seqA\nseqB\n")
    first = tmp_path / "Annotations" / "480p" / "seqB" / "00000.png"
    fx.write_palette_png(first, np.zeros((fx.H, fx.W), np.uint8))
    ds = DavisDataset(tmp_path, year=year)
    assert ds.obj_ids(0) == ([1] if year == 2016 else [1, 2])  # the other sequence is untouched
    with pytest.raises(
        DatasetError,
        match=rf"Video 'seqB' has no object: .*{first.name} holds only background"
        r".*NaN.*remove 'seqB' from the split",
    ):
        ds.obj_ids(1)  # was: [] (2017) or an empty object 1 (2016), scored NaN


def test_ytvos_video_whose_annotations_hold_no_object_is_an_error(tmp_path: Path) -> None:
    fx.make_ytvos(tmp_path, meta=False)
    for png in (tmp_path / "valid" / "Annotations" / "0a1b2c3d4e").glob("*.png"):
        fx.write_palette_png(png, np.zeros((fx.H, fx.W), np.uint8))
    with pytest.raises(DatasetError, match="none of its 2 annotations in .*0a1b2c3d4e holds only background"):
        YouTubeVOSDataset(tmp_path).obj_ids(0)


def _write_binary(path: Path, mask: np.ndarray, mode: str) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").convert(mode).save(path)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_davis_binary_0_255_annotations_are_one_object_with_id_1(tmp_path: Path, mode: str) -> None:
    labs = fx.make_davis(tmp_path)
    for t, lab in enumerate(labs["seqB"]):  # seqB has no void pixels
        _write_binary(tmp_path / "Annotations" / "480p" / "seqB" / f"{t:05d}.png", lab == 1, mode)
    ds = DavisDataset(tmp_path)
    assert ds.obj_ids(1) == [1]  # was: [] (every pixel "void")
    clip = ds.clip(1, range(5))
    np.testing.assert_array_equal(clip.masks[:, 0], np.stack([lab == 1 for lab in labs["seqB"]]))
    assert not ds.void_mask(1, 3).any()
    assert ds.obj_ids(0) == [1, 2]  # a palette sequence beside it keeps its ids and its void
    assert ds.void_mask(0, 0).any()


def test_davis_binary_video_with_a_palette_frame_is_an_error(tmp_path: Path) -> None:
    labs = fx.make_davis(tmp_path)
    _write_binary(tmp_path / "Annotations" / "480p" / "seqB" / "00000.png", labs["seqB"][0] == 1, "L")
    with pytest.raises(
        DatasetError,
        match=r"00001\.png holds ids \[1, 3\] but the video's other annotations "
        r"are 0/255 masks",
    ):
        DavisDataset(tmp_path).masks(1, 1)


def test_davis_lost_frame_mid_video_is_an_error_not_a_shorter_video(tmp_path: Path) -> None:
    fx.make_davis(tmp_path)
    (tmp_path / "JPEGImages" / "480p" / "seqA" / "00002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"'seqA': frame 00002\.jpg is missing from .*Restore"):
        DavisDataset(tmp_path).num_frames(0)  # was: 4 frames, later ones shifted against their masks


def test_ytvos_annotation_without_its_frame_is_an_error(tmp_path: Path) -> None:
    fx.make_ytvos(tmp_path)
    (tmp_path / "valid" / "JPEGImages" / "0a1b2c3d4e" / "00010.jpg").unlink()
    with pytest.raises(DatasetError, match=r"00010\.png has no frame 00010\.jpg in .*0a1b2c3d4e"):
        YouTubeVOSDataset(tmp_path).num_frames(0)


# ---------------------------------------------------------------- SA-1B


SA1B_DAMAGE = {
    "negative height": (lambda d: d["image"].__setitem__("height", -24), r"is -24x32, expected sides in 1\.\.65535"),
    "huge width": (lambda d: d["image"].__setitem__("width", HUGE), f"is 24x{HUGE}"),
    "annotation not an object": (lambda d: d["annotations"].__setitem__(1, 5), "lacks or mangles a field"),
    "repeated ids": (lambda d: d["annotations"][1].__setitem__("id", 7), r"annotation id\(s\) \[7\] occur more"),
    "polygon segmentation": (
        lambda d: d["annotations"][0].__setitem__("segmentation", [[1, 2, 3, 4, 5, 6]]),
        "object 7 is not a valid COCO RLE",
    ),
}


@pytest.mark.parametrize("case", list(SA1B_DAMAGE))
def test_a_malformed_sa1b_annotation_is_a_dataset_error_naming_it(tmp_path: Path, case: str) -> None:
    damage, message = SA1B_DAMAGE[case]
    fx.make_sa1b(tmp_path)
    path = tmp_path / "sa_1.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message) as info:
        _read_all(SA1BDataset(tmp_path))
    assert path.name in str(info.value)


def test_sa1b_frame_outside_its_one_frame_is_a_frame_index_error(tmp_path: Path) -> None:
    fx.make_sa1b(tmp_path)
    with pytest.raises(FrameIndexError, match="frame 1 out of range for a 1-frame video"):
        SA1BDataset(tmp_path).masks(0, 1)


# ---------------------------------------------------------------- registry and config


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("davis", {"yaer": 2017}, "dataset 'davis' has no option 'yaer'"),
        ("sav", {"annotated": True}, "dataset 'sav' has no option 'annotated'"),
        ("davis", {"year": 2018}, "DAVIS year must be 2016 or 2017"),
        ("sa1b", {"max_objects": 0}, "max_objects must be >= 1"),
        ("sa1b_pseudo", {"num_frames": 0}, "num_frames must be >= 1"),
    ],
)
def test_registry_options_are_dataset_errors(tmp_path: Path, kind: str, options: Dict[str, Any], message: str) -> None:
    fx.make_davis(tmp_path / "davis")
    fx.make_sa1b(tmp_path / "sa1b")
    (tmp_path / "sav" / "sav_val").mkdir(parents=True)
    root = tmp_path / ("sa1b" if kind.startswith("sa1b") else kind)
    with pytest.raises(DatasetError, match=message):
        make_dataset(kind, str(root), **options)


@pytest.mark.parametrize(
    "override, message",
    [
        (f"model.memory_encoder.key_dim={HUGE}", "unknown key 'memory_encoder'"),
        (f"model.memory_readout.refine_dim={HUGE}", r"refine_dim must be in \[0, 1024\]"),
        (f"model.upgrader.dim={HUGE}", f"model.upgrader.dim is {HUGE}; at most 8192"),
        (f"clip.num_frames={HUGE}", f"clip.num_frames is {HUGE}; at most 1024"),
    ],
)
def test_absurd_model_sizes_are_config_errors_before_any_allocation(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_train_config(REPO / "configs" / "train_tiny_synthetic.yaml", [override])
