"""``sam-i2v eval --predictions``: scoring a folder of palette PNGs without a model, the DAVIS
toolkit's CSVs, and the warning that the bundled tiny SAM is a synthetic-only stand-in."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from fixtures_datasets import make_davis, write_palette_png
from scipy import ndimage

from i2v.cli import main
from i2v.errors import StandInSamWarning
from i2v.eval.metrics import boundary_f, jaccard, sequence_stats


def first_frame_ids(labels: List[np.ndarray]) -> List[int]:
    """The objects of a DAVIS sequence: those of its first annotation (semi-supervised)."""
    return sorted(set(np.unique(labels[0]).tolist()) - {0, 255})


def overlapping_predictions(labels: List[np.ndarray], seed: int) -> tuple:
    """Per-object predicted masks that overlap each other (each ground-truth box grown by two
    pixels and shifted), painted into label maps with a random winner per frame.

    Returns (label maps, number of pixels claimed by more than one object)."""
    rng = np.random.default_rng(seed)
    ids = first_frame_ids(labels)
    out, overlap = [], 0
    for lab in labels:
        masks = {
            k: np.roll(ndimage.binary_dilation(lab == k, iterations=2), int(rng.integers(-1, 2)), axis=1) for k in ids
        }
        overlap += int((np.sum(list(masks.values()), axis=0) > 1).sum())
        pred = np.zeros_like(lab)
        for k in rng.permutation(ids):  # the later object wins an overlap
            pred[masks[int(k)]] = k
        out.append(pred)
    return out, overlap


def expected_scores(gt: List[np.ndarray], pred: List[np.ndarray]) -> Dict[str, Dict[str, float]]:
    """Per object "<video>_<id>": the library's single-frame metric functions on the label maps,
    over the frames the DAVIS toolkit scores (all but the first and last)."""
    ids = first_frame_ids(gt)
    out = {}
    for k in ids:
        j = [jaccard(p == k, g == k) for p, g in zip(pred[1:-1], gt[1:-1])]
        f = [boundary_f(p == k, g == k) for p, g in zip(pred[1:-1], gt[1:-1])]
        (jm, jr, jd), (fm, fr, fd) = sequence_stats(j), sequence_stats(f)
        out[k] = {"j_mean": jm, "j_recall": jr, "j_decay": jd, "f_mean": fm, "f_recall": fr, "f_decay": fd}
    return out


@pytest.fixture()
def davis_with_predictions(tmp_path: Path):
    root = tmp_path / "DAVIS"
    gts = make_davis(root, n_frames=7)
    pred_dir = tmp_path / "pred"
    expected, overlap = {}, 0
    for v, (name, labels) in enumerate(gts.items()):
        preds, o = overlapping_predictions(labels, seed=v)
        overlap += o
        for t, p in enumerate(preds):
            write_palette_png(pred_dir / name / f"{t:05d}.png", p)
        expected.update({f"{name}_{k}": s for k, s in expected_scores(labels, preds).items()})
    assert overlap > 50  # the predicted objects really overlap before they are painted
    return root, pred_dir, expected


def test_predictions_scores_equal_the_metric_functions_on_the_label_maps(davis_with_predictions, tmp_path, capsys):
    root, pred_dir, expected = davis_with_predictions
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--dataset",
                "davis",
                "--root",
                str(root),
                "--split",
                "val",
                "--predictions",
                str(pred_dir),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "(no model)" in printed and "fractions in [0, 1]" in printed
    payload = json.loads((out / "results.json").read_text())
    assert payload["unit"] == "fraction"
    (result,) = payload["results"]
    assert result["protocol"] == "given"
    got = {o["name"]: {k: v for k, v in o.items() if k != "name"} for o in result["objects"]}
    assert got.keys() == expected.keys() == {"seqA_1", "seqA_2", "seqB_1", "seqB_3"}
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    # some objects are imperfect, so the comparison is not between two vectors of ones
    assert min(e["j_mean"] for e in expected.values()) < 0.9
    # the DAVIS toolkit's per-sequence CSV: one row per object, fractions to 3 decimals
    with open(out / "per-sequence_results-val.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert rows[1:] == [[n, f"{e['j_mean']:.3f}", f"{e['f_mean']:.3f}"] for n, e in expected.items()]
    with open(out / "global_results-val.csv", newline="") as f:
        head, values = list(csv.reader(f))
    assert head == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    mean = {k: np.mean([e[k] for e in expected.values()]) for k in next(iter(expected.values()))}
    want = [(mean["j_mean"] + mean["f_mean"]) / 2] + [
        mean[k] for k in ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")
    ]
    assert values == [f"{v:.3f}" for v in want]
    # the printed table shows the same J&F
    assert f"{want[0]:.3f}" in printed.split("J&F")[1]


def test_eval_prints_the_scores_of_the_pngs_it_writes(tmp_path: Path, capsys) -> None:
    root = tmp_path / "DAVIS"
    make_davis(root, n_frames=6)
    with pytest.warns(StandInSamWarning, match="--sam-checkpoint"):  # a real dataset, the tiny SAM
        assert (
            main(
                [
                    "eval",
                    "--dataset",
                    "davis",
                    "--root",
                    str(root),
                    "--device",
                    "cpu",
                    "--save-masks",
                    str(tmp_path / "pred"),
                    "--out",
                    str(tmp_path / "model"),
                ]
            )
            == 0
        )
    ran = capsys.readouterr().out
    assert "sam_sha256:" in ran and "device: cpu" in ran and "config: tiny" in ran
    assert (
        main(
            [
                "eval",
                "--dataset",
                "davis",
                "--root",
                str(root),
                "--predictions",
                str(tmp_path / "pred"),
                "--out",
                str(tmp_path / "scored"),
            ]
        )
        == 0
    )
    scored = capsys.readouterr().out
    a = json.loads((tmp_path / "model" / "results.json").read_text())["results"][0]
    b = json.loads((tmp_path / "scored" / "results.json").read_text())["results"][0]
    assert a["objects"] == b["objects"] and a["summary"] == b["summary"]
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / "model" / name).read_text() == (tmp_path / "scored" / name).read_text()

    def table_row(text: str, start: str) -> List[str]:
        (line,) = [ln for ln in text.splitlines() if ln.startswith(start)]
        return line.split()[-7:]

    # the same seven printed numbers (J&F, J, J-recall, J-decay, F, F-recall, F-decay)
    assert table_row(ran, "untrained upgrade") == table_row(scored, "pred ")
    assert all(0.0 <= float(v) <= 1.0 for v in table_row(ran, "untrained upgrade")[:3])


def test_bad_predictions_get_a_clear_error(davis_with_predictions, tmp_path: Path, capsys) -> None:
    root, pred_dir, _ = davis_with_predictions
    args = [
        "eval",
        "--dataset",
        "davis",
        "--root",
        str(root),
        "--predictions",
        str(pred_dir),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args + ["--checkpoint", "runs/x"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    (pred_dir / "seqA" / "00003.png").unlink()
    assert main(args) == 2
    assert "00003.png" in capsys.readouterr().err
    write_palette_png(pred_dir / "seqA" / "00003.png", np.full((24, 32), 7, np.uint8))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "[7]" in err and "[1, 2]" in err
    assert main(["eval", "--dataset", "davis", "--root", str(root), "--predictions", str(tmp_path / "none")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_stand_in_sam_warns_once_where_it_meets_real_data(tmp_path: Path) -> None:
    from i2v.build import build_i2v_video_predictor, build_sam_i2v, default_sam_checkpoint

    def stand_in_warnings(fn) -> List[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
        return [str(w.message) for w in caught if issubclass(w.category, StandInSamWarning)]

    (msg,) = stand_in_warnings(lambda: build_i2v_video_predictor(device="cpu"))
    assert 'sam_checkpoint="sam_vit_b_01ec64.pth"' in msg and "synthetic" in msg
    # the tiny SAM named on purpose, and the plain model builder (the quickstart's), stay quiet
    assert (
        stand_in_warnings(
            lambda: build_i2v_video_predictor(sam_checkpoint=default_sam_checkpoint("tiny"), device="cpu")
        )
        == []
    )
    assert stand_in_warnings(lambda: build_sam_i2v(device="cpu")) == []
    root = tmp_path / "DAVIS"
    make_davis(root, n_frames=3)
    video = root / "JPEGImages" / "480p" / "seqA"
    (msg,) = stand_in_warnings(
        lambda: main(
            [
                "segment",
                str(video),
                "--obj-id",
                "1",
                "--point",
                "5,5",
                "--out",
                str(tmp_path / "seg"),
                "--device",
                "cpu",
            ]
        )
    )
    assert "--sam-checkpoint sam_vit_b_01ec64.pth" in msg
    assert (
        stand_in_warnings(
            lambda: main(
                [
                    "eval",
                    "--dataset",
                    "synthetic",
                    "--num-videos",
                    "1",
                    "--device",
                    "cpu",
                    "--out",
                    str(tmp_path / "syn"),
                ]
            )
        )
        == []
    )
