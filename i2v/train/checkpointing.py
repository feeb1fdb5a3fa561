"""Resumable training checkpoints, written so that a crash never leaves a half-written one.

A checkpoint is a directory ``<output_dir>/checkpoint-<step:07d>`` holding:

    adapter_model.safetensors, adapter_config.json   the adapters (save_pretrained: loadable
                                                      with build_sam_i2v(checkpoint=...))
    training_state.pt                                 optimizer, scheduler, grad scaler, RNG
                                                      states of every process, step, data position
    checkpoint.json                                   manifest: step, size and SHA-256 of every file

It is written whole into a hidden temporary directory, every file and the directory are
fsynced, and only then is it renamed into place (one atomic ``os.replace``); the ``latest``
file, which names the newest checkpoint, is replaced atomically afterwards. A kill at any
moment leaves either the old or the new checkpoint, never a partial one under a
``checkpoint-*`` name; leftover temporary directories are removed on the next start.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from i2v.errors import CheckpointError
from i2v.io import atomic
from i2v.io.atomic import write_text_atomic
from i2v.pretrained import save_pretrained
from i2v.sam_builder import file_sha256

PREFIX = "checkpoint-"
STATE_NAME = "training_state.pt"
MANIFEST_NAME = "checkpoint.json"
LATEST_NAME = "latest"
_TMP_PREFIX = ".tmp-checkpoint-"

PathLike = Union[str, Path]


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> Dict[str, Any]:
    """This process's Python, NumPy and torch RNG states (tensors and plain data only, so
    the state loads with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    return {
        "python": random.getstate(),
        "numpy": np_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = dict(np_state["state"], key=np_state["state"]["key"].numpy().astype(np.uint32))
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: PathLike, step: int, model: Any, state: Dict[str, Any], keep_last: int) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, and prune old ones.

    Args:
        model: the SamI2V (its adapters are saved).
        state: training state (tensors and plain data).
        keep_last: checkpoints kept, this one included.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    tmp = out / f"{_TMP_PREFIX}{step:07d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_pretrained(model, tmp)
        torch.save(state, tmp / STATE_NAME)
    except Exception as exc:  # don't leave a half checkpoint filling a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        full = atomic.disk_full_error(exc, tmp / STATE_NAME)
        if full is None or full is exc:
            raise
        raise full from exc
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    hashes = {name: file_sha256(tmp / name) for name in files}
    manifest = {"step": step, "files": files, "sha256": hashes}
    (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    for p in tmp.iterdir():
        _fsync(p)
    _fsync(tmp)
    final = out / name
    if final.exists():  # a re-run over an old one (resumed from an earlier step): retire it first
        old = out / f"{_TMP_PREFIX}old-{step:07d}-{os.getpid()}"
        os.replace(final, old)
        shutil.rmtree(old)
    os.replace(tmp, final)
    _fsync(out)
    write_text_atomic(out / LATEST_NAME, name + "\n")
    prune_checkpoints(out, keep_last)
    return final


def checkpoint_problem(path: PathLike, verify_hashes: bool = True) -> Optional[str]:
    """What is wrong with a checkpoint directory, or None if it is intact.

    Every file its manifest lists must be there at full size and, with ``verify_hashes``,
    have the SHA-256 the manifest records (manifests written before hashes were recorded
    are checked by size only).
    """
    p = Path(path)
    try:
        manifest = json.loads((p / MANIFEST_NAME).read_text())
        files, hashes = manifest["files"], manifest.get("sha256", {})
        for f, size in files.items():
            if not (p / f).is_file():
                return f"{f} is missing"
            if (p / f).stat().st_size != size:
                return f"{f} has {(p / f).stat().st_size} bytes, not {size}"
            if verify_hashes and f in hashes and file_sha256(p / f) != hashes[f]:
                return f"{f} does not match the SHA-256 in {MANIFEST_NAME}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST_NAME} is missing or unreadable"
    return None


def is_complete(path: PathLike) -> bool:
    """Whether a checkpoint directory holds every file its manifest lists, at full size."""
    return checkpoint_problem(path, verify_hashes=False) is None


def list_checkpoints(output_dir: PathLike) -> List[Path]:
    """``checkpoint-*`` directories, oldest first (complete or not)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and re.fullmatch(rf"{PREFIX}\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def find_resumable(output_dir: PathLike) -> Tuple[Optional[Path], Dict[Path, str]]:
    """The newest intact checkpoint (sizes and hashes verified), and the damaged ones newer
    than it, each with what is wrong with it.

    The checkpoint ``latest`` names is tried first, then the others newest first.
    """
    out = Path(output_dir)
    candidates = list(reversed(list_checkpoints(out)))
    try:
        named: Optional[Path] = out / (out / LATEST_NAME).read_text().strip()
    except (OSError, UnicodeDecodeError):  # missing, or damaged itself: the newest on disk wins
        named = None
    if named in candidates:
        candidates.remove(named)
        candidates.insert(0, named)
    damaged: Dict[Path, str] = {}
    for p in candidates:
        problem = checkpoint_problem(p)
        if problem is None:
            return p, damaged
        damaged[p] = problem
    return None, damaged


def latest_checkpoint(output_dir: PathLike) -> Optional[Path]:
    """The newest intact checkpoint: the one ``latest`` names, else the newest on disk."""
    return find_resumable(output_dir)[0]


def prune_checkpoints(output_dir: PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints."""
    for p in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def remove_stale_temporaries(output_dir: PathLike, older_than: Optional[float] = None) -> None:
    """Remove what a killed run left behind: temporary checkpoint directories, and the
    temporary files of atomic writes (``.latest.*.tmp``, ...) older than ``older_than``
    (``time.time()`` seconds; None: all of them)."""
    out = Path(output_dir)
    if out.is_dir():
        for p in out.iterdir():
            if p.is_dir() and p.name.startswith(_TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
        atomic.remove_stale_temporaries(out, older_than)


def load_training_state(path: PathLike) -> Dict[str, Any]:
    """The training state of a checkpoint directory (safe unpickling only)."""
    file = Path(path) / STATE_NAME
    if not is_complete(path):
        raise CheckpointError(
            f"{str(path)!r} is not a complete training checkpoint ({MANIFEST_NAME} or a file is missing)."
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on damaged files
        raise CheckpointError(f"{str(file)!r} could not be read: {exc}") from exc
