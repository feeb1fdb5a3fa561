"""``sam-i2v eval --save-masks``: submission PNGs for the DAVIS / YouTube-VOS servers, and no
scores on splits whose ground truth only the challenge server holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
from fixtures_datasets import H, W, make_davis, make_ytvos
from PIL import Image

import i2v.eval.vos as vos
from i2v.build import build_sam_i2v
from i2v.cli import main
from i2v.data.davis import DavisDataset, MOSEDataset, YouTubeVOSDataset
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.eval.vos import segment_video, write_prediction_pngs
from i2v.io.masks import davis_palette, load_palette_png, masks_to_label_map
from i2v.video_predictor import I2VVideoPredictor

YT_VID = "0a1b2c3d4e"
YT_STEMS = ["00000", "00005", "00010", "00015", "00020"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _eval(root: Path, kind: str, split: str, sam: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "eval",
            "--dataset",
            kind,
            "--root",
            str(root),
            "--split",
            split,
            "--sam-checkpoint",
            str(sam),
            "--device",
            "cpu",
            "--out",
            str(out),
            *extra,
        ]
    )


def _check_png(path: Path) -> np.ndarray:
    """Open a written PNG: palette mode, the DAVIS palette, the fixture's frame size."""
    with Image.open(path) as im:
        assert im.mode == "P"
        assert im.size == (W, H)
        palette = np.frombuffer(bytes(im.getpalette()), dtype=np.uint8).reshape(-1, 3)
    assert np.array_equal(palette[:256], davis_palette()[: len(palette)])
    return load_palette_png(path)


def make_davis_test_dev(root: Path) -> None:
    """DAVIS 2017 test-dev: the DAVIS fixture with only the first frame's PNG of each sequence."""
    make_davis(root)
    for png in (root / "Annotations" / "480p").glob("*/*.png"):
        if png.stem != "00000":
            png.unlink()
    (root / "ImageSets" / "2017" / "test-dev.txt").write_text("seqA\nseqB\n")


def test_readers_say_which_splits_have_ground_truth(tmp_path: Path) -> None:
    make_davis_test_dev(tmp_path / "davis")
    assert DavisDataset(tmp_path / "davis", "val").has_full_ground_truth
    assert not DavisDataset(tmp_path / "davis", "test-dev").has_full_ground_truth
    for split, full in (("valid", False), ("train", True)):
        make_ytvos(tmp_path / "yt", split=split)
        assert YouTubeVOSDataset(tmp_path / "yt", split).has_full_ground_truth is full
        make_ytvos(tmp_path / "mose", split=split)
        assert MOSEDataset(tmp_path / "mose", split).has_full_ground_truth is full
    synthetic = SyntheticVideoDataset("val", 1, config=SyntheticConfig(height=32, width=32, num_frames=2))
    assert synthetic.has_full_ground_truth and synthetic.frame_stem(0, 1) == "00001"
    assert YouTubeVOSDataset(tmp_path / "yt", "valid").frame_stem(0, 2) == "00010"


def test_write_prediction_pngs_layout_and_overlap_rule(tmp_path: Path) -> None:
    make_ytvos(tmp_path / "yt")
    ds = YouTubeVOSDataset(tmp_path / "yt", "valid")
    preds = np.zeros((5, 2, H, W), dtype=bool)
    preds[:, 0, :10] = True  # object 1: top rows
    preds[:, 1, 5:15] = True  # object 2 overlaps rows 5..9: the higher id wins there
    folder = write_prediction_pngs(tmp_path / "sub", ds, 0, preds)
    assert folder == tmp_path / "sub" / YT_VID
    assert sorted(p.name for p in folder.iterdir()) == [f"{s}.png" for s in YT_STEMS]
    labels = _check_png(folder / "00015.png")
    assert (labels[:5] == 1).all() and (labels[5:15] == 2).all() and (labels[15:] == 0).all()
    with pytest.raises(ValueError, match="expected \\(5, 2, H, W\\)"):
        write_prediction_pngs(tmp_path / "sub", ds, 0, preds[:, :1])


