"""Accuracy: the bundled tiny SAM on held-out images, and the upgrade on held-out videos.

Two figures, both on the built-in synthetic data (the only data this benchmark may assume):

- image mIoU of the bundled tiny SAM on held-out test-split frames, with 1 click and with a
  box (the protocol of ``checkpoints/pretrain_tiny_sam.py``, which also recorded them when the
  checkpoint was made; re-measured here so a changed checkpoint or library shows up);
- video J / F / J&F under the semi-supervised protocol: per-frame SAM, the untrained upgrade
  and the trained upgrade, exactly as ``sam-i2v quickstart`` trains and evaluates them (this
  runs the quickstart itself), with its wall-clock time;
- the breakdown of that J by what is happening to each object (clean, look-alike, hidden,
  after an occlusion or exit) for per-frame SAM and the trained upgrade, and the frozen SAM's
  one-step ceiling on clean frames (``benchmarks/accuracy_breakdown.py``);
- all of it also for the trained adapter with motion-aware selection on (``i2v.motion``);
- the same trained adapter against per-frame SAM on more held-out videos (``--check-videos``,
  the quickstart's among them), each gain with its 95 % bootstrap interval over videos: how
  much of the quickstart's gain is the method and how much the choice of a dozen videos;
- on those videos, the untrained upgrade with motion-aware selection too (the training's share
  of the gain), the trained upgrade against the untrained one, memory-only tracking J (no mask
  or box prior, ``benchmarks/memory_path.py``), the presence head's ROC AUC (visible vs
  hidden), J by phase, and per-frame SAM and the trained upgrade with an event oracle
  (``accuracy_breakdown.EventOracle``: empty output on hidden frames, a true-mask prompt when
  an object is back): what perfect presence and re-acquisition would add.

    python -m benchmarks.accuracy [--steps N] [--videos N] [--val-videos N] [--check-videos N] [--device cpu]

(the quickstart's own defaults unless given).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from benchmarks.common import write_result
from i2v.quickstart import DEFAULTS, MOTION_ROW

# What the quickstart is asked to reach on held-out synthetic videos (J&F points over the
# per-frame SAM baseline).
GOAL_GAIN = 15.0


def in_points(gain: Dict[str, Any]) -> Dict[str, Any]:
    """A gain row of ``i2v.eval.report`` (fractions, like every sam-i2v eval output) in J&F
    points, the unit of this benchmark's stored results and plots."""
    return {**gain, **{k: None if gain[k] is None else 100 * gain[k] for k in ("gain", "low", "high")}}


def points_text(row: Dict[str, Any]) -> str:
    """``format_gain`` of a row in points."""
    interval = "" if row["low"] is None else f", 95% interval {row['low']:+.1f} to {row['high']:+.1f}"
    return f"{row['method']} vs {row['baseline']} ({row['protocol']}): {row['gain']:+.1f} J&F points{interval}"


# The wider check's methods told the scripted events (see accuracy_breakdown.EventOracle).
ORACLE_ROWS = ("per-frame SAM + event oracle", "trained upgrade + event oracle")
UNTRAINED_MOTION_ROW = "untrained upgrade + motion"


def image_miou(device: str, instances: int, min_area: int = 20) -> Dict[str, float]:
    """The bundled tiny SAM's held-out image mIoU (1 click, 1 click oracle, 3 clicks, box)."""
    from i2v.build import default_sam_checkpoint
    from i2v.checkpoints.pretrain_tiny_sam import eval_examples, evaluate
    from i2v.sam_builder import load_sam

    sam = load_sam("tiny", default_sam_checkpoint("tiny")).sam.to(device)
    with torch.no_grad():
        return evaluate(sam, eval_examples(instances, min_area))


def video_jf(args: argparse.Namespace) -> Dict[str, object]:
    """Run ``sam-i2v quickstart`` in a scratch folder; its table, wall time and the breakdown
    of its trained adapter's J."""
    from benchmarks.accuracy_breakdown import breakdown
    from i2v.quickstart import run

    with tempfile.TemporaryDirectory() as tmp:
        qs = argparse.Namespace(
            out=str(Path(tmp) / "quickstart"),
            steps=args.steps,
            videos=args.videos,
            val_videos=args.val_videos,
            frames=args.frames,
            device=args.device,
            seed=args.seed,
        )
        start = time.perf_counter()
        run(qs)
        seconds = time.perf_counter() - start
        report = json.loads((Path(qs.out) / "results.json").read_text())
        print("where the J comes from")
        parts = breakdown(str(Path(qs.out) / "adapter"), args.val_videos, args.frames, args.device)
        wider = wider_check(str(Path(qs.out) / "adapter"), args) if args.check_videos else None
    methods = {
        r["method"]: {k: 100 * r["summary"][k] for k in ("j_mean", "f_mean", "jf_mean")} for r in report["results"]
    }
    gain = methods["trained upgrade"]["jf_mean"] - methods["per-frame SAM"]["jf_mean"]
    gain_motion = methods[MOTION_ROW]["jf_mean"] - methods["per-frame SAM"]["jf_mean"]
    return {
        "methods": methods,
        "gain_jf_vs_per_frame_sam": gain,
        "gain_jf_motion_vs_per_frame_sam": gain_motion,
        "goal_gain": GOAL_GAIN,
        "goal_met": max(gain, gain_motion) >= GOAL_GAIN,
        "quickstart_seconds": seconds,
        "sam_sha256": report.get("sam_sha256"),
        "presence_calibration": report.get("presence_calibration"),
        "breakdown": {k: v for k, v in parts.items() if k != "sam_sha256"},
        "quickstart_gain": in_points(next(g for g in report["gains"] if g["method"] == "trained upgrade")),
        "quickstart_gain_motion": in_points(next(g for g in report["gains"] if g["method"] == MOTION_ROW)),
        "wider_check": wider,
    }


