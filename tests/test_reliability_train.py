"""Reliability of training runs: the metrics log, stale temporaries, damaged checkpoints and
feature-cache files, Ctrl-C (issue 18)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import List

import pytest

from i2v.errors import CheckpointError
from i2v.train import checkpointing as ckpt
from i2v.train.config import load_train_config
from i2v.train.trainer import METRICS_NAME, MetricsLog, Trainer

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "train_tiny_synthetic.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(out: Path, sam_file: Path, *extra: str) -> List[str]:
    """Overrides for a training run that takes a second or two on a CPU."""
    return [
        f"sam_checkpoint={sam_file}",
        f"output_dir={out}",
        "data.0.num_videos=2",
        "data.0.synthetic.height=64",
        "data.0.synthetic.width=80",
        "data.0.synthetic.num_frames=4",
        "data.0.synthetic.max_objects=1",
        "clip.num_frames=3",
        "clip.max_objects=1",
        "optim.warmup_steps=0",
        "optim.max_steps=4",
        "val.every=0",
        "log_every=1",
        "checkpoint_every=2",
        "feature_cache.dtype=float32",
        *extra,
    ]


def _age(path: Path, seconds: float) -> None:
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_a_run_removes_temporaries_that_killed_runs_left(tmp_path: Path, tiny_sam_file: Path) -> None:
    out = tmp_path / "run"
    cfg = load_train_config(RECIPE, tiny(out, tiny_sam_file, "feature_cache.enabled=true"))
    first = Trainer(cfg, progress=False)
    first.metrics.close()
    cache_dir = first.cache.dir
    stale = [out / ".latest.k2j4.tmp", cache_dir / "synthetic" / ".video_0.safetensors.a8b.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
        _age(p, 3600)
    Trainer(cfg, progress=False, resume=True).metrics.close()
    assert not any(p.exists() for p in stale)


def test_a_full_disk_while_resume_trims_the_metrics_log_keeps_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / METRICS_NAME
    text = "".join(json.dumps({"type": "train", "step": s}) + "\n" for s in range(1, 6))
    path.write_text(text)
    real_write_text = Path.write_text

    def disk_full(self: Path, data: str, *args, **kwargs) -> int:
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)  # part of it, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        MetricsLog(path, resume_step=3)
    monkeypatch.undo()
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == [METRICS_NAME]


# ---------------------------------------------------------------- damaged checkpoints


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_sam_file: Path) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4 (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    Trainer(load_train_config(RECIPE, tiny(out, tiny_sam_file)), progress=False).run()
    return out


def _copy_run(finished_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def _flip_bytes(path: Path, count: int = 16) -> None:
    """Damage a file without changing its size."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def test_the_manifest_records_hashes_and_resume_skips_a_checkpoint_damaged_in_place(
    finished_run: Path, tmp_path: Path, tiny_sam_file: Path, caplog
) -> None:
    out = _copy_run(finished_run, tmp_path)
    manifest = json.loads((out / "checkpoint-0000004" / ckpt.MANIFEST_NAME).read_text())
    assert set(manifest["sha256"]) == set(manifest["files"]) and ckpt.STATE_NAME in manifest["files"]
    _flip_bytes(out / "checkpoint-0000004" / ckpt.STATE_NAME)
    tr = Trainer(load_train_config(RECIPE, tiny(out, tiny_sam_file)), progress=False, resume=True)
    tr.metrics.close()
    assert tr.step == 2 and tr.last_checkpoint == out / "checkpoint-0000002"
    assert "checkpoint-0000004: training_state.pt does not match the SHA-256" in caplog.text  # a logged warning


def test_resume_over_only_damaged_checkpoints_is_an_error_naming_them(
    finished_run: Path, tmp_path: Path, tiny_sam_file: Path
) -> None:
    out = _copy_run(finished_run, tmp_path)
    _flip_bytes(out / "checkpoint-0000002" / "adapter_model.safetensors")
    (out / "checkpoint-0000004" / ckpt.STATE_NAME).write_bytes(b"")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    cfg = load_train_config(RECIPE, tiny(out, tiny_sam_file))
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint-0000004: training_state.pt has 0 bytes.*"
        r"checkpoint-0000002: adapter_model.safetensors does not match.*--overwrite",
    ):
        Trainer(cfg, progress=False, resume=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    tr = Trainer(cfg, progress=False, resume=True, overwrite=True)  # start again, replacing them
    tr.metrics.close()
    assert tr.step == 0 and ckpt.list_checkpoints(out) == [] and (out / METRICS_NAME).read_text() == ""


def test_a_damaged_latest_pointer_falls_back_to_the_newest_intact_checkpoint(
    finished_run: Path, tmp_path: Path
) -> None:
    out = _copy_run(finished_run, tmp_path)
    (out / ckpt.LATEST_NAME).write_bytes(b"\xff\xfe\x00garbage")
    assert ckpt.find_resumable(out) == (out / "checkpoint-0000004", {})
