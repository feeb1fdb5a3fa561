"""Reliability of the files sam-i2v writes: permissions, stale temporaries, integrity checks
of adapters and SAM checkpoints (issue 18)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors.torch import save_file

from i2v.build import build_sam_i2v
from i2v.io.atomic import atomic_path, remove_stale_temporaries
from i2v.pretrained import WEIGHTS_NAME, save_pretrained


@pytest.fixture()
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask_even_when_the_writer_replaces_the_file(tmp_path: Path, umask_022: None) -> None:
    with atomic_path(tmp_path / "t.safetensors") as tmp:
        save_file({"x": torch.zeros(2)}, str(tmp))  # replaces the 0600 temporary with its own file
    assert _mode(tmp_path / "t.safetensors") == 0o644
    with atomic_path(tmp_path / "t.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "t.txt") == 0o644


def test_saved_adapters_are_readable_by_the_group(tmp_path: Path, tiny_sam_file: Path, umask_022: None) -> None:
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    out = save_pretrained(model, tmp_path / "adapter")
    assert _mode(out / WEIGHTS_NAME) == 0o644


def test_stale_temporaries_older_than_the_cutoff_are_removed(tmp_path: Path) -> None:
    old = tmp_path / ".latest.abc123.tmp"
    nested = tmp_path / "ds" / ".vid.safetensors.x1y2.tmp"
    nested.parent.mkdir()
    for p in (old, nested):
        p.write_text("partial")
        os.utime(p, (time.time() - 100, time.time() - 100))
    fresh = tmp_path / ".other.q9.tmp"  # a write another process is doing now
    fresh.write_text("partial")
    keep = tmp_path / "notes.tmp"  # not a temporary of ours
    keep.write_text("user")
    assert remove_stale_temporaries(tmp_path, older_than=time.time() - 50) == [old]
    assert set(remove_stale_temporaries(tmp_path, older_than=time.time() - 50, recursive=True)) == {nested}
    assert fresh.exists() and keep.exists()
