"""What every benchmark result records, and an atomic writer for it.

A result file says what was measured (``metrics``), with what (``config``), and where and on
which code it ran (git hash, versions, machine, SAM hash, peak memory), so that two numbers
can be compared without asking how they were obtained. Files are written atomically: a crash
mid-write never leaves a truncated result beside a good table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from i2v.io.atomic import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_info(repo: Path = REPO_ROOT) -> Dict[str, Any]:
    """Commit hash and whether the working tree differs from it (None outside a checkout)."""

    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> Dict[str, Optional[str]]:
    """Versions of the packages that decide the numbers."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "segment_anything": _version("segment-anything"),
        "sam_i2v": _version("sam-i2v"),
        "numpy": _version("numpy"),
    }


def cpu_model() -> str:
    """The CPU's marketing name (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: Union[str, torch.device]) -> Dict[str, Any]:
    """The CPU, the thread count torch uses, and the accelerator when ``device`` is one."""
    device = torch.device(device)
    info: Dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 2)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
    return info


def peak_memory(device: Union[str, torch.device]) -> Dict[str, float]:
    """Peak resident memory of this process and, on CUDA, peak allocated GPU memory (MiB)."""
    device = torch.device(device)
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    out = {"cpu_max_rss_mib": round(rss_mib, 1)}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def jsonable(value: Any) -> Any:
    """Dataclasses, paths, devices and dtypes → plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    return value


def write_result(
    name: str,
    config: Any,
    metrics: Dict[str, Any],
    device: Union[str, torch.device],
    sam_sha256: Optional[str] = None,
    path: Optional[Union[str, Path]] = None,
) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``path``) atomically, and its PNG plot beside
    it when the benchmark has one (:mod:`benchmarks.plots`); returns the JSON's path.

    Args:
        name: the benchmark's name, also the default file name.
        config: what was run (a dataclass or a mapping: model config, command-line options).
        metrics: the measurements.
        device: where they were taken.
        sam_sha256: hash of the SAM weights (a random SAM's state-dict hash is still recorded,
            so results on random weights are never mistaken for official ones).
    """
    target = Path(path) if path is not None else RESULTS_DIR / f"{name}.json"
    record = {
        "benchmark": name,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_info(),
        "versions": versions(),
        "machine": machine_info(device),
        "sam_sha256": sam_sha256,
        "config": jsonable(config),
        "metrics": jsonable(metrics),
        "memory": peak_memory(device),
    }
    write_text_atomic(target, json.dumps(record, indent=2) + "\n")
    from benchmarks.plots import plot_result  # matplotlib only when a result is written

    plot_result(name, target)
    return target


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
