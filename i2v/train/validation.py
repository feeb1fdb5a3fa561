"""Validation during training: J&F of the current adapters on the first videos of a split,
scored as :mod:`i2v.eval` scores them, as one ``metrics.jsonl`` record."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, Optional

from i2v.data.base import VideoDataset
from i2v.model import SamI2V
from i2v.train.config import TrainConfig
from i2v.train.data import open_reader


def validate(model: SamI2V, cfg: TrainConfig, step: int, dataset: Optional[VideoDataset] = None) -> Dict[str, Any]:
    """The ``"val"`` record of step ``step``: J, F and J&F on the first ``cfg.val.num_videos``
    videos of ``dataset``, or of ``cfg.val.split`` of the recipe's first dataset. The model is
    back in train mode afterwards."""
    from i2v.eval.vos import evaluate
    from i2v.video_predictor import I2VVideoPredictor

    v = cfg.val
    if dataset is None:
        dataset = open_reader(cfg.data[0], split=v.split, num_videos=v.num_videos)
    indices = list(range(min(v.num_videos, len(dataset))))
    try:
        result = evaluate(
            I2VVideoPredictor(model),
            dataset,
            indices,
            protocol=v.protocol,
            method=f"step{step}",
            progress=False,
        )
    finally:
        model.train()  # the predictor puts the model in eval mode
    s = result.summary()
    return {
        "type": "val",
        "step": step,
        "j": s["j_mean"],
        "f": s["f_mean"],
        "jf": s["jf_mean"],
        "protocol": v.protocol,
        "videos": [asdict(r) for r in result.rows],
    }
