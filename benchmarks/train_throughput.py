"""Training-step throughput with the feature cache vs computing features on the fly.

Same recipe in both modes (vit_b architecture, random weights: speed does not depend on the
values), same clips, pixel augmentation off in both; only ``feature_cache.enabled`` differs.
The cached mode's warm-up steps fill the cache for the clips the timed steps read, so the timed
steps measure steady-state training (after ``sam-i2v cache-features``). Each mode runs in its own
process, so their peak memories do not mix. Goal: cached >= 5x on-the-fly steps/s.

    python -m benchmarks.train_throughput [--device cpu|cuda] [--frames 4] [--objects 2] [--steps 2]

Peak memory per step: CUDA ``max_memory_allocated`` over the timed steps on a GPU; on a CPU the
largest resident set size sampled during them (it includes the frozen SAM's weights).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

MODES = ("cached", "on_the_fly")


def recipe(args: argparse.Namespace, mode: str, out: Path) -> Dict[str, Any]:
    """The training recipe of one mode (identical but for the cache switch)."""
    return {
        "model": args.config,
        "allow_random_sam": True,
        "output_dir": str(out / mode),
        # one video exactly one clip long: every step trains on the same frames, so the
        # cached mode's warm-up fills everything its timed steps read
        "data": [
            {
                "type": "synthetic",
                "num_videos": 1,
                "synthetic": {"num_frames": args.frames, "min_objects": args.objects, "max_objects": args.objects},
            }
        ],
        "clip": {
            "num_frames": args.frames,
            "max_objects": args.objects,
            "reverse_prob": 0.5,
            "augment": {"enabled": False},
        },
        "optim": {"batch_size": 1, "warmup_steps": 0, "max_steps": 10**6},
        "precision": args.precision,
        "feature_cache": {"enabled": mode == "cached", "dtype": "float16"},
        "checkpoint_every": 10**6,
        "val": {"every": 0},
    }


class RssSampler:
    """Largest resident set size of this process, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak


def run_mode(args: argparse.Namespace, mode: str) -> Dict[str, Any]:
    """Warm up, then time ``args.steps`` optimizer steps of one mode (in this process)."""
    from i2v.train.config import train_config_from_dict
    from i2v.train.trainer import Trainer

    cfg = train_config_from_dict(recipe(args, mode, Path(args.workdir)))
    tr = Trainer(cfg, progress=False)
    clips = (tr.dataset[i] for i in range(10**9))
    for _ in range(args.warmup):
        tr.train_step(clips)
    device = tr.acc.device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = RssSampler()
    times: List[float] = []
    for _ in range(args.steps):
        start = time.perf_counter()
        tr.train_step(clips)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    rss = sampler.stop()
    return {
        "mode": mode,
        "seconds_per_step": sum(times) / len(times),
        "step_seconds": times,
        "trainable_parameters": sum(p.numel() for p in tr.model.trainable_parameters()),
        "sam_parameters": sum(p.numel() for p in tr.model.sam.parameters()),
        "peak_rss_mib": round(rss / 2**20, 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "device": str(device),
        "sam_sha256": tr.model.sam_sha256,
    }


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="vit_b", help="model config (architecture) to train")
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--objects", type=int, default=2, help="objects per clip")
    p.add_argument("--steps", type=int, default=2, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per mode (the cached mode fills its cache)")
    p.add_argument("--precision", default="no", choices=("no", "bf16", "fp16"))
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # worker: run one mode, print JSON
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode:
        print("RESULT " + json.dumps(run_mode(args, args.mode)))
        return 0

    from benchmarks.common import format_table, write_result

    env = None
    if args.device == "cpu":
        import os

        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    results: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as work:
        for mode in MODES:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.train_throughput",
                "--mode",
                mode,
                "--workdir",
                work,
                "--config",
                args.config,
                "--frames",
                str(args.frames),
                "--objects",
                str(args.objects),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--precision",
                args.precision,
            ]
            done = subprocess.run(
                cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent
            )
            if done.returncode != 0:
                sys.stderr.write(done.stdout + done.stderr)
                return done.returncode
            line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
            results[mode] = json.loads(line[len("RESULT ") :])
    cached, fly = results["cached"], results["on_the_fly"]
    speedup = fly["seconds_per_step"] / cached["seconds_per_step"]
    mem = "peak_cuda_mib" if cached["peak_cuda_mib"] is not None else "peak_rss_mib"
    rows = [[m, f"{r['seconds_per_step']:.3f}", f"{1 / r['seconds_per_step']:.3f}", r[mem]] for m, r in results.items()]
    print(format_table(["mode", "s/step", "steps/s", mem], rows))
    print(
        f"speedup with the cache: {speedup:.1f}x (goal >= 5x); trainable parameters: "
        f"{cached['trainable_parameters']:,} ({100 * cached['trainable_parameters'] / cached['sam_parameters']:.2f} % of SAM)"
    )
    config = {k: v for k, v in vars(args).items() if k not in ("mode", "workdir")}
    metrics = {
        "speedup": speedup,
        "goal_speedup": 5.0,
        "meets_goal": speedup >= 5.0,
        "trainable_parameters": cached["trainable_parameters"],
        "sam_parameters": cached["sam_parameters"],
        "modes": results,
    }
    path = write_result(
        "train_throughput", config=config, metrics=metrics, device=cached["device"], sam_sha256=cached["sam_sha256"]
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
