"""The README's "Train on your own videos" section, followed as written on a tiny folder dataset.

The recipe, the commands and the Python script are taken from the README itself; only the
number of steps is cut (and validation made sparser) so that the test runs in seconds.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from own_videos import make_video

from i2v.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = [
    "optim.max_steps=2",
    "optim.warmup_steps=1",
    "val.every=2",
    "val.num_videos=1",
    "checkpoint_every=100",
    "calibration.num_videos=1",
]


def _section() -> Dict[str, List[str]]:
    text = README.read_text()
    body = text.split("## Train on your own videos", 1)[1].split("\n## ", 1)[0]
    blocks: Dict[str, List[str]] = {}
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", body, re.S):
        blocks.setdefault(lang, []).append(code)
    return blocks


def _make_videos(root: Path) -> None:
    """The README's layout: JPEG frames, a video file, PNG frames; masks on some frames."""
    make_video(root / "train" / "cat", n=6, names=[f"frame_{t + 1:03d}" for t in range(6)], annotated=[0, 3, 5])
    make_video(root / "train" / "street", n=5, video_file=True, annotated=[0, 4])
    make_video(root / "val" / "dog", n=4, names=[f"{t + 1:05d}" for t in range(4)], ext=".png")


@pytest.fixture()
def in_tmp(tmp_path: Path):
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_readme_section_has_the_layout_recipe_commands_and_script() -> None:
    blocks = _section()
    recipe = blocks["yaml"][0]
    assert "type: folder" in recipe and "root: my_videos" in recipe and len(recipe.strip().splitlines()) <= 12
    commands = [ln for ln in blocks["bash"][0].splitlines() if ln.strip()]
    assert [c.split()[:2] for c in commands] == [["sam-i2v", "train"], ["sam-i2v", "eval"]]
    assert len(blocks["python"][0].strip().splitlines()) <= 15


def test_readme_commands_train_and_evaluate_on_a_folder_dataset(in_tmp: Path, capsys) -> None:
    blocks = _section()
    _make_videos(in_tmp / "my_videos")
    (in_tmp / "my_train.yaml").write_text(blocks["yaml"][0])
    train, evaluate = [shlex.split(ln) for ln in blocks["bash"][0].splitlines() if ln.strip()]
    assert main(train[1:] + ["--no-progress", "trackers=[]"] + FAST) == 0
    out = capsys.readouterr().out
    assert "trained to step 2" in out and (in_tmp / "runs" / "my_videos" / "training_curve.png").is_file()
    assert "presence gate calibrated on " in out  # training ends with the calibration, and says what it chose
    assert main(evaluate[1:] + ["--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "per-frame SAM" in table and "trained upgrade" in table  # --checkpoint took the run folder
    assert (in_tmp / "eval_out" / "results.json").is_file()


def test_readme_python_script_trains_and_evaluates(in_tmp: Path, capsys) -> None:
    blocks = _section()
    _make_videos(in_tmp / "my_videos")
    (in_tmp / "my_train.yaml").write_text(blocks["yaml"][0])
    script = blocks["python"][0]
    assert '"optim.max_steps=2000"' in script
    script = script.replace('"optim.max_steps=2000"', ", ".join(f'"{o}"' for o in FAST[:2] + ["trackers=[]"]))
    script = script.replace('method="mine")', 'method="mine", progress=False)')
    exec(compile(script, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "runs/my_videos" and np.isfinite(float(printed[1]))
    assert 0.0 <= float(printed[2]) <= 1.0