def test_ytvos_valid_writes_the_predictors_masks(tmp_path: Path, tiny_sam_file: Path, capsys) -> None:
    root, sub = tmp_path / "yt", tmp_path / "submission" / "Annotations"
    make_ytvos(root, split="valid")
    code = _eval(root, "ytvos", "valid", tiny_sam_file, tmp_path / "eval", "--save-masks", str(sub))
    assert code == 0
    out = capsys.readouterr().out
    assert "J&F" not in out and not (tmp_path / "eval").exists()  # nothing scored
    assert str(sub) in out and "zip" in out and "challenge" in out

    assert sorted(p.name for p in sub.iterdir()) == [YT_VID]
    assert sorted(p.name for p in (sub / YT_VID).iterdir()) == [f"{s}.png" for s in YT_STEMS]
    written = np.stack([_check_png(sub / YT_VID / f"{s}.png") for s in YT_STEMS])

    # the same tiny model, run the way eval runs it, gives exactly these label maps
    ds = YouTubeVOSDataset(root, "valid")
    model = build_sam_i2v("tiny", None, str(tiny_sam_file), "cpu")
    preds, _ = segment_video(I2VVideoPredictor(model), ds, 0, "mask")
    expected = np.stack([masks_to_label_map(p, [1, 2]) for p in preds])
    assert np.array_equal(written, expected)
    assert set(np.unique(written)) <= {0, 1, 2}
    assert not (written[:2] == 2).any()  # object 2 is only prompted on 00010, where it appears
    assert (written[0] == 1).any() and (written[2] == 2).any()  # each object on its prompt frame


@pytest.mark.parametrize("kind, split", [("ytvos", "valid"), ("mose", "valid"), ("davis", "test-dev")])
def test_split_without_ground_truth_refuses_to_score(
    kind: str, split: str, tmp_path: Path, tiny_sam_file: Path, capsys
) -> None:
    root = tmp_path / "data"
    if kind == "davis":
        make_davis_test_dev(root)
    else:
        make_ytvos(root, split=split)
    assert _eval(root, kind, split, tiny_sam_file, tmp_path / "eval") == 2
    captured = capsys.readouterr()
    assert "J&F" not in captured.out
    assert "challenge server" in captured.err and "--save-masks DIR" in captured.err
    assert split in captured.err
    assert not (tmp_path / "eval").exists()


def test_davis_test_dev_writes_first_protocol_masks(tmp_path: Path, tiny_sam_file: Path, capsys) -> None:
    root, sub = tmp_path / "davis", tmp_path / "td"
    make_davis_test_dev(root)
    code = _eval(
        root,
        "davis",
        "test-dev",
        tiny_sam_file,
        tmp_path / "eval",
        "--save-masks",
        str(sub),
        "--baselines",
        "--protocol",
        "mask",
        "box",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "--baselines" in out and "ignored" in out and "DAVIS" in out and "zip" in out
    for seq, ids in (("seqA", {0, 1, 2}), ("seqB", {0, 1, 3})):
        names = sorted(p.name for p in (sub / seq).iterdir())
        assert names == [f"{t:05d}.png" for t in range(5)]
        # object 2 of seqB first appears on frame 2, after test-dev's only annotated frame
        assert set(np.unique([_check_png(sub / seq / n) for n in names])) <= ids


def test_split_with_ground_truth_still_scores_and_saves_once(
    tmp_path: Path, tiny_sam_file: Path, capsys, monkeypatch
) -> None:
    root, sub = tmp_path / "davis", tmp_path / "masks"
    make_davis(root)
    saved: List[Tuple[str, np.ndarray]] = []
    original = vos.write_prediction_pngs

    def spy(out_dir, dataset, index, preds):
        saved.append((dataset.video_name(index), preds.copy()))
        return original(out_dir, dataset, index, preds)

    monkeypatch.setattr(vos, "write_prediction_pngs", spy)
    code = _eval(
        root,
        "davis",
        "val",
        tiny_sam_file,
        tmp_path / "eval",
        "--save-masks",
        str(sub),
        "--baselines",
        "--protocol",
        "mask",
        "box",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "J&F" in out and "per-frame SAM" in out and str(sub) in out
    payload = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [(r["method"], r["protocol"]) for r in payload["results"]] == [
        ("per-frame SAM", "mask"),
        ("untrained upgrade", "mask"),
        ("per-frame SAM", "box"),
        ("untrained upgrade", "box"),
    ]
    for r in payload["results"]:
        assert 0.0 <= r["summary"]["jf_mean"] <= 1.0

    # only the evaluated method under the first protocol is saved: one write per video
    assert [name for name, _ in saved] == ["seqA", "seqB"]
    for name, preds in saved:
        ids = [1, 2] if name == "seqA" else [1, 3]  # DAVIS: the objects of the first frame
        for t in range(5):
            labels = _check_png(sub / name / f"{t:05d}.png")
            assert np.array_equal(labels, masks_to_label_map(preds[t], ids))
