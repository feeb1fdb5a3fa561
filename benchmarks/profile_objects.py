"""Where a tracked frame's CPU time goes: op-by-op profiles against the time targets.

Targets (CPU, from the side-by-side benchmark's issue):

- vit_b and vit_t: tracking time of the first object <= 10 % of the image encoder's time,
  each further object <= 3 %;
- tiny: a frame with 8 objects <= 1.5x a frame with 1 object.

Everything is measured around ``propagate_in_video``. vit_b / vit_t (random weights, 1024 px,
the worst-case path of :func:`benchmarks.cost.worst_case`): the encoder's seconds come from
hooks on it during live frames; tracking is timed on frames where a hook replays the encoder's
output (:class:`benchmarks.predictor_probes.EncoderTap`), so a frame's time is tracking alone.
tiny (the bundled tiny SAM and its config, on a synthetic video with 8 objects, as
:mod:`benchmarks.propagation`): whole frames. Timings come from interleaved rounds without the
profiler; the op tables from one ``torch.profiler`` pass each (self CPU time per frame, per op),
with "outside ops" the frame's wall time that no op accounts for (Python, small allocations).
For every gap the ops that make it up are listed: the ops whose time grows most from 1 to 8
objects, and the largest ops of a first object's tracking.

    python -m benchmarks.profile_objects [--threads 2] [--rounds 3] [--frames 12] [--types vit_b vit_t]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import format_table, write_result
from benchmarks.predictor_probes import EncoderTap

TARGETS = {"first_object_vs_encoder": 0.10, "further_object_vs_encoder": 0.03, "tiny_8_vs_1": 1.5}
MANY = 8


class _Setup:
    """A predictor, a tap on its encoder and a video with prompts for ``n`` objects."""

    def __init__(self, sam_type: str) -> None:
        from benchmarks.cost import worst_case
        from i2v.build import build_i2v_video_predictor, build_sam_i2v, default_sam_checkpoint
        from i2v.video_predictor import I2VVideoPredictor

        self.sam_type = sam_type
        if sam_type == "tiny":
            self.predictor = build_i2v_video_predictor(
                "tiny", sam_checkpoint=default_sam_checkpoint("tiny"), device="cpu", progress=False
            )
        else:
            model = worst_case(build_sam_i2v(sam_type, device="cpu", allow_random_sam=True))
            self.predictor = I2VVideoPredictor(model, progress=False)
        self.tap = EncoderTap(self.predictor.model.sam.image_encoder)

    def state(self, objects: int, frames: int) -> Any:
        if self.sam_type == "tiny":
            from benchmarks.propagation import RenderedVideo, prompt_objects
            from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset

            cfg = SyntheticConfig(num_frames=frames + 1, min_objects=MANY, max_objects=MANY)
            dataset = SyntheticVideoDataset("test", num_videos=1, config=cfg)
            state = self.predictor.init_state(RenderedVideo(dataset))
            prompt_objects(self.predictor, state, dataset, objects)
            return state
        from benchmarks.predictor_probes import object_boxes

        size = self.predictor.model.image_size
        rng = np.random.default_rng(0)
        video = list((rng.random((frames + 1, size, size, 3)) * 255).astype(np.uint8))
        state = self.predictor.init_state(video)
        for k, box in enumerate(object_boxes(size, objects)):
            self.predictor.add_new_points_or_box(state, 0, k + 1, box=box)
        return state

    def frame_seconds(self, objects: int, frames: int, skip: int = 2) -> List[float]:
        """Wall seconds of each propagated frame after the first ``skip`` (warm-up) ones."""
        state = self.state(objects, frames)
        out = []
        start = time.perf_counter()
        for t, _, _ in self.predictor.propagate_in_video(state, max_frame_num_to_track=frames):
            now = time.perf_counter()
            if t > skip:
                out.append(now - start)
            start = time.perf_counter()
        return out


def op_table(setup: _Setup, objects: int, frames: int, skip: int = 2) -> Dict[str, Any]:
    """Self CPU milliseconds and calls per frame of every op, over frames skip+1..frames."""
    state = setup.state(objects, frames)
    gen = setup.predictor.propagate_in_video(state, max_frame_num_to_track=frames)
    for t, _, _ in gen:
        if t >= skip:
            break
    counted = frames - skip
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in gen:
            pass
        wall = time.perf_counter() - start
    ops = {}
    for e in prof.key_averages():
        if e.self_cpu_time_total > 0:
            ops[e.key] = {"ms": e.self_cpu_time_total / 1e3 / counted, "calls": e.count / counted}
    in_ops = sum(o["ms"] for o in ops.values())
    ops["(outside ops: Python, allocation)"] = {"ms": max(1e3 * wall / counted - in_ops, 0.0), "calls": 0.0}
    return {"frame_ms": 1e3 * wall / counted, "ops": ops}


def top(ops: Dict[str, Dict[str, float]], n: int) -> List[Dict[str, Any]]:
    return [{"op": k, **v} for k, v in sorted(ops.items(), key=lambda kv: -kv[1]["ms"])[:n]]


def diff(many: Dict[str, Dict[str, float]], one: Dict[str, Dict[str, float]], n: int) -> List[Dict[str, Any]]:
    """Ops by how much their time per frame grows from ``one`` to ``many`` objects."""
    keys = set(many) | set(one)
    zero = {"ms": 0.0, "calls": 0.0}
    rows: List[Dict[str, Any]] = [
        {
            "op": k,
            "ms_added": many.get(k, zero)["ms"] - one.get(k, zero)["ms"],
            "calls_added": many.get(k, zero)["calls"] - one.get(k, zero)["calls"],
        }
        for k in keys
    ]
    return sorted(rows, key=lambda r: -float(r["ms_added"]))[:n]


def profile_tiny(args: argparse.Namespace) -> Dict[str, Any]:
    setup = _Setup("tiny")
    times: Dict[int, List[float]] = {1: [], MANY: []}
    for _ in range(args.rounds):
        for n in (1, MANY):
            times[n].extend(setup.frame_seconds(n, args.frames))
    ms = {n: 1e3 * statistics.median(v) for n, v in times.items()}
    one, many = op_table(setup, 1, args.frames), op_table(setup, MANY, args.frames)
    ratio = ms[MANY] / ms[1]
    return {
        "ms_per_frame": {str(n): v for n, v in ms.items()},
        "ratio_8_vs_1": ratio,
        "target": TARGETS["tiny_8_vs_1"],
        "met": ratio <= TARGETS["tiny_8_vs_1"],
        "gap_ms": ms[MANY] - TARGETS["tiny_8_vs_1"] * ms[1],
        "profiled_frame_ms": {"1": one["frame_ms"], str(MANY): many["frame_ms"]},
        "top_ops_1": top(one["ops"], args.top),
        f"top_ops_{MANY}": top(many["ops"], args.top),
        "gap_ops": diff(many["ops"], one["ops"], args.top),
    }


def profile_encoder_type(sam_type: str, args: argparse.Namespace) -> Dict[str, Any]:
    setup = _Setup(sam_type)
    encoder_s: List[float] = []
    tracking: Dict[int, List[float]] = {1: [], MANY: []}
    for _ in range(args.rounds):
        setup.tap.replay = False  # live: prompting encodes the frame
        setup.tap.reset()
        setup.state(1, 1)
        encoder_s.append(setup.tap.seconds / max(setup.tap.calls, 1))
        setup.tap.replay = True
        for n in (1, MANY):
            tracking[n].extend(setup.frame_seconds(n, args.frames))
    enc = statistics.median(encoder_s)
    t1, tn = statistics.median(tracking[1]), statistics.median(tracking[MANY])
    further = (tn - t1) / (MANY - 1)
    one, many = op_table(setup, 1, args.frames), op_table(setup, MANY, args.frames)
    first_ratio, further_ratio = t1 / enc, further / enc
    return {
        "encoder_seconds": enc,
        "tracking_seconds_1": t1,
        f"tracking_seconds_{MANY}": tn,
        "further_object_seconds": further,
        "first_object_vs_encoder": first_ratio,
        "further_object_vs_encoder": further_ratio,
        "targets": {k: TARGETS[k] for k in ("first_object_vs_encoder", "further_object_vs_encoder")},
        "met": {
            "first_object": first_ratio <= TARGETS["first_object_vs_encoder"],
            "further_object": further_ratio <= TARGETS["further_object_vs_encoder"],
        },
        "gap_seconds": {
            "first_object": t1 - TARGETS["first_object_vs_encoder"] * enc,
            "further_object": further - TARGETS["further_object_vs_encoder"] * enc,
        },
        "profiled_frame_ms": {"1": one["frame_ms"], str(MANY): many["frame_ms"]},
        "top_ops_first_object": top(one["ops"], args.top),
        "gap_ops_further_objects": diff(many["ops"], one["ops"], args.top),
    }


def _ops_table(title: str, rows: List[Dict[str, Any]], key: str = "ms") -> str:
    calls = "calls" if key == "ms" else "calls_added"
    body = [[r["op"][:60], f"{r[key]:.2f}", f"{r[calls]:.0f}"] for r in rows]
    return f"{title}\n" + format_table(["op", f"{key} / frame", f"{calls} / frame"], body)


def report(m: Dict[str, Any]) -> str:
    lines = []
    if "tiny" in m:
        t = m["tiny"]
        lines.append(
            f"tiny: {t['ms_per_frame']['1']:.1f} ms (1 object) vs {t['ms_per_frame'][str(MANY)]:.1f} ms ({MANY}) "
            f"= {t['ratio_8_vs_1']:.2f}x (target <= {t['target']}x: {'met' if t['met'] else 'not met'})"
        )
        lines.append(_ops_table(f"ops that grow from 1 to {MANY} objects (tiny)", t["gap_ops"], "ms_added"))
    for sam_type in ("vit_b", "vit_t"):
        if sam_type not in m:
            continue
        r = m[sam_type]
        lines.append(
            f"{sam_type}: encoder {r['encoder_seconds']:.2f} s; tracking {r['tracking_seconds_1']:.3f} s for one object "
            f"= {100 * r['first_object_vs_encoder']:.1f} % (target 10 %), {r['further_object_seconds']:.3f} s per further "
            f"object = {100 * r['further_object_vs_encoder']:.1f} % (target 3 %)"
        )
        lines.append(_ops_table(f"largest ops, first object's tracking ({sam_type})", r["top_ops_first_object"]))
        lines.append(
            _ops_table(f"ops that grow from 1 to {MANY} objects ({sam_type})", r["gap_ops_further_objects"], "ms_added")
        )
    return "\n\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="CPU only: the targets are CPU targets")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--frames", type=int, default=12, help="propagated frames per run (the first 2 are warm-up)")
    p.add_argument("--types", nargs="*", default=["tiny", "vit_b", "vit_t"], choices=["tiny", "vit_b", "vit_t"])
    p.add_argument("--top", type=int, default=12, help="ops listed per table")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/profile_objects.json)")
    args = p.parse_args(argv)
    if args.device != "cpu":
        print("skipped: the time targets are CPU targets (benchmarks.gpu measures GPUs).")
        return 0
    torch.set_num_threads(args.threads)
    metrics: Dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sam_type in args.types:
            print(f"== {sam_type}")
            metrics[sam_type] = profile_tiny(args) if sam_type == "tiny" else profile_encoder_type(sam_type, args)
    print(report(metrics))
    path = write_result("profile_objects", vars(args), metrics, args.device, path=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
