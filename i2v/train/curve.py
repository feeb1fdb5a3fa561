"""The training curve: loss (and validation J&F) against the step, drawn from ``metrics.jsonl``.

Every training run writes it as ``training_curve.png`` beside its ``metrics.jsonl`` when it
ends (also when interrupted), so a run leaves a picture of how it went with no tracker at all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from i2v.io.atomic import atomic_path

logger = logging.getLogger(__name__)

CURVE_NAME = "training_curve.png"


def read_metrics(metrics_path: Path) -> List[Dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a line cut short by a kill is skipped)."""
    rows = []
    for line in Path(metrics_path).read_text().splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def final_metrics(metrics_path: Path) -> Dict[str, float]:
    """The numbers of the last training record and, prefixed ``val_``, of the last validation."""
    out: Dict[str, float] = {}
    for row in read_metrics(metrics_path):
        numbers = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if row.get("type") == "train":
            out.update(numbers)
        elif row.get("type") == "val":
            out.update({f"val_{k}": v for k, v in numbers.items() if k != "step"})
    return out


def plot_training_curve(metrics_path: Path, png: Path, title: Optional[str] = None) -> Optional[Path]:
    """Draw training loss (faint: per logged step; solid: running mean) and validation J&F
    against the step into ``png`` (written atomically). Returns ``png``, or None when the log
    holds no training step yet."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [r for r in rows if r.get("type") == "train" and isinstance(r.get("loss"), (int, float))]
    val = [r for r in rows if r.get("type") == "val" and isinstance(r.get("jf"), (int, float))]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = [r["step"] for r in train], np.array([r["loss"] for r in train], dtype=float)
    window = max(1, len(losses) // 20)  # single-clip losses are noisy: show a running mean too
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, marker="." if len(losses) < 20 else None)
    if len(losses) >= window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="tab:blue", label="training loss (running mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in val], [100 * r["jf"] for r in val], "o-", color="tab:red", label="val J&F")
        ax2.set_ylabel("validation J&F (%)", color="tab:red")
    ax.set_title(title or f"training curve ({Path(metrics_path).parent.name})")
    fig.tight_layout()
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    logger.debug("wrote the training curve to %s", png)
    return Path(png)
