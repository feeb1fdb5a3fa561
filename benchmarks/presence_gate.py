"""The presence head's appearance gate: what each threshold does, and what calibration picks.

The gate calls a tracked object absent when the mask the decoder found is less similar to the
object's prompted appearance than a threshold (``PresenceHead.min_similarity``); training sets
the threshold by tracking its own training videos (:mod:`i2v.train.calibration`). This script
shows, on a development split (never the held-out val videos), paired over videos with a 95 %
bootstrap interval against the gate off:

- J&F with the gate at each candidate threshold, on the untrained upgrade (a sweep: how flat
  the optimum is, and how far calibration's choice is from the best one here);
- the threshold calibration picks on the training videos (the quickstart's 32), and its gain.

    python -m benchmarks.presence_gate [--videos 24] [--split test] [--train-videos 32]
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

import numpy as np
import torch

from benchmarks.prompt_oracle import paired
from i2v.adapters.memory_prompt import GATE_OFF

CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9)


def per_video_jf(model, dataset, similarity: Optional[float]) -> List[float]:
    """J&F (points) of each video with the gate at ``similarity`` (None: off)."""
    from i2v.eval.vos import evaluate
    from i2v.video_predictor import I2VVideoPredictor

    with torch.no_grad():
        model.presence_head.min_similarity.fill_(GATE_OFF if similarity is None else similarity)
    predictor = I2VVideoPredictor(model, progress=False)
    result = evaluate(predictor, dataset, None, "mask", "gate", progress=False)
    return [100 * row.jf_mean for row in result.rows]


def main(argv: Optional[List[str]] = None) -> None:
    from benchmarks.common import write_result
    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig
    from i2v.train.calibration import CalibrationConfig, calibrate_presence

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--split", default="test", help="a development split; the held-out val is for the README")
    parser.add_argument("--train-videos", type=int, default=32, help="training videos calibration tracks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    model = build_sam_i2v("tiny", device=args.device)
    frames = SyntheticConfig(num_frames=args.frames)
    dev = make_dataset("synthetic", split=args.split, num_videos=args.videos, config=frames)
    off = np.array(per_video_jf(model, dev, None))
    metrics: Dict[str, object] = {"off": float(off.mean()), "sweep": {}}
    print(f"gate off          J&F {off.mean():.1f}")
    for s in CANDIDATES:
        scores = np.array(per_video_jf(model, dev, s))
        gain = paired(scores - off)
        metrics["sweep"][str(s)] = {"jf": float(scores.mean()), "vs off": gain}  # type: ignore[index]
        print(
            f"min similarity {s}: J&F {scores.mean():.1f}  vs off {gain['gain']:+.1f} ({gain['low']:+.1f} to {gain['high']:+.1f})"
        )
    train = make_dataset("synthetic", split="train", num_videos=args.train_videos, config=frames)
    record = calibrate_presence(model, train, CalibrationConfig(num_videos=args.train_videos))
    chosen = record["presence_min_similarity"]
    scores = np.array(per_video_jf(model, dev, chosen))
    metrics["calibration"] = {"record": record, "jf": float(scores.mean()), "vs off": paired(scores - off)}
    print(f"calibrated on {args.train_videos} training videos: {chosen}; J&F here {scores.mean():.1f}")
    path = write_result("presence_gate", config=vars(args), metrics=metrics, device=args.device, path=args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