def wider_check(adapter: str, args: argparse.Namespace) -> Dict[str, object]:
    """The trained ``adapter`` vs per-frame SAM on the first ``args.check_videos`` held-out videos."""
    from benchmarks.accuracy_breakdown import EventOracle, phase_scores
    from benchmarks.memory_path import memory_only_j, presence_auc
    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig
    from i2v.eval.baselines import PerFrameSamPredictor
    from i2v.eval.cli import run_methods
    from i2v.eval.report import gains_vs_baseline, paired_gain
    from i2v.eval.vos import evaluate
    from i2v.policies import MotionAwarePolicy
    from i2v.video_predictor import I2VVideoPredictor

    print(f"the same adapter on {args.check_videos} held-out videos")
    trained = build_sam_i2v(checkpoint=adapter, device=args.device)
    untrained = build_sam_i2v(trained.config, device=args.device)
    dataset = make_dataset(
        "synthetic", split="val", num_videos=args.check_videos, config=SyntheticConfig(num_frames=args.frames)
    )
    results = run_methods(trained, untrained, dataset, ["mask"], baselines=True, ablations=False, trained=True)
    motion = MotionAwarePolicy()
    results.append(evaluate(I2VVideoPredictor(trained, policy=motion), dataset, None, "mask", MOTION_ROW))
    # how much of that is the training
    with_motion = I2VVideoPredictor(untrained, policy=motion)
    results.append(evaluate(with_motion, dataset, None, "mask", UNTRAINED_MOTION_ROW))
    for name, predictor in (
        (ORACLE_ROWS[0], PerFrameSamPredictor(untrained)),
        (ORACLE_ROWS[1], I2VVideoPredictor(trained)),
    ):
        results.append(evaluate(EventOracle(predictor), dataset, None, "mask", name))
    gains = [in_points(g) for g in gains_vs_baseline(results)]
    by_name = {r.method: r for r in results}
    # Motion-aware selection against the same adapter without it, paired on the same videos.
    motion = in_points(
        {
            "method": MOTION_ROW,
            "baseline": "trained upgrade",
            "protocol": "mask",
            **paired_gain(by_name["trained upgrade"], by_name[MOTION_ROW]),
        }
    )
    # The training's share: the trained adapter against the untrained one, both with motion.
    training = in_points(
        {
            "method": MOTION_ROW,
            "baseline": UNTRAINED_MOTION_ROW,
            "protocol": "mask",
            **paired_gain(by_name[UNTRAINED_MOTION_ROW], by_name[MOTION_ROW]),
        }
    )
    # What the training added to the memory path: trained against untrained, both without motion.
    learned = in_points(
        {
            "method": "trained upgrade",
            "baseline": "untrained upgrade",
            "protocol": "mask",
            **paired_gain(by_name["untrained upgrade"], by_name["trained upgrade"]),
        }
    )
    for row in gains + [motion, training, learned]:
        print("  " + points_text(row))
    indices = range(args.check_videos)
    memory = {
        "trained": memory_only_j(trained, dataset, indices),
        "untrained": memory_only_j(untrained, dataset, indices),
    }
    presence = {
        "trained": presence_auc(trained, dataset, indices),
        "untrained": presence_auc(untrained, dataset, indices),
    }
    print(
        f"  memory-only tracking J on visible frames: trained {memory['trained']['j_visible']:.3f}, "
        f"untrained {memory['untrained']['j_visible']:.3f}; presence ROC AUC (visible vs hidden): "
        f"trained {presence['trained']['auc']:.3f}, untrained {presence['untrained']['auc']:.3f}"
    )
    phases = {
        "trained upgrade": phase_scores(I2VVideoPredictor(trained), dataset, indices),
        "per-frame SAM": phase_scores(PerFrameSamPredictor(untrained), dataset, indices),
    }
    return {
        "videos": args.check_videos,
        "jf": {r.method: 100 * r.summary()["jf_mean"] for r in results},
        "gains": gains,
        "motion_vs_trained": motion,
        "trained_vs_untrained_with_motion": training,
        "trained_vs_untrained": learned,
        "memory_only": memory,
        "presence": presence,
        "phases": phases,
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="quickstart training steps")
    parser.add_argument("--videos", type=int, default=DEFAULTS["videos"])
    parser.add_argument("--val-videos", type=int, default=DEFAULTS["val_videos"])
    parser.add_argument("--frames", type=int, default=DEFAULTS["frames"])
    parser.add_argument(
        "--check-videos",
        type=int,
        default=48,
        help="held-out videos for the wider check of the trained adapter (0: skip it)",
    )
    parser.add_argument("--image-instances", type=int, default=240, help="held-out objects for the image mIoU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("image mIoU of the bundled tiny SAM")
    image = image_miou(args.device, args.image_instances)
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in image.items() if k.endswith("miou")))
    print("video J&F: sam-i2v quickstart")
    video = video_jf(args)
    metrics = {"image": image, "video": {k: v for k, v in video.items() if k != "sam_sha256"}}
    path = write_result(
        "accuracy", config=vars(args), metrics=metrics, device=args.device, sam_sha256=video["sam_sha256"]
    )  # type: ignore[arg-type]
    print(points_text(video["quickstart_gain_motion"]))
    print(
        f"{points_text(video['quickstart_gain'])} (goal +{GOAL_GAIN:.0f}); "
        f"quickstart {video['quickstart_seconds']:.0f} s; wrote {path}"
    )


if __name__ == "__main__":
    main()
