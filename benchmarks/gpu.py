"""Per-frame milliseconds and frames per second on one GPU, every system in the same run.

sam-i2v on vit_b and vit_t (random weights, 1024 px, the worst-case tracking path of
:func:`benchmarks.cost.worst_case`) with the image encoder in float32, in bfloat16, and in
bfloat16 under ``torch.compile``; 1 and 8 objects. SAM 2.1-T and B+ (random weights, their own
configs) in float32 and under bfloat16 autocast, as SAM 2's README runs them, when the ``sam2``
package is installed (the ``bench`` extra). Each run: prompt boxes on frame 0, ``--warmup``
propagated frames (compilation, allocator, cuDNN autotuning) not counted, then ``--frames``
timed ones (CUDA synchronised after each); the encoder's share comes from hooks on it. Anchor:
SAM 2.1's README reports 91 FPS (T) and 64 FPS (B+) on an A100, compiled, bfloat16.

    python -m benchmarks.gpu --out benchmarks/results/gpu.json        # one GPU, a few minutes
    python -m benchmarks.gpu --device cpu --tiny --out /tmp/smoke.json  # the same code, seconds

Without CUDA (and without ``--device cpu``) it says so and exits 0 without measuring anything.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from benchmarks.common import format_table, write_result
from benchmarks.predictor_probes import EncoderTap, object_boxes, write_jpeg_video

SAM2_ANCHOR_FPS = {"sam2.1-t": 91.0, "sam2.1-b+": 64.0}  # SAM 2.1 README, A100, compiled, bf16
I2V_MODES = ("float32", "bfloat16", "bfloat16+compile")
SAM2_MODES = ("float32", "bfloat16-autocast")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_propagation(tracker: Any, state: Any, device: torch.device, warmup: int, frames: int) -> Dict[str, Any]:
    """Milliseconds of each timed frame and of its encoder call."""
    tap = EncoderTap(tracker.encoder)
    total, encoder = [], []
    try:
        _sync(device)
        start = time.perf_counter()
        tap.reset()
        for t in tracker.propagate(state, warmup + frames):
            _sync(device)
            now = time.perf_counter()
            if t > warmup:
                total.append(1e3 * (now - start))
                encoder.append(1e3 * tap.seconds)
            tap.reset()
            start = time.perf_counter()
    finally:
        tap.remove()
    ms = statistics.median(total)
    return {
        "ms_per_frame": ms,
        "fps": 1e3 / ms,
        "encoder_ms": statistics.median(encoder),
        "tracking_ms": statistics.median(t - e for t, e in zip(total, encoder)),
        "frame_ms": total,
    }


def run_i2v(
    sam_type: str, mode: str, objects: int, device: torch.device, video: Path, size: int, args: argparse.Namespace
) -> Dict[str, Any]:
    from benchmarks.cost import worst_case
    from benchmarks.trackers import Tracker
    from i2v.build import build_sam_i2v
    from i2v.video_predictor import I2VVideoPredictor

    torch.manual_seed(0)
    dtype = "float32" if mode == "float32" else "bfloat16"
    model = worst_case(build_sam_i2v(sam_type, device=device, allow_random_sam=True, dtype=dtype))
    if mode.endswith("+compile"):
        model.sam.image_encoder.compile(backend=args.compile_backend)
    tracker = Tracker(sam_type, I2VVideoPredictor(model, progress=False), model.sam.image_encoder, lambda s: s.video)
    state = tracker.start(video, object_boxes(size, objects))
    return _timed_propagation(tracker, state, device, args.warmup, args.frames)


def run_sam2(
    name: str, mode: str, objects: int, device: torch.device, video: Path, size: int, args: argparse.Namespace
) -> Dict[str, Any]:
    from benchmarks.trackers import build_tracker

    tracker = build_tracker(name, str(device), image_size=args.sam2_size)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bfloat16-autocast" else contextlib.nullcontext()
    )
    with autocast:
        state = tracker.start(video, object_boxes(size, objects))
        return _timed_propagation(tracker, state, device, args.warmup, args.frames)


def plan(args: argparse.Namespace, sam2_ok: bool) -> List[Dict[str, Any]]:
    """Every (system, mode, objects) run; compiled runs last, so a spent budget drops them first."""
    runs = [{"system": t, "mode": m, "objects": n} for t in args.types for m in args.modes for n in args.objects]
    if sam2_ok:
        runs += [{"system": s, "mode": m, "objects": n} for s in args.sam2 for m in SAM2_MODES for n in args.objects]
    return sorted(runs, key=lambda r: r["mode"].endswith("+compile"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="smoke run: the tiny config, few frames, no SAM 2")
    p.add_argument("--types", nargs="+", default=None, help="sam-i2v SAM types (default vit_b vit_t; tiny with --tiny)")
    p.add_argument("--modes", nargs="+", default=list(I2V_MODES), choices=I2V_MODES)
    p.add_argument("--objects", type=int, nargs="+", default=[1, 8])
    p.add_argument("--sam2", nargs="*", default=None, help="SAM 2.1 systems (default both, none with --tiny)")
    p.add_argument("--sam2-size", type=int, default=None, help="SAM 2's input size (default its own 1024)")
    p.add_argument("--frames", type=int, default=None, help="timed frames per run (default 30; 2 with --tiny)")
    p.add_argument("--warmup", type=int, default=None, help="untimed frames first (default 5; 2 with --tiny)")
    p.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (default inductor; eager with --tiny)"
    )
    p.add_argument("--budget-s", type=float, default=420.0, help="start no new run after this many seconds")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/gpu.json)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: CUDA is not available, so there is nothing to measure (smoke run: --device cpu --tiny).")
        return 0
    from benchmarks.trackers import sam2_available

    args.types = args.types or (["tiny"] if args.tiny else ["vit_b", "vit_t"])
    args.sam2 = args.sam2 if args.sam2 is not None else ([] if args.tiny else ["sam2.1-t", "sam2.1-b+"])
    args.frames = args.frames or (2 if args.tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.tiny else 5)
    args.compile_backend = args.compile_backend or ("eager" if args.tiny else "inductor")
    sam2_ok = bool(args.sam2) and sam2_available()
    if args.sam2 and not sam2_ok:
        print("SAM 2.1 not measured: the `sam2` package is not installed (pip install -e '.[bench]').")
    device = torch.device(args.device)
    size = 128 if args.tiny else 1024
    results: Dict[str, Any] = {}
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        video = Path(tmp) / "video"
        write_jpeg_video(video, args.warmup + args.frames + 1, size)
        for r in plan(args, sam2_ok):
            run = run_sam2 if r["system"].startswith("sam2") else run_i2v
            key = f"{r['system']}/{r['mode']}/{r['objects']}"
            if time.perf_counter() - started > args.budget_s:
                results[key] = {"error": f"not run: the {args.budget_s:.0f} s budget was spent"}
                print(f"  {key}: not run (budget spent)")
                continue
            try:
                res = run(r["system"], r["mode"], r["objects"], device, video, size, args)
            except Exception as e:  # one failing variant (e.g. a compiler missing) must not lose the others
                results[key] = {"error": f"{type(e).__name__}: {e}"}
                print(f"  {key}: failed: {type(e).__name__}: {e}")
                continue
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            results[key] = res
            anchor = SAM2_ANCHOR_FPS.get(r["system"])
            rows.append(
                [
                    key,
                    f"{res['ms_per_frame']:.1f}",
                    f"{res['fps']:.1f}",
                    f"{res['encoder_ms']:.1f}",
                    f"{res['tracking_ms']:.1f}",
                    "" if anchor is None else f"{anchor:.0f}",
                ]
            )
            print(f"  {key}: {res['ms_per_frame']:.1f} ms/frame, {res['fps']:.1f} FPS")
    print(
        format_table(
            ["system / mode / objects", "ms / frame", "FPS", "encoder ms", "tracking ms", "README FPS (A100)"], rows
        )
    )
    metrics = {"runs": results, "seconds": time.perf_counter() - started, "sam2_readme_fps_a100": SAM2_ANCHOR_FPS}
    path = write_result("gpu", vars(args), metrics, device, path=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
