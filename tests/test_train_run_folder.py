"""The training run's folder: its metrics log on resume, and an earlier run in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from i2v.errors import ConfigError
from i2v.train.config import load_train_config
from i2v.train.trainer import METRICS_NAME, MetricsLog, Trainer

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "train_tiny_synthetic.yaml"


def _steps(path: Path) -> List[int]:
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines() if ln.strip()]


def test_metrics_log_resume_drops_a_line_cut_short_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / METRICS_NAME
    lines = [json.dumps({"type": "train", "step": s}) for s in (1, 2, 3)]
    path.write_text("\n".join(lines) + '\n{"type": "val", "step": 4, "vid')  # killed mid-write
    log = MetricsLog(path, resume_step=2)
    log.write({"type": "train", "step": 3})
    log.close()
    assert _steps(path) == [1, 2, 3]


def test_resume_without_a_checkpoint_redoes_every_logged_step(tmp_path: Path, tiny_sam_file: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # a run killed before its first checkpoint: validation at step 0 and two train steps logged
    old = [{"type": "val", "step": 0}, {"type": "train", "step": 1}, {"type": "train", "step": 2}]
    (out / METRICS_NAME).write_text("".join(json.dumps(r) + "\n" for r in old))
    cfg = load_train_config(
        RECIPE,
        [
            f"sam_checkpoint={tiny_sam_file}",
            f"output_dir={out}",
            "data.0.num_videos=2",
            "data.0.synthetic.height=64",
            "data.0.synthetic.width=80",
            "data.0.synthetic.num_frames=4",
            "clip.num_frames=4",
            "val.every=0",
        ],
    )
    tr = Trainer(cfg, resume=True, progress=False)
    assert tr.step == 0
    tr.metrics.close()
    assert _steps(out / METRICS_NAME) == []  # all of it is about to be logged again from step 0


def _earlier_run(out: Path) -> None:
    (out / "checkpoint-0000005").mkdir(parents=True)
    (out / "checkpoint-0000005" / "adapter_model.safetensors").write_bytes(b"weights")
    (out / "latest").write_text("checkpoint-0000005")
    (out / METRICS_NAME).write_text(json.dumps({"type": "train", "step": 5}) + "\n")
    (out / "notes.txt").write_text("the user's own file")


def _tiny_cfg(out: Path, sam_file: Path):
    return load_train_config(
        RECIPE,
        [
            f"sam_checkpoint={sam_file}",
            f"output_dir={out}",
            "data.0.num_videos=2",
            "data.0.synthetic.height=64",
            "data.0.synthetic.width=80",
            "data.0.synthetic.num_frames=4",
            "clip.num_frames=4",
            "val.every=0",
        ],
    )


def test_a_fresh_run_refuses_a_folder_with_an_earlier_run_and_leaves_it_intact(
    tmp_path: Path, tiny_sam_file: Path
) -> None:
    out = tmp_path / "run"
    _earlier_run(out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        Trainer(_tiny_cfg(out, tiny_sam_file), progress=False)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_overwrite_replaces_only_the_earlier_runs_files(tmp_path: Path, tiny_sam_file: Path) -> None:
    out = tmp_path / "run"
    _earlier_run(out)
    tr = Trainer(_tiny_cfg(out, tiny_sam_file), progress=False, overwrite=True)
    tr.metrics.close()
    assert not (out / "checkpoint-0000005").exists() and not (out / "latest").exists()
    assert _steps(out / METRICS_NAME) == []
    assert (out / "notes.txt").read_text() == "the user's own file"
