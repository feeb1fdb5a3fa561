"""``metrics.jsonl``: the training run's log, one JSON object per line.

On ``--resume`` the lines of steps past the checkpoint (about to be redone) and a line cut
short by a kill are dropped; that rewrite is atomic, so a kill or a full disk during it leaves
the old log whole.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
import torch

from i2v.io.atomic import write_text_atomic

if TYPE_CHECKING:
    from accelerate import Accelerator

METRICS_NAME = "metrics.jsonl"


def _logged_step(line: str, unreadable: int) -> int:
    """The step a metrics line records, or ``unreadable`` for a blank or cut-short line."""
    try:
        return int(json.loads(line).get("step", 0)) if line.strip() else unreadable
    except (ValueError, AttributeError, TypeError):  # not JSON, or not a JSON object
        return unreadable


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed as it comes."""

    def __init__(self, path: Path, resume_step: Optional[int]) -> None:
        """Open the log for appending; with ``resume_step``, first drop the lines of later steps."""
        self.path = path
        if resume_step is not None and path.is_file():
            # the killed run logged steps past its last checkpoint; they are about to be redone
            # (a kill mid-write can also leave its last line cut short: it is dropped too)
            keep = [ln for ln in path.read_text().splitlines() if _logged_step(ln, resume_step + 1) <= resume_step]
            write_text_atomic(path, "".join(ln + "\n" for ln in keep))
        self.file = open(path, "a")

    def write(self, record: Dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class RunLog:
    """Where a run's records go: ``metrics.jsonl`` (``metrics``: the main process's log, None on
    the others) and the trackers of accelerate's ``acc``."""

    def __init__(self, acc: "Accelerator", metrics: Optional[MetricsLog]) -> None:
        self.acc, self.metrics = acc, metrics

    def write(self, record: Dict[str, Any]) -> None:
        """One record (``type`` "train" or "val", ``step``); its numbers also go to the trackers."""
        if self.metrics is not None:
            self.metrics.write(record)
        scalars = {
            f"{record.get('type', 'train')}/{k}": v
            for k, v in record.items()
            if isinstance(v, (int, float)) and k != "step"
        }
        if self.acc.log_with:
            self.acc.log(scalars, step=record["step"])

    def write_train(
        self, window: List[Dict[str, float]], step: int, lr: float, seconds: float, nonfinite: int, epoch: int
    ) -> None:
        """One training line: the loss terms of ``window`` (the steps since the last line)
        averaged over its steps and all processes (a collective call: every process makes it)."""
        keys = sorted(k for k in window[-1] if k != "skipped")
        local = [
            float(np.nanmean([w.get(k, math.nan) for w in window]))
            if any(math.isfinite(w.get(k, math.nan)) for w in window)
            else math.nan
            for k in keys
        ]
        means = self.acc.reduce(torch.tensor(local, device=self.acc.device), reduction="mean").tolist()
        self.write(
            {
                "type": "train",
                "step": step,
                "lr": lr,
                "time": round(seconds, 3),
                "steps_averaged": len(window),
                **{("loss" if k == "total" else k): float(v) for k, v in zip(keys, means)},
                "skipped": bool(window[-1]["skipped"]),
                "nonfinite": nonfinite,
                "epoch": epoch,
            }
        )
