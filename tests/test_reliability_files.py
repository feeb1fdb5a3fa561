"""Reliability of the files sam-i2v writes: permissions, stale temporaries, integrity checks
of adapters and SAM checkpoints (issue 18)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors.torch import load_file, save_file

from i2v.build import build_sam_i2v
from i2v.errors import CheckpointError
from i2v.io.atomic import atomic_path, remove_stale_temporaries
from i2v.pretrained import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from i2v.sam_builder import load_sam


@pytest.fixture()
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask_even_when_the_writer_replaces_the_file(
    tmp_path: Path, umask: int, mode: int
) -> None:
    before = os.umask(umask)
    try:
        with atomic_path(tmp_path / "t.safetensors") as tmp:
            save_file({"x": torch.zeros(2)}, str(tmp))  # replaces the 0600 temporary with its own file
        with atomic_path(tmp_path / "t.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(before)
    assert _mode(tmp_path / "t.safetensors") == mode and _mode(tmp_path / "t.txt") == mode


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


# ---------------------------------------------------------------- integrity of loaded weights


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_sam_file: Path) -> Path:
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    return save_pretrained(model, tmp_path_factory.mktemp("adapter") / "adapter")


def _copy(adapter: Path, tmp_path: Path) -> Path:
    out = tmp_path / "adapter"
    shutil.copytree(adapter, out)
    return out


@pytest.mark.parametrize(
    "version, message",
    [
        (1, "format_version 1: adapters of an earlier release"),
        (99, "format_version 99, newer than this sam-i2v"),
        ("x", "format_version 'x'; save_pretrained writes a positive integer"),
        (None, "format_version None"),
        (True, "format_version True"),
    ],
)
def test_an_adapter_format_this_release_cannot_read_is_refused(
    saved_adapter: Path, tmp_path: Path, tiny_sam_file: Path, version: object, message: str
) -> None:
    adapter = _copy(saved_adapter, tmp_path)
    meta = json.loads((adapter / CONFIG_NAME).read_text())
    meta["format_version"] = version
    (adapter / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        build_sam_i2v(checkpoint=adapter, sam_checkpoint=tiny_sam_file, device="cpu")


def test_adapters_with_nan_weights_are_refused(saved_adapter: Path, tmp_path: Path, tiny_sam_file: Path) -> None:
    adapter = _copy(saved_adapter, tmp_path)
    weights = load_file(str(adapter / WEIGHTS_NAME))
    name = sorted(weights)[0]
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(adapter / WEIGHTS_NAME), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"NaN or infinite weights \({re.escape(name)}"):
        build_sam_i2v(checkpoint=adapter, sam_checkpoint=tiny_sam_file, device="cpu")


def test_a_sam_checkpoint_with_infinite_weights_is_refused(tmp_path: Path, tiny_sam_file: Path) -> None:
    state = torch.load(tiny_sam_file, weights_only=True)
    state["mask_decoder.iou_token.weight"][0, 0] = float("inf")
    path = tmp_path / "sam_tiny_diverged.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights \(mask_decoder.iou_token.weight\)"):
        load_sam("tiny", path)


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_behind_a_writer_that_hides_errno_is_an_enospc_oserror(tmp_path: Path) -> None:
    target = tmp_path / "adapter_model.safetensors"
    target.write_bytes(b"the previous adapters")
    with pytest.raises(OSError) as info:
        with atomic_path(target):  # safetensors reports the OS error inside its own type
            raise RuntimeError(
                "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                'message: "No space left on device" })'
            )
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"the previous adapters" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(ValueError, match="a bug"):  # other failures pass through unchanged
        with atomic_path(target):
            raise ValueError("a bug")


def test_a_checkpoint_that_fills_the_disk_leaves_no_half_checkpoint(
    tmp_path: Path, tiny_sam_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from i2v.train import checkpointing as ckpt

    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")

    def failing_save(obj: object, path: object) -> None:  # what torch.save says on a full disk
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0))
    with pytest.raises(OSError) as info:
        ckpt.save_checkpoint(tmp_path, 4, model, {"step": 4}, keep_last=2)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
