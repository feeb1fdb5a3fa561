"""Calibration: adapter values set after the gradient steps, by tracking training videos.

Some decisions are thresholds, which gradients do not move: the presence head's appearance
gate (:class:`i2v.adapters.memory_prompt.PresenceHead`) calls an object absent when the mask
the decoder found looks less like the object than ``min_similarity``. Where that threshold lies
depends on the SAM's feature space (a cosine of 0.8 means something else in the bundled tiny
SAM's 128-wide embedding than in vit_b's), and what it is worth shows only over whole videos:
an absent call on one frame also keeps a wrong mask out of memory and out of the next frame's
prompt. So training ends by tracking the first videos of its own training data with each
candidate threshold (and with the gate off) and keeping the one with the best J&F there.

Only training videos are used; the held-out split stays for measuring. The search is recorded
in ``metrics.jsonl`` as a ``"calibration"`` record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from i2v.adapters.memory_prompt import GATE_OFF
from i2v.data.base import VideoDataset
from i2v.model import CALIBRATED, SamI2V


@dataclass
class CalibrationConfig:
    """What training calibrates after its last step.

    Attributes:
        presence: calibrate the presence head's appearance gate (``min_similarity``).
        num_videos: training videos tracked per candidate (the first ones of the first
            dataset, or of the videos given to ``train``).
        similarities: the candidate thresholds (cosine similarities), tried besides "off".
        protocol: how each video's objects are prompted ("mask": the first frame's mask, as
            the quickstart and DAVIS score).
        min_gain: a threshold is kept only if it raises the J&F of those videos over the gate
            being off by at least this (a fraction: 0.005 is half a point).
        compare_initial: also calibrate the adapters' initial weights (what they were before
            the first step) and keep them, with their threshold, if they track the training
            videos better than the trained weights: the gradient steps optimise a per-frame
            loss, and are kept only when they also help over whole videos.
    """

    presence: bool = True
    num_videos: int = 32
    similarities: List[float] = field(default_factory=lambda: [0.6, 0.7, 0.8, 0.9])
    protocol: str = "mask"
    min_gain: float = 0.0
    compare_initial: bool = True

    def __post_init__(self) -> None:
        from i2v.eval.vos import PROTOCOLS  # the evaluation defines them; imported only here

        if self.num_videos < 1:
            raise ValueError(f"calibration.num_videos must be at least 1, got {self.num_videos}.")
        if not self.similarities or any(not -1.0 <= s <= 1.0 for s in self.similarities):
            raise ValueError(f"calibration.similarities must be cosines in [-1, 1], got {self.similarities}.")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"calibration.protocol must be one of {', '.join(PROTOCOLS)}; got {self.protocol!r}.")
        if not 0.0 <= self.min_gain <= 1.0:
            raise ValueError(f"calibration.min_gain must be in [0, 1], got {self.min_gain}.")


def _jf(model: SamI2V, dataset: VideoDataset, indices: List[int], protocol: str) -> float:
    from i2v.eval.vos import evaluate
    from i2v.video_predictor import I2VVideoPredictor

    result = evaluate(
        I2VVideoPredictor(model), dataset, indices, protocol=protocol, method="calibration", progress=False
    )
    return float(result.summary()["jf_mean"])


def calibrate_presence(
    model: SamI2V, dataset: VideoDataset, cfg: CalibrationConfig, step: Optional[int] = None
) -> Dict[str, Any]:
    """Set ``model.presence_head.min_similarity`` to the candidate with the best J&F on the first
    ``cfg.num_videos`` videos of ``dataset`` (off unless one gains ``cfg.min_gain``).

    The model is left in train mode with the chosen value. Returns the ``"calibration"`` record:
    the J&F of every candidate (None: off) and the value chosen.
    """
    head = model.presence_head
    indices = list(range(min(cfg.num_videos, len(dataset))))
    scores: Dict[Optional[float], float] = {}
    try:
        with torch.no_grad():
            for similarity in [None, *sorted(cfg.similarities)]:
                head.min_similarity.fill_(GATE_OFF if similarity is None else similarity)
                scores[similarity] = _jf(model, dataset, indices, cfg.protocol)
    finally:
        model.train()  # the predictor puts the model in eval mode
    off = scores[None]
    best = max(scores, key=lambda s: (scores[s], s is None))  # a tie keeps the gate off
    if best is not None and scores[best] - off < cfg.min_gain:
        best = None
    with torch.no_grad():
        head.min_similarity.fill_(GATE_OFF if best is None else best)
    return {
        "type": "calibration",
        "step": step,
        "videos": len(indices),
        "protocol": cfg.protocol,
        "presence_jf": [{"min_similarity": s, "jf": v} for s, v in scores.items()],
        "presence_min_similarity": best,
    }


def calibrate(
    model: SamI2V,
    dataset: VideoDataset,
    cfg: CalibrationConfig,
    initial: Optional[Dict[str, torch.Tensor]] = None,
    step: Optional[int] = None,
) -> Dict[str, Any]:
    """Calibrate the presence gate of the trained weights and, with ``cfg.compare_initial`` and
    ``initial`` (the adapters' weights before training, by name), of the initial weights; keep
    whichever weights track the first training videos better (a tie keeps the trained ones).

    Returns the ``"calibration"`` record: every (weights, threshold) tried with its J&F, the
    weights kept ("trained" or "initial") and their threshold.
    """
    trained = calibrate_presence(model, dataset, cfg, step)
    rows = [{"weights": "trained", **row} for row in trained["presence_jf"]]
    record = {**trained, "weights": "trained", "presence_jf": rows}
    if initial is None or not cfg.compare_initial:
        return record
    params = model.adapter_parameters()
    kept = {name: p.detach().clone() for name, p in params.items()}
    with torch.no_grad():
        for name, value in initial.items():
            if name not in CALIBRATED:
                params[name].copy_(value)
    other = calibrate_presence(model, dataset, cfg, step)
    rows += [{"weights": "initial", **row} for row in other["presence_jf"]]
    best = {
        "trained": max(r["jf"] for r in trained["presence_jf"]),
        "initial": max(r["jf"] for r in other["presence_jf"]),
    }
    if best["initial"] > best["trained"]:
        return {**other, "weights": "initial", "presence_jf": rows}
    with torch.no_grad():
        for name, value in kept.items():
            params[name].copy_(value)
    return {**record, "presence_jf": rows}


def last_calibration(metrics_path: Path) -> Optional[Dict[str, Any]]:
    """The last ``"calibration"`` record of a run's ``metrics.jsonl``, or None."""
    if not metrics_path.is_file():
        return None
    found = None
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("type") == "calibration":
            found = record
    return found


def describe(record: Dict[str, Any]) -> str:
    """One line: what the presence calibration chose, and the J&F of the gate off and chosen."""
    weights = record.get("weights", "trained")
    rows = [row for row in record["presence_jf"] if row.get("weights", "trained") == weights]
    scores = {row["min_similarity"]: row["jf"] for row in rows}
    chosen = record["presence_min_similarity"]
    where = f"on {record['videos']} training videos"
    kept = (
        "" if weights == "trained" else "; the initial weights tracked them better than the trained ones and are kept"
    )
    if chosen is None:
        return f"presence gate calibrated {where}: off (J&F {scores[None]:.3f}; no threshold did better){kept}"
    return (
        f"presence gate calibrated {where}: a mask less similar than {chosen:g} to its object is absent "
        f"(J&F {scores[None]:.3f} with the gate off, {scores[chosen]:.3f} with it){kept}"
    )
