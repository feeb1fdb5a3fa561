"""``sam-i2v quickstart``: the whole story on a CPU in minutes, with no network.

1. load the bundled tiny SAM (a stand-in for an official checkpoint);
2. upgrade it: train the adapters on synthetic training videos (frozen encoder, cached features);
3. evaluate on held-out synthetic videos: per-frame SAM vs the untrained vs the trained upgrade
   (also with motion-aware selection, :mod:`i2v.motion`), each gain over per-frame SAM with a
   95 % bootstrap interval over the videos;
4. write the adapter, the results table (JSON + CSV), a training-curve plot and an overlay GIF.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

# Defaults of the command (also used by benchmarks/accuracy.py, which runs it).
DEFAULTS = {"steps": 600, "videos": 32, "val_videos": 12, "frames": 24}
# Table row of the trained adapter with motion-aware selection switched on (i2v.motion).
MOTION_ROW = "trained upgrade + motion"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="upgrade the bundled tiny SAM on synthetic videos and evaluate it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="quickstart_out", help="output directory")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="training steps")
    p.add_argument("--videos", type=int, default=DEFAULTS["videos"], help="synthetic training videos")
    p.add_argument(
        "--val-videos", type=int, default=DEFAULTS["val_videos"], help="held-out synthetic videos to evaluate on"
    )
    p.add_argument("--frames", type=int, default=DEFAULTS["frames"], help="frames per synthetic video")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _train_config(args: argparse.Namespace, out: Path, extra: Sequence[str] = ()):
    """The quickstart's training recipe; ``extra`` overrides come last (benchmarks' variants)."""
    from i2v.train.config import load_train_config

    recipe = Path(str(resources.files("i2v.configs").joinpath("train_tiny_synthetic.yaml")))
    val_every = args.steps // 5 if args.steps >= 50 else args.steps  # five points on the curve
    overrides = [
        f"optim.max_steps={args.steps}",
        f"optim.warmup_steps={max(1, args.steps // 15)}",
        f"data.0.num_videos={args.videos}",
        f"data.0.synthetic.num_frames={args.frames}",
        f"val.every={val_every}",
        f"val.num_videos={min(4, args.val_videos)}",
        f"checkpoint_every={args.steps}",
        f"output_dir={out / 'train'}",
        f"seed={args.seed}",
        *extra,
    ]
    return load_train_config(recipe, overrides)


def plot_curve(metrics_path: Path, png: Path) -> None:
    """Training loss and validation J&F against the step, as a PNG."""
    from i2v.train.curve import plot_training_curve

    plot_training_curve(metrics_path, png, title="sam-i2v quickstart: tiny SAM upgrade on synthetic videos")


def overlay_gif(predictor, dataset, index: int, path: Path) -> None:
    """Ground truth (left) and the trained upgrade (right) on one held-out video."""
    from i2v.eval.vos import segment_video
    from i2v.io.overlay import overlay_masks, write_overlay_video

    preds, gts = segment_video(predictor, dataset, index, "mask")
    ids = list(dataset.obj_ids(index))
    frames = (
        np.concatenate(
            [
                overlay_masks(dataset.frame(index, t), gts[t], ids),
                overlay_masks(dataset.frame(index, t), preds[t], ids),
            ],
            axis=1,
        )
        for t in range(len(gts))
    )
    write_overlay_video(path, frames, fps=6)


def run(args: argparse.Namespace) -> int:
    import torch

    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.eval.cli import run_methods
    from i2v.eval.report import format_gain, format_table, gains_vs_baseline, paired_gain, write_reports
    from i2v.eval.vos import evaluate
    from i2v.policies import MotionAwarePolicy
    from i2v.pretrained import save_pretrained
    from i2v.train.calibration import describe, last_calibration
    from i2v.train.trainer import train
    from i2v.video_predictor import I2VVideoPredictor

    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    print(f"[1/4] upgrading the bundled tiny SAM on {args.videos} synthetic videos ({args.steps} steps)")
    cfg = _train_config(args, out)
    result = train(cfg, overwrite=True)  # its own folder: a second quickstart replaces the first's run
    calibrated = last_calibration(result.output_dir / "metrics.jsonl")
    if calibrated is not None:
        print(f"      {describe(calibrated)}")
    trained = build_sam_i2v(checkpoint=result.checkpoint, device=args.device)
    adapter = save_pretrained(trained, out / "adapter")
    untrained = build_sam_i2v(trained.config, device=args.device)

    print(f"[2/4] evaluating on {args.val_videos} held-out synthetic videos")
    from i2v.data.synthetic import SyntheticConfig

    dataset = make_dataset(
        "synthetic", split="val", num_videos=args.val_videos, config=SyntheticConfig(num_frames=args.frames)
    )
    results = run_methods(trained, untrained, dataset, ["mask"], baselines=True, ablations=False, trained=True)
    with_motion = I2VVideoPredictor(trained, policy=MotionAwarePolicy())  # the same adapter, another policy
    results.append(evaluate(with_motion, dataset, None, "mask", MOTION_ROW))
    table = format_table(results)
    paths = write_reports(
        results,
        out,
        {
            "command": "sam-i2v quickstart",
            "args": vars(args) | {"func": None},
            "sam_sha256": trained.sam_sha256,
            "train_steps": result.step,
            "presence_calibration": calibrated,
        },
    )

    print("[3/4] plotting the training curve")
    curve = out / "training_curve.png"
    plot_curve(result.output_dir / "metrics.jsonl", curve)

    print("[4/4] rendering a held-out video")
    gif = out / "overlay.gif"
    overlay_gif(I2VVideoPredictor(trained), dataset, 0, gif)

    gains = {g["method"]: g for g in gains_vs_baseline(results)}
    print()
    print(table)
    print()
    by_name = {r.method: r for r in results}
    learned = {
        "method": "trained upgrade",
        "baseline": "untrained upgrade",
        "protocol": "mask",
        **paired_gain(by_name["untrained upgrade"], by_name["trained upgrade"]),
    }
    print(format_gain(gains["untrained upgrade"]))
    print(format_gain(gains[MOTION_ROW]))
    print(f"{format_gain(learned)}: what training added")
    print(f"{format_gain(gains['trained upgrade'])}; {time.time() - start:.0f} s in all")
    print(f"adapter:        {adapter}")
    print(f"results:        {paths['json']} and {paths['csv']}")
    print(f"training curve: {curve}")
    print(f"overlay:        {gif} (left: ground truth, right: trained upgrade)")
    return 0
