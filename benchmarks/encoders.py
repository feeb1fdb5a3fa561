"""Time per propagated frame with each image encoder: SAM's vit_b and MobileSAM's vit_t.

Random weights (time and FLOPs do not depend on the values), 1024 px frames, one object
prompted with a box on frame 0, the untrained upgrade with the bundled config of each type;
the time of each propagated frame after the prompted one is the predictor's whole step (image
encoder, upgrader, memory read-out, decoder, memory write). Also the image encoder's FLOPs
(one 1024 px frame) and, per reduced precision asked for, its time and the per-frame mask IoU
against float32 on the same video.

    python -m benchmarks.encoders [--device cpu] [--threads 2] [--frames 4] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import format_table, write_result
from benchmarks.flop_count import count_flops, counter_counts_attention
from i2v.build import build_sam_i2v
from i2v.video_predictor import I2VVideoPredictor

SIZE = 1024


def _video(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 1024, 1024, 3) uint8: a bright square drifting over smooth noise."""
    rng = np.random.default_rng(seed)
    video = (rng.random((frames, SIZE, SIZE, 3)) * 80).astype(np.uint8)
    for t in range(frames):
        x = 300 + 20 * t
        video[t, 350:650, x : x + 300] += 150
    return video


def run_encoder(sam_type: str, dtype: str, video: np.ndarray, device: str) -> Dict[str, object]:
    """Propagate one object through ``video``; seconds per propagated frame and the masks."""
    model = build_sam_i2v(sam_type, device=device, allow_random_sam=True, dtype=dtype)
    predictor = I2VVideoPredictor(model, progress=False)
    state = predictor.init_state(list(video))
    predictor.add_new_points_or_box(state, 0, 1, box=[300, 350, 600, 650])
    times: List[float] = []
    masks: List[torch.Tensor] = []
    start = time.perf_counter()
    for t, _, m in predictor.propagate_in_video(state):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        if t > 0:  # frame 0's features were computed when it was prompted
            times.append(now - start)
        masks.append((m[0, 0] > 0).cpu())
        start = time.perf_counter()
    return {
        "seconds_per_frame": statistics.median(times),
        "frame_seconds": times,
        "masks": masks,
        "sam_sha256": model.sam_sha256,
        "model": model,
    }


def encoder_flops(model, device: str) -> float:
    x = torch.zeros(1, 3, SIZE, SIZE, device=device)
    counted = counter_counts_attention(torch.device(device), torch.float32)
    with torch.no_grad():
        return count_flops(lambda: model.sam.image_encoder(x), counted).total


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--frames", type=int, default=4, help="frames of the video (the first is prompted)")
    p.add_argument("--types", nargs="+", default=["vit_b", "vit_t"])
    p.add_argument("--dtypes", nargs="+", default=["float32"], choices=("float32", "bfloat16", "float16"))
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/encoders.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    video = _video(args.frames)
    results: Dict[str, Dict[str, object]] = {}
    rows = []
    for sam_type in args.types:
        base: Optional[Dict[str, object]] = None
        for dtype in args.dtypes:
            r = run_encoder(sam_type, dtype, video, args.device)
            entry: Dict[str, object] = {
                "seconds_per_frame": r["seconds_per_frame"],
                "frame_seconds": r["frame_seconds"],
            }
            if base is None:
                base = r
                entry["encoder_gflops"] = encoder_flops(r["model"], args.device) / 1e9
                entry["encoder_params_m"] = sum(q.numel() for q in r["model"].sam.image_encoder.parameters()) / 1e6
            else:
                entry["mask_iou_vs_first_dtype"] = [_iou(a, b) for a, b in zip(base["masks"], r["masks"])]
            results[f"{sam_type}/{dtype}"] = entry
            iou = entry.get("mask_iou_vs_first_dtype")
            rows.append(
                (
                    sam_type,
                    dtype,
                    f"{r['seconds_per_frame']:.2f}",
                    f"{entry['encoder_gflops']:.0f}" if "encoder_gflops" in entry else "",
                    f"{entry['encoder_params_m']:.1f}" if "encoder_params_m" in entry else "",
                    "" if iou is None else f"{min(iou):.3f}",
                )
            )
    print(
        format_table(
            [
                "SAM",
                "dtype",
                "s / propagated frame",
                "encoder GFLOPs",
                "encoder M params",
                "min mask IoU vs first dtype",
            ],
            rows,
        )
    )
    if "vit_b/float32" in results and "vit_t/float32" in results:
        ratio = results["vit_b/float32"]["seconds_per_frame"] / results["vit_t/float32"]["seconds_per_frame"]
        results["vit_b_vs_vit_t_time"] = ratio
        print(f"vit_t propagates a frame {ratio:.1f}x faster than vit_b")
    path = write_result("encoders", vars(args), results, args.device, path=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
