"""SAM 2.1 beside sam-i2v on the same video: FLOPs, CPU time, state bytes and peak memory.

Systems (random weights: FLOPs, time and bytes do not depend on the values):

- ``sam2.1-t``, ``sam2.1-b+``: Meta's ``sam2`` package (the optional ``bench`` extra), built
  from its own ``configs/sam2.1`` files with ``build_sam2_video_predictor(ckpt_path=None)``.
- ``vit_b``, ``vit_t``: sam-i2v on SAM's ViT-B and MobileSAM's TinyViT (1024 px).
- ``tiny``: sam-i2v on the bundled tiny SAM (128 px input; its own scale, not comparable).

sam-i2v runs the most expensive path it has: every object prompted by memory and never declared
absent (:func:`benchmarks.cost.worst_case`). Every figure is taken around each system's own
``predictor.propagate_in_video``, with forward hooks on its image encoder to split a frame into
"image encoder" and "tracking" (everything else the frame costs):

1. FLOPs (``FlopCounterMode`` + attention from shapes, 2 per multiply-accumulate) of the
   frame ``--flop-frames`` after the prompted one, when every memory is full (steady state),
   with 1 and 8 objects; "each further object" is (8 - 1) / 7. SAM 2 runs under
   ``FakeTensorMode`` (its step has no data-dependent branch, so the count is exact and free);
   sam-i2v runs for real and replays the prompted frame's encoder output on the warm-up
   frames (same shapes, so tracking costs the same).
2. CPU seconds per propagated frame, in interleaved rounds (every system once per round, each
   in a fresh process, so a slow spell of a shared machine hits all alike); encoder seconds
   from the hooks, tracking = frame - encoder. Peak RSS is that process's.
3. State bytes: what the state holds (tensors, arrays, bytes) apart from decoded frames, after
   frames 50 and 200 of one pass with one object, at a small resolution (``--state-size``; SAM
   2 replays its encoder output there): growth per object-frame, and frames held in RAM.

    python -m benchmarks.vs_sam2 [--systems sam2.1-t sam2.1-b+ vit_b vit_t tiny] [--threads 2]
        [--frames 2] [--rounds 2] [--flop-frames 8] [--state-frames 50 200] [--state-size 256]

At the defaults a 2-core CPU needs about 15 minutes (SAM 2.1-B+ and vit_b take seconds per
frame); ``--systems``, ``--frames``, ``--rounds`` and ``--no-state`` shrink it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from benchmarks.common import format_table, machine_info, write_result
from benchmarks.predictor_probes import EncoderTap, FlopMeter, object_boxes, peak_rss_mib, write_jpeg_video
from benchmarks.trackers import (
    INSTALL_HINT,
    SAM2_CONFIGS,
    SYSTEMS,
    Tracker,
    build_tracker,
    sam2_available,
)

MANY = 8  # objects of the "more objects" runs


# -- 1. FLOPs ------------------------------------------------------------------------------------


def count_flops(
    tracker: Tracker, tap: EncoderTap, video: Path, boxes: Sequence[Sequence[float]], frames: int, live_last: bool
) -> Dict[str, Any]:
    """FLOPs of every propagated frame (1..frames) with one object per box: encoder, tracking.

    sam-i2v's encoder runs for real only where ``tap`` has no output to replay yet (the
    prompted frame of the first pass) and, with ``live_last``, on the last frame.
    """
    fake = tracker.is_sam2
    ctx: Any = contextlib.nullcontext()
    if fake:
        from torch._subclasses.fake_tensor import FakeTensorMode

        ctx = FakeTensorMode(allow_non_fake_inputs=True)
    rows: List[Dict[str, Any]] = []
    with warnings.catch_warnings(), ctx, tap.meter:  # type: ignore[union-attr]
        warnings.simplefilter("ignore")
        tap.replay = not fake
        state = tracker.start(video, boxes)
        tap.reset()
        before = tap.meter.total()  # type: ignore[union-attr]
        for t in tracker.propagate(state, frames):
            total = tap.meter.total()  # type: ignore[union-attr]
            if t > 0:
                rows.append({"frame": t, "encoder": tap.flops, "tracking": total - before - tap.flops})
            tap.replay = not fake and not (live_last and t + 1 == frames)
            tap.reset()
            before = tap.meter.total()  # type: ignore[union-attr]
    return {"per_frame": rows, "steady": rows[-1]}


def flops_for(name: str, video: Path, size: int, frames: int, device: str) -> Dict[str, Any]:
    """Steady-state FLOPs of ``name`` with 1 and :data:`MANY` objects, and the per-frame series.

    The encoder's FLOPs come from the 1-object pass; the :data:`MANY`-object pass replays its
    output on every frame (sam-i2v), so both passes' tracking is counted alike.
    """
    tracker = build_tracker(name, device, image_size=size)
    tap = EncoderTap(tracker.encoder, FlopMeter())
    try:
        one = count_flops(tracker, tap, video, object_boxes(size, 1), frames, live_last=True)
        many = count_flops(tracker, tap, video, object_boxes(size, MANY), frames, live_last=False)
    finally:
        tap.remove()
    encoder = one["steady"]["encoder"]
    first = one["steady"]["tracking"]
    further = (many["steady"]["tracking"] - first) / (MANY - 1)
    return {
        "encoder": encoder,
        "tracking_first_object": first,
        "tracking_each_further_object": further,
        "frame_1_object": encoder + first,
        f"frame_{MANY}_objects": encoder + many["steady"]["tracking"],
        "per_frame_1_object": one["per_frame"],
        f"per_frame_{MANY}_objects": many["per_frame"],
        "measured_frame": one["steady"]["frame"],
        "method": "FakeTensorMode (exact shapes, no arithmetic)" if tracker.is_sam2 else "real tensors",
    }


# -- 2. time, peak RSS (one fresh process per job) -----------------------------------------------


def time_job(name: str, video: str, size: int, objects: int, frames: int, threads: int, device: str) -> Dict[str, Any]:
    """Seconds of propagated frames 1..frames, encoder seconds, state bytes after each frame."""
    torch.set_num_threads(threads)
    rss_before = peak_rss_mib()
    tracker = build_tracker(name, device, image_size=size)
    boxes = object_boxes(size, objects)
    tap = EncoderTap(tracker.encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = tracker.start(Path(video), boxes)
        rows = []
        tap.reset()
        start = time.perf_counter()
        for t in tracker.propagate(state, frames):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            if t > 0:
                split = tracker.state_split(state)
                rows.append(
                    {"frame": t, "seconds": seconds, "encoder_seconds": tap.seconds, "state_bytes": split["state"]}
                )
            tap.reset()
            start = time.perf_counter()
    return {
        "frames": rows,
        "frames_bytes": tracker.state_split(state)["frames"],
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_build_mib": rss_before,
    }


def state_job(name: str, video: str, boxes: List[List[float]], checkpoints: List[int], size: int) -> Dict[str, Any]:
    """State bytes after each checkpoint frame of one pass (SAM 2 replays its encoder output)."""
    torch.set_num_threads(1)
    tracker = build_tracker(name, "cpu", image_size=size)
    tap = EncoderTap(tracker.encoder)
    out: Dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = tracker.start(Path(video), boxes)
        tap.replay = tracker.is_sam2
        for t in tracker.propagate(state, checkpoints[-1]):
            if t in checkpoints:
                out[str(t)] = tracker.state_split(state)
    return out


def _run(in_process: bool, fn: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
    """``fn(*args)`` in a fresh process (its own peak RSS and allocator), or here."""
    if in_process:
        return fn(*args)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def time_rounds(args: argparse.Namespace, video: Path) -> Dict[str, Any]:
    """Interleaved rounds: every (system, object count) once per round, in turn."""
    jobs = [(s, 1) for s in args.systems] + [(s, MANY) for s in args.systems if s in args.many_objects]
    runs: Dict[str, List[Dict[str, Any]]] = {f"{s}/{n}": [] for s, n in jobs}
    for r in range(args.rounds):
        for s, n in jobs:
            res = _run(args.in_process, time_job, s, str(video), args.size, n, args.frames, args.threads, args.device)
            runs[f"{s}/{n}"].append(res)
            med = statistics.median(f["seconds"] for f in res["frames"])
            print(f"  round {r + 1}: {s}, {n} object(s): {med:.2f} s/frame, peak RSS {res['peak_rss_mib']:.0f} MiB")
    out: Dict[str, Any] = {}
    for key, rs in runs.items():
        frames = [f for res in rs for f in res["frames"]]
        seconds = statistics.median(f["seconds"] for f in frames)
        encoder = statistics.median(f["encoder_seconds"] for f in frames)
        tracking = statistics.median(f["seconds"] - f["encoder_seconds"] for f in frames)
        first, last = rs[0]["frames"][0], rs[0]["frames"][-1]
        span = max(last["frame"] - first["frame"], 1)
        out[key] = {
            "seconds_per_frame": seconds,
            "encoder_seconds": encoder,
            "tracking_seconds": tracking,
            "peak_rss_mib": max(res["peak_rss_mib"] for res in rs),
            "peak_rss_before_build_mib": max(res["peak_rss_before_build_mib"] for res in rs),
            "frames_bytes_per_frame": rs[0]["frames_bytes"] / args.video_frames,
            "state_growth_bytes_per_frame_early": (last["state_bytes"] - first["state_bytes"]) / span,
            "raw": rs,
        }
    return out


def state_pass(args: argparse.Namespace, folder: Path) -> Dict[str, Any]:
    """State bytes per object-frame between the two ``--state-frames`` checkpoints."""
    first, last = args.state_frames
    video = folder / f"state_{args.state_size}"
    if not video.is_dir():
        write_jpeg_video(video, last + 1, args.state_size)
    boxes = object_boxes(args.state_size, 1)
    out: Dict[str, Any] = {}
    for s in args.state_systems:
        got = _run(args.in_process, state_job, s, str(video), boxes, [first, last], args.state_size)
        a, b = got[str(first)], got[str(last)]
        out[s] = {
            "bytes": got,
            "growth_bytes_per_object_frame": (b["state"] - a["state"]) / (last - first),
            "state_bytes_per_object_frame": b["state"] / (last + 1),
            "frames_bytes_per_frame": b["frames"] / (last + 1),
        }
        print(
            f"  {s}: state {a['state'] / 2**20:.1f} MiB after frame {first}, {b['state'] / 2**20:.1f} MiB after "
            f"frame {last}; frames held {b['frames'] / 2**20:.1f} MiB"
        )
    return out


# -- report ------------------------------------------------------------------------------------


def ratios(m: Dict[str, Any], reference: str = "sam2.1-t") -> Dict[str, Dict[str, float]]:
    """Each system's figures over the reference system's (when both were measured)."""
    out: Dict[str, Dict[str, float]] = {}
    ref_f, ref_t = m["flops"].get(reference), m["time"].get(f"{reference}/1")
    for s in m["systems"]:
        r: Dict[str, float] = {}
        f = m["flops"].get(s)
        if ref_f and f:
            for k in ("encoder", "tracking_first_object", "tracking_each_further_object", "frame_1_object"):
                r[f"{k}_flops"] = f[k] / ref_f[k]
        t = m["time"].get(f"{s}/1")
        if ref_t and t:
            r["seconds_per_frame"] = t["seconds_per_frame"] / ref_t["seconds_per_frame"]
            r["tracking_seconds"] = t["tracking_seconds"] / ref_t["tracking_seconds"]
        out[s] = r
    return out


def _g(x: Optional[float]) -> str:
    return "" if x is None else f"{x / 1e9:.1f} G" if x >= 1e9 else f"{x / 1e9:.2f} G"


def _kb(x: Optional[float]) -> str:
    return "" if x is None else f"{x / 1e3:.0f} KB" if abs(x) < 1e6 else f"{x / 1e6:.1f} MB"


def report(m: Dict[str, Any]) -> str:
    systems = m["systems"]
    many = f"frame_{MANY}_objects"
    rows = []
    for label, fn in (
        ("image encoder FLOPs", lambda f, t, st: _g(f and f["encoder"])),
        ("tracking FLOPs, first object", lambda f, t, st: _g(f and f["tracking_first_object"])),
        ("tracking FLOPs, each further object", lambda f, t, st: _g(f and f["tracking_each_further_object"])),
        (f"frame FLOPs, 1 / {MANY} objects", lambda f, t, st: f and f"{_g(f['frame_1_object'])} / {_g(f[many])}"),
        ("CPU s per frame, 1 object", lambda f, t, st: t and f"{t['seconds_per_frame']:.2f}"),
        ("  of which tracking", lambda f, t, st: t and f"{t['tracking_seconds']:.2f}"),
        (
            "tracking GFLOP/s (timed frames)",
            lambda f, t, st: t and t.get("tracking_gflops_per_s") and f"{t['tracking_gflops_per_s']:.1f}",
        ),
        (
            "encoder GFLOP/s",
            lambda f, t, st: t and t.get("encoder_gflops_per_s") and f"{t['encoder_gflops_per_s']:.1f}",
        ),
        ("peak RSS, 1 object", lambda f, t, st: t and f"{t['peak_rss_mib']:.0f} MiB"),
        ("state growth per object-frame", lambda f, t, st: st and _kb(st["growth_bytes_per_object_frame"])),
        ("frames held in RAM, per frame", lambda f, t, st: st and _kb(st["frames_bytes_per_frame"])),
    ):
        rows.append(
            [label] + [fn(m["flops"].get(s), m["time"].get(f"{s}/1"), m["state"].get(s)) or "" for s in systems]
        )
    return format_table(["per propagated frame"] + list(systems), rows)


def add_rates(m: Dict[str, Any]) -> None:
    """GFLOP/s of encoder and tracking on the timed frames (FLOPs of the same frame indices)."""
    for s in m["systems"]:
        f, t = m["flops"].get(s), m["time"].get(f"{s}/1")
        if not f or not t:
            continue
        by_frame = {r["frame"]: r for r in f["per_frame_1_object"]}
        timed = [fr for res in t["raw"] for fr in res["frames"] if fr["frame"] in by_frame]
        if not timed:
            continue
        track_flops = sum(by_frame[fr["frame"]]["tracking"] for fr in timed)
        track_s = sum(fr["seconds"] - fr["encoder_seconds"] for fr in timed)
        enc_s = sum(fr["encoder_seconds"] for fr in timed)
        t["tracking_gflops_per_s"] = track_flops / max(track_s, 1e-9) / 1e9
        t["encoder_gflops_per_s"] = f["encoder"] * len(timed) / max(enc_s, 1e-9) / 1e9


def plot(m: Dict[str, Any], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in m["systems"] if s in m["flops"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    ax = axes[0]
    enc = [m["flops"][s]["encoder"] / 1e9 for s in systems]
    first = [m["flops"][s]["tracking_first_object"] / 1e9 for s in systems]
    further = [(MANY - 1) * m["flops"][s]["tracking_each_further_object"] / 1e9 for s in systems]
    ax.bar(systems, enc, label="image encoder")
    ax.bar(systems, first, bottom=enc, label="tracking, first object")
    ax.bar(systems, further, bottom=[a + b for a, b in zip(enc, first)], label=f"tracking, {MANY - 1} further objects")
    for i, total in enumerate(a + b + c for a, b, c in zip(enc, first, further)):
        ax.text(i, total, f"{total:.0f} G" if total >= 10 else f"{total:.1f} G", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("GFLOPs per propagated frame")
    ax.legend(fontsize=8)
    ax.set_title(f"FLOPs, steady state, 1 + {MANY - 1} objects")
    ax = axes[1]
    timed = [s for s in m["systems"] if f"{s}/1" in m["time"]]
    enc_s = [m["time"][f"{s}/1"]["encoder_seconds"] for s in timed]
    trk_s = [m["time"][f"{s}/1"]["tracking_seconds"] for s in timed]
    ax.bar(timed, enc_s, label="image encoder")
    ax.bar(timed, trk_s, bottom=enc_s, label="tracking")
    ax.set_ylabel("CPU seconds per propagated frame (1 object)")
    ax.legend(fontsize=8)
    ax.set_title(f"CPU time, {m['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each timed process")
    p.add_argument("--size", type=int, default=1024, help="video frame size (px) of the FLOP and time runs")
    p.add_argument("--frames", type=int, default=2, help="timed frames after the prompted one, per round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    p.add_argument(
        "--many-objects",
        nargs="*",
        default=["vit_t", "tiny"],
        choices=SYSTEMS,
        help=f"systems also timed with {MANY} objects",
    )
    p.add_argument("--flop-frames", type=int, default=8, help="the frame counted (every memory full by then)")
    p.add_argument("--state-frames", type=int, nargs=2, default=[50, 200], metavar=("FIRST", "LAST"))
    p.add_argument("--state-size", type=int, default=256, help="frame size (px) of the state pass")
    p.add_argument("--state-systems", nargs="*", default=["sam2.1-t", "tiny"], choices=SYSTEMS)
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-time", action="store_true")
    p.add_argument("--no-state", action="store_true")
    p.add_argument("--in-process", action="store_true", help="run jobs in this process (peak RSS is then shared)")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/vs_sam2.json)")
    args = p.parse_args(argv)
    wanted = set(args.systems) | set(args.state_systems)
    if not sam2_available() and wanted & set(SAM2_CONFIGS):
        print(f"skipped: {INSTALL_HINT}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda given but CUDA is not available.")
    torch.set_num_threads(args.threads)
    args.video_frames = max(args.frames, args.flop_frames) + 1
    metrics: Dict[str, Any] = {
        "systems": args.systems,
        "machine": f"{machine_info(args.device)['cpu']}, {args.threads} threads",
        "objects_many": MANY,
        "flops": {},
        "time": {},
        "state": {},
    }
    with tempfile.TemporaryDirectory(prefix="vs_sam2_") as tmp:
        folder = Path(tmp)
        video = folder / f"video_{args.size}"
        write_jpeg_video(video, args.video_frames, args.size)
        if not args.no_flops:
            print(f"FLOPs (frame {args.flop_frames}, 1 and {MANY} objects)")
            for s in args.systems:
                start = time.perf_counter()
                metrics["flops"][s] = f = flops_for(s, video, args.size, args.flop_frames, args.device)
                print(
                    f"  {s}: encoder {_g(f['encoder'])}, tracking {_g(f['tracking_first_object'])} + "
                    f"{_g(f['tracking_each_further_object'])} per further object ({time.perf_counter() - start:.0f} s)"
                )
        if not args.no_time:
            print(f"time ({args.rounds} interleaved rounds of {args.frames} frames, {args.threads} threads)")
            metrics["time"] = time_rounds(args, video)
        if not args.no_state:
            print(f"state (frames {args.state_frames[0]} -> {args.state_frames[1]}, {args.state_size} px, 1 object)")
            metrics["state"] = state_pass(args, folder)
    add_rates(metrics)
    metrics["ratios_vs_sam2.1-t"] = ratios(metrics)
    print(report(metrics))
    config = {k: v for k, v in vars(args).items()}
    config["sam_i2v_path"] = "worst case: memory prompts on every object, never absent (benchmarks.cost.worst_case)"
    config["weights"] = "random (seed 0); tiny: the bundled tiny SAM"
    path = write_result("vs_sam2", config, metrics, args.device, path=args.out)
    print(f"wrote {path} and {plot(metrics, path.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
