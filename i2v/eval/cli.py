"""``sam-i2v eval``: score the upgrade, its baselines and ablations on a VOS dataset.

    sam-i2v eval --dataset davis --root DAVIS --split val --checkpoint runs/vit_b \
                 --sam-checkpoint sam_vit_b_01ec64.pth --baselines --protocol mask click1
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from i2v.eval.vos import PROTOCOLS, VOSResult, evaluate


@contextlib.contextmanager
def model_variant(model, upgrader: Optional[bool] = None, strategy: Optional[str] = None) -> Iterator[None]:
    """Temporarily switch the upgrader off or change the memory strategy of ``model``."""
    saved = (model.config, model.upgrader.cfg)
    cfg = model.config
    if upgrader is not None:
        cfg = dataclasses.replace(cfg, upgrader=dataclasses.replace(cfg.upgrader, enabled=upgrader))
        model.upgrader.cfg = cfg.upgrader
    if strategy is not None:
        memory = dataclasses.replace(cfg.memory, filter=dataclasses.replace(cfg.memory.filter, strategy=strategy))
        cfg = dataclasses.replace(cfg, memory=memory)
    model.config = cfg
    try:
        yield
    finally:
        model.config, model.upgrader.cfg = saved


def run_methods(model, untrained, dataset, protocols: List[str], *, baselines: bool, ablations: bool,
                trained: bool, indices=None, progress: bool = True) -> List[VOSResult]:
    """Evaluate the model (and optionally baselines / ablations) under each protocol."""
    from i2v.eval.baselines import PerFrameSamPredictor
    from i2v.memory_filter import STRATEGIES
    from i2v.video_predictor import I2VVideoPredictor

    name = "trained upgrade" if trained else "untrained upgrade"
    runs: List[Tuple[str, object, dict]] = []
    if baselines:
        runs.append(("per-frame SAM", PerFrameSamPredictor(untrained), {}))
        if trained:
            runs.append(("untrained upgrade", I2VVideoPredictor(untrained), {}))
    runs.append((name, I2VVideoPredictor(model), {}))
    if ablations:
        runs.append((f"{name}, upgrader off", I2VVideoPredictor(model), {"upgrader": False}))
        for strategy in STRATEGIES:
            if strategy != model.config.memory.filter.strategy:
                runs.append((f"{name}, memory={strategy}", I2VVideoPredictor(model), {"strategy": strategy}))
    results = []
    for protocol in protocols:
        for label, predictor, variant in runs:
            with model_variant(model, **variant):
                results.append(evaluate(predictor, dataset, indices, protocol, label, progress))
    return results


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate on a VOS dataset (J, F, J&F)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("davis", "sav", "ytvos", "mose", "synthetic"), required=True)
    p.add_argument("--root", default=None, help="dataset folder (not needed for synthetic)")
    p.add_argument("--split", default=None, help="split name (default: the dataset's validation split)")
    p.add_argument("--num-videos", type=int, default=20, help="synthetic only: how many held-out videos")
    p.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N videos")
    p.add_argument("--protocol", nargs="+", default=["mask"], choices=PROTOCOLS)
    p.add_argument("--config", default="tiny")
    p.add_argument("--checkpoint", default=None, help="adapter directory from save_pretrained")
    p.add_argument("--sam-checkpoint", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--baselines", action="store_true", help="also per-frame SAM and the untrained upgrade")
    p.add_argument("--ablations", action="store_true", help="also upgrader off and each memory strategy")
    p.add_argument("--out", default="eval_out", help="directory for results.csv / results.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.eval.report import format_table, write_reports

    kwargs = {"num_videos": args.num_videos} if args.dataset == "synthetic" else {}
    dataset = make_dataset(args.dataset, args.root, args.split, **kwargs)
    model = build_sam_i2v(args.config, args.checkpoint, args.sam_checkpoint, args.device)
    untrained = build_sam_i2v(model.config, None, args.sam_checkpoint, args.device) if args.checkpoint else model
    indices = range(min(len(dataset), args.max_videos)) if args.max_videos else None
    results = run_methods(model, untrained, dataset, args.protocol, baselines=args.baselines,
                          ablations=args.ablations, trained=args.checkpoint is not None, indices=indices)
    print(format_table(results))
    paths = write_reports(results, Path(args.out), {"dataset": args.dataset, "split": args.split, "sam_sha256": model.sam_sha256})
    print(f"wrote {paths['csv']} and {paths['json']}")
    return 0
