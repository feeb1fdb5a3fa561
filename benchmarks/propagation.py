"""Propagation memory and speed: flat memory on long videos, cost of more objects.

Measures, with the tiny config:
- peak RSS after propagating 100, 1,000 and 10,000 frames of one video (one process, one
  pass; RSS read at each checkpoint), and the time per frame in each segment of the run;
- time per frame with 1 and with 8 objects on the same frames.

The video is procedurally rendered frame by frame (the synthetic generator), so the input
itself takes no memory; the predictor reads it through the same lazy source as any video.

    python -m benchmarks.propagation [--frames 10000] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from benchmarks.common import write_result
from i2v.build import build_i2v_video_predictor, default_sam_checkpoint
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.io.video_source import VideoSource


class RenderedVideo(VideoSource):
    """Frame t of synthetic video 0, rendered when read."""

    def __init__(self, dataset: SyntheticVideoDataset) -> None:
        h, w = dataset.frame(0, 0).shape[:2]
        super().__init__(dataset.num_frames(0), h, w, cache_size=0)
        self.dataset = dataset

    def _read(self, t: int) -> np.ndarray:
        return self.dataset.frame(0, t)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prompt_objects(predictor, state, dataset: SyntheticVideoDataset, num_objects: int) -> None:
    masks = dataset.masks(0, 0)
    for i in range(num_objects):
        predictor.add_new_mask(state, 0, i + 1, masks[i % len(masks)])


def long_run(predictor, dataset: SyntheticVideoDataset, checkpoints: List[int]) -> Dict[str, object]:
    state = predictor.init_state(RenderedVideo(dataset))
    prompt_objects(predictor, state, dataset, 1)
    rss: Dict[int, float] = {}
    seg_times: Dict[int, List[float]] = {c: [] for c in checkpoints}
    last = time.perf_counter()
    done = 0
    for _ in predictor.propagate_in_video(state, max_frame_num_to_track=checkpoints[-1] - 1):
        now = time.perf_counter()
        done += 1
        segment = next(c for c in checkpoints if done <= c)
        seg_times[segment].append(now - last)
        last = now
        if done in checkpoints:
            rss[done] = peak_rss_mb()
            print(
                f"  {done:>6} frames: peak RSS {rss[done]:.1f} MB, "
                f"median {1000 * statistics.median(seg_times[segment]):.1f} ms/frame"
            )
    return {
        "peak_rss_mb": {str(k): v for k, v in rss.items()},
        "median_ms_per_frame": {str(k): 1000 * statistics.median(v) for k, v in seg_times.items() if v},
        "rss_ratio_last_vs_first": rss[checkpoints[-1]] / rss[checkpoints[0]],
    }


def objects_run(
    predictor, dataset: SyntheticVideoDataset, counts: List[int], frames: int, repeats: int = 3
) -> Dict[str, float]:
    """Median ms/frame per object count. The counts are run in turn, ``repeats`` rounds, so a
    slow spell of the machine hits all of them alike; each count reports its median frame."""
    times: Dict[int, List[float]] = {n: [] for n in counts}
    for _ in range(repeats):
        for n in counts:
            state = predictor.init_state(RenderedVideo(dataset))
            prompt_objects(predictor, state, dataset, n)
            run = []
            last = time.perf_counter()
            for _ in predictor.propagate_in_video(state, max_frame_num_to_track=frames):
                now = time.perf_counter()
                run.append(now - last)
                last = now
            times[n].extend(run[2:])  # the first frames warm caches up
    out = {str(n): 1000 * statistics.median(t) for n, t in times.items()}
    for n in counts:
        print(f"  {n} object(s): median {out[str(n)]:.1f} ms/frame over {len(times[n])} frames")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--object-frames", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the 1- vs 8-object timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # The bundled tiny SAM on its own synthetic videos, on purpose (no stand-in warning).
    predictor = build_i2v_video_predictor(
        "tiny", sam_checkpoint=default_sam_checkpoint("tiny"), device=args.device, progress=False
    )
    cfg = SyntheticConfig(num_frames=max(args.frames, args.object_frames + 1), min_objects=8, max_objects=8)
    dataset = SyntheticVideoDataset("test", num_videos=1, config=cfg)
    checkpoints = [c for c in (100, 1_000, 10_000) if c < args.frames] + [args.frames]
    print(f"long run: {args.frames} frames, 1 object")
    long = long_run(predictor, dataset, checkpoints)
    print("objects run")
    objects = objects_run(predictor, dataset, [1, 8], args.object_frames, args.repeats)
    figures = {
        "long_run": long,
        "ms_per_frame_by_objects": objects,
        "time_ratio_8_vs_1": objects["8"] / objects["1"],
    }
    path = write_result("propagation", config={"model": "tiny", **vars(args)}, metrics=figures, device=args.device)
    print(
        f"RSS ratio {long['rss_ratio_last_vs_first']:.3f} (budget <= 1.1); "
        f"time 8 vs 1 objects {figures['time_ratio_8_vs_1']:.2f}x (budget <= 2); wrote {path}"
    )


if __name__ == "__main__":
    main()
