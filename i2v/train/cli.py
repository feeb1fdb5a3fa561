"""``sam-i2v train`` and ``sam-i2v cache-features``.

    sam-i2v train --config configs/train_tiny_synthetic.yaml [--resume | --overwrite] [optim.lr=3e-4 ...]
    sam-i2v cache-features --config configs/train_vit_b_sav.yaml [key=value ...]
    accelerate launch --num_processes 2 -m i2v.cli train --config ...   # several GPUs (DDP)

Overrides are dotted paths into the recipe, values parsed as YAML: ``optim.max_steps=200``,
``data.0.num_videos=8``, ``clip.size=[64,80]``, ``model.upgrader.dim=32``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, help="training recipe: a YAML path, or a bundled recipe name (train_tiny_synthetic)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides as dotted paths, values parsed as YAML (optim.lr=3e-4)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train the adapters of an upgraded SAM",
        description="Train the adapters of an upgraded SAM (the SAM itself stays frozen).",
    )
    _common(train)
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in output_dir (step count, schedule, data order)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in output_dir (its checkpoints, metrics log and TensorBoard folder); "
        "with --resume, only when none of its checkpoints is intact",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    cache = subparsers.add_parser(
        "cache-features",
        help="precompute the frozen encoder's outputs for a recipe",
        description="Compute the frozen SAM image encoder's outputs for every frame of the "
        "recipe's training datasets into its feature cache (under accelerate launch, "
        "processes share the videos).",
    )
    _common(cache)
    cache.add_argument("--no-progress", action="store_true", help="no progress bar")
    cache.set_defaults(func=run_cache_features)


def run_train(args: argparse.Namespace) -> int:
    from i2v.train.calibration import describe, last_calibration
    from i2v.train.config import load_train_config
    from i2v.train.metrics_log import METRICS_NAME
    from i2v.train.trainer import train

    cfg = load_train_config(args.config, args.overrides)
    result = train(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    if result.main_process:
        print(
            f"trained to step {result.step}; last loss {result.last_loss:.4f}; "
            f"{result.nonfinite_steps} skipped step(s); checkpoint: {result.checkpoint}"
        )
        if result.curve is not None:
            print(f"training curve: {result.curve}")
        calibrated = last_calibration(result.output_dir / METRICS_NAME)
        if calibrated is not None and calibrated.get("step") == result.step:
            print(describe(calibrated))
    return 0


def run_cache_features(args: argparse.Namespace) -> int:
    import torch
    from accelerate import Accelerator

    from i2v.train.config import check_cacheable, load_train_config
    from i2v.train.feature_cache import fill_cache
    from i2v.train.trainer import build_model

    cfg = load_train_config(args.config, args.overrides)
    check_cacheable(cfg.model)
    acc = Accelerator(mixed_precision=cfg.precision, cpu=not torch.cuda.is_available())
    model = build_model(cfg, acc.device).eval()
    report = fill_cache(
        cfg,
        model,
        acc.process_index,
        acc.num_processes,
        autocast=acc.autocast,
        progress=acc.is_local_main_process and not args.no_progress,
    )
    print(json.dumps(asdict(report)))
    return 0
