"""What training adds over the untrained upgrade, variant by variant, on a development split.

Each variant trains the tiny upgrade exactly as ``sam-i2v quickstart`` does (its recipe and
step count) with a few recipe overrides, then scores the trained and the untrained adapter on
the synthetic ``test`` split (a development split: the held-out ``val`` videos that the
README's figures use are never touched here), paired over videos with a 95 % bootstrap
interval. For the first variant it also exchanges parts between the two adapters (the trained
read-out with the untrained presence head and the other way round), to say which part the
difference comes from.

    python -m benchmarks.training_share [--videos 24] [--steps 600] [--variants default no-refiner ...]

A variant is a name from ``VARIANTS`` (each a list of recipe overrides; ``fit-dev-videos`` trains
on the development videos themselves, to measure the adapters' headroom). The stored result ran
them in the order ``presence-bias-4`` first (so its parts were exchanged), ``default`` later.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import torch

from benchmarks.common import write_result

# Recipe overrides of each variant (on top of the quickstart's own).
_PRESENCE_4 = "model.memory_prompt.presence_bias=4.0"  # the presence head's previous start
VARIANTS: Dict[str, List[str]] = {
    "default": [],
    "seed-1": ["seed=1"],
    "presence-bias-4": [_PRESENCE_4],
    "presence-bias-4-no-refiner": [_PRESENCE_4, "model.memory_readout.refine_dim=0"],
    "presence-bias-4-keys-frozen": [_PRESENCE_4, "model.memory_readout.learn_keys=false"],
    "presence-bias-4-decoder-lora": [_PRESENCE_4, "model.lora.enabled=true"],
    "presence-bias-4-200-videos": [_PRESENCE_4, "data.0.num_videos=200"],
    # 12-frame training clips instead of 6: more occlusions and re-appearances per clip.
    "clips-12": ["clip.num_frames=12"],
    # Headroom, not a recipe: trained on the very development videos it is scored on. What the
    # adapters can gain at most when generalisation is taken out of the question.
    "fit-dev-videos": ["data.0.split=test", "data.0.num_videos={videos}"],
}


def train_variant(overrides: List[str], steps: int, out: Path) -> Path:
    """Train as the quickstart does, with ``overrides``; returns the final checkpoint."""
    from i2v.quickstart import DEFAULTS, _train_config
    from i2v.train.trainer import train

    qs = argparse.Namespace(
        steps=steps, videos=DEFAULTS["videos"], val_videos=DEFAULTS["val_videos"], frames=DEFAULTS["frames"], seed=0
    )
    cfg = _train_config(qs, out, extra=[*overrides, "val.every=0"])
    return Path(train(cfg, overwrite=True).checkpoint)


def score(models: Dict[str, torch.nn.Module], videos: int) -> Dict[str, object]:
    """J&F of each model on the development split, and each one's paired gain over "untrained"."""
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig
    from i2v.eval.report import paired_gain
    from i2v.eval.vos import evaluate
    from i2v.quickstart import DEFAULTS
    from i2v.video_predictor import I2VVideoPredictor

    dataset = make_dataset(
        "synthetic", split="test", num_videos=videos, config=SyntheticConfig(num_frames=DEFAULTS["frames"])
    )
    results = {
        name: evaluate(I2VVideoPredictor(m, progress=False), dataset, None, "mask", name, progress=False)
        for name, m in models.items()
    }
    out: Dict[str, object] = {name: 100 * r.summary()["jf_mean"] for name, r in results.items()}
    for name, r in results.items():
        if name != "untrained":
            gain = paired_gain(results["untrained"], r)
            out[f"{name} vs untrained"] = {k: 100 * v if k in ("gain", "low", "high") else v for k, v in gain.items()}
    return out


def run_variant(name: str, args: argparse.Namespace, swap: bool) -> Dict[str, object]:
    from i2v.build import build_sam_i2v

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [o.format(videos=args.videos) for o in VARIANTS[name]]
        checkpoint = train_variant(overrides, args.steps, Path(tmp))
        trained = build_sam_i2v(checkpoint=checkpoint, device=args.device)
        untrained = build_sam_i2v(trained.config, device=args.device)
        models = {"untrained": untrained, "trained": trained}
        if swap:
            readout_only = build_sam_i2v(checkpoint=checkpoint, device=args.device)
            readout_only.presence_head.load_state_dict(untrained.presence_head.state_dict())
            presence_only = build_sam_i2v(trained.config, device=args.device)
            presence_only.presence_head.load_state_dict(trained.presence_head.state_dict())
            models.update(
                {
                    "trained read-out, untrained presence": readout_only,
                    "untrained read-out, trained presence": presence_only,
                }
            )
        result = score(models, args.videos)
        result["presence_bias_after_training"] = float(trained.presence_head.mlp[-1].bias.detach())
    gain = result["trained vs untrained"]
    print(f"{name:24s} trained vs untrained {gain['gain']:+.1f} J&F ({gain['low']:+.1f} to {gain['high']:+.1f})")  # type: ignore[index]
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24, help="development (test split) videos")
    parser.add_argument("--steps", type=int, default=600, help="training steps (the quickstart's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="result JSON (default benchmarks/results/training_share.json)")
    args = parser.parse_args(argv)
    metrics = {name: run_variant(name, args, swap=(i == 0)) for i, name in enumerate(args.variants)}
    path = write_result("training_share", config=vars(args), metrics=metrics, device=args.device, path=args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
