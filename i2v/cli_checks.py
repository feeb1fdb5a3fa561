"""Checks of command-line arguments, run before a sub-command does any work.

A bad argument should cost the user one line and no time: ``quickstart --device cuda`` on a
machine without a GPU must not fail after minutes of training. The checks are keyed by the
arguments' names, so every sub-command that has an argument gets the same check.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

from i2v.errors import ConfigError

# Counts that must be at least this.
MINIMUMS = {"max_videos": 1, "num_videos": 1, "val_videos": 1, "videos": 1, "steps": 1, "frames": 3}
WHY = {"frames": " (J&F leaves out a video's first and last frames, as the DAVIS toolkit does)"}
# Arguments naming an output folder (created when missing).
FOLDERS = ("out", "save_masks")


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _file_in_the_way(folder: Path) -> Optional[Path]:
    """The existing non-folder at ``folder`` or above it, which would stop it being created."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def check_args(args: argparse.Namespace) -> None:
    """Raise ConfigError naming the first argument that cannot work."""
    for dest, least in MINIMUMS.items():
        value = getattr(args, dest, None)
        if value is not None and value < least:
            raise ConfigError(f"{_option(dest)} must be at least {least}, got {value}{WHY.get(dest, '')}.")
    fps = getattr(args, "fps", None)
    if fps is not None and not 0 < fps < math.inf:
        raise ConfigError(f"--fps must be a positive frame rate, got {fps:g}.")
    for dest in FOLDERS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        blocker = _file_in_the_way(Path(value))
        if blocker is not None:
            what = "is a file" if blocker == Path(value) else f"lies under the file {str(blocker)!r}"
            raise ConfigError(f"{_option(dest)} {value!r} {what}; pass a folder (it is created if missing).")
    device = getattr(args, "device", None)
    if device is not None:
        from i2v.build import check_device  # imports torch: only when a device is named

        check_device(device)


def add_model_options(p: argparse.ArgumentParser, sam_checkpoint_help: str) -> None:
    """The options that say which model a sub-command runs (config, adapter, SAM checkpoint,
    device, encoder precision, preprocessing), with one wording wherever they appear."""
    p.add_argument(
        "--config",
        default=None,
        help="bundled config name or YAML path (default: the bundled config of the SAM checkpoint's "
        "type, inferred from the file; tiny without --sam-checkpoint)",
    )
    p.add_argument("--checkpoint", default=None, help="adapter directory from save_pretrained")
    p.add_argument("--sam-checkpoint", default=None, help=sam_checkpoint_help)
    p.add_argument("--device", default=None, help="cpu / cuda / mps (default: best available)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="precision of SAM's image encoder (default float32)",
    )
    p.add_argument(
        "--preprocess",
        choices=("sam", "medsam"),
        default=None,
        help="frame preprocessing: SAM's, or MedSAM's square [0, 1] input (default: the config's)",
    )
