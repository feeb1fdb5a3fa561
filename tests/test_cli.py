"""Command line: ``sam-i2v segment`` outputs and ``sam-i2v eval`` on real-format fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from fixtures_datasets import OraclePredictor, make_davis, make_sav_val
from PIL import Image

from i2v.cli import main
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.eval.vos import evaluate
from i2v.io.masks import decode_rle, load_palette_png

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = SyntheticVideoDataset("test", 1, config=SyntheticConfig(height=48, width=64, num_frames=5))
    folder = tmp_path_factory.mktemp("video")
    for t in range(5):
        Image.fromarray(ds.frame(0, t)).save(folder / f"{t:05d}.png")
    return folder


def _segment(video_dir: Path, out: Path, fmt: str, sam: Path) -> int:
    return main(
        [
            "segment",
            str(video_dir),
            "--obj-id",
            "1",
            "--point",
            "20,20",
            "--point",
            "40,30,0",
            "--frame",
            "2",
            "--obj-id",
            "2",
            "--box",
            "30,10,60,40",
            "--out",
            str(out),
            "--format",
            fmt,
            "--sam-checkpoint",
            str(sam),
            "--device",
            "cpu",
        ]
    )


def test_segment_writes_every_format(video_dir: Path, tmp_path: Path, tiny_sam_file: Path) -> None:
    assert _segment(video_dir, tmp_path / "png", "png", tiny_sam_file) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(5)]
    labels = np.stack([load_palette_png(p) for p in pngs])
    assert labels.shape == (5, 48, 64) and set(np.unique(labels)) <= {0, 1, 2}

    assert _segment(video_dir, tmp_path / "rle", "rle", tiny_sam_file) == 0
    data = json.loads((tmp_path / "rle" / "masks.json").read_text())
    assert sorted(data["frames"], key=int) == [str(t) for t in range(5)]
    for t in range(5):
        for obj_id, rle in data["frames"][str(t)].items():
            mask = decode_rle(rle)
            # the label map draws later objects over earlier ones; object 2's pixels always agree
            if obj_id == "2":
                assert np.array_equal(mask, labels[t] == 2)
            else:
                assert not (mask & (labels[t] == 0)).any()

    assert _segment(video_dir, tmp_path / "ov", "overlay", tiny_sam_file) == 0
    with av.open(str(tmp_path / "ov" / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5


def test_segment_bad_prompt_exits_with_a_message(video_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["segment", str(video_dir), "--point", "1,2", "--out", str(tmp_path)]) == 2
    assert "--obj-id" in capsys.readouterr().err
    assert main(["segment", str(video_dir), "--obj-id", "1", "--box", "1,2,3", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


def test_runner_scores_an_oracle_perfectly(tmp_path: Path) -> None:
    from i2v.data.davis import DavisDataset

    make_davis(tmp_path)
    ds = DavisDataset(tmp_path, "val")
    result = evaluate(OraclePredictor(ds), ds, protocol="mask", progress=False)
    summary = result.summary()
    assert summary["j_mean"] == pytest.approx(1.0) and summary["f_mean"] == pytest.approx(1.0)
    assert [r.name for r in result.rows] == ["seqA", "seqB"]


@pytest.mark.parametrize("kind", ["davis", "sav"])
def test_eval_cli_on_real_layouts(kind: str, tmp_path: Path, tiny_sam_file: Path, capsys) -> None:
    root = tmp_path / "data"
    split = "val"
    if kind == "davis":
        make_davis(root)
    else:
        make_sav_val(root)
        split = "sav_val"
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--dataset",
            kind,
            "--root",
            str(root),
            "--split",
            split,
            "--baselines",
            "--sam-checkpoint",
            str(tiny_sam_file),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "per-frame SAM" in table and "untrained upgrade" in table
    payload = json.loads((out / "results.json").read_text())
    methods = [r["method"] for r in payload["results"]]
    assert methods == ["per-frame SAM", "untrained upgrade"]
    for r in payload["results"]:
        assert 0.0 <= r["summary"]["jf_mean"] <= 1.0
        assert len(r["videos"]) == (2 if kind == "davis" else 1)
    assert (out / "results.csv").read_text().startswith("method,protocol,J&F")
