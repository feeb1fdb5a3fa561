"""Cost of the upgrade over plain SAM, measured on the video predictor itself.

Budgets (vit_b at 1024 px, random weights: FLOPs and parameter counts do not depend on the
values):

- trainable parameters with LoRA off            <= 5 % of SAM's parameters;
- tracking FLOPs per frame, first object         <= 5 % of the image encoder's FLOPs;
- tracking FLOPs per frame, each further object  <= 1 % of the image encoder's FLOPs.

"Tracking" is everything a propagated frame costs after the image encoder, as
``I2VVideoPredictor`` runs it: the temporal upgrader, the memory read-out, SAM's prompt encoder
and mask decoder, the presence head and writing the new memory entries. It is counted by
``FlopCounterMode`` (2 FLOPs per multiply-accumulate, matmul-like ops, attention counted from
its shapes) around the predictor's own ``propagate_in_video``: the last frame of a pass long
enough that every object's memory is full. A hook on the image encoder replays one frame's
output instead of running it (:class:`benchmarks.predictor_probes.EncoderTap`), so the frame's
cost is the tracking alone; the encoder is counted on its own. To count the most expensive path, every object is
prompted by memory (``memory_prompt.agreement=1``: box + click + mask prompt) and none is
ever declared absent (``absent_below=0``). Motion-aware selection (each object decoded alone,
all four of SAM's masks) is measured the same way.

    python -m benchmarks.cost [--device cpu|cuda] [--config vit_b] [--objects 1 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import format_table, write_result
from benchmarks.predictor_probes import EncoderTap, FlopMeter
from i2v.adapters.config import LoraConfig
from i2v.build import build_sam_i2v
from i2v.model import SamI2V
from i2v.policies import MotionAwarePolicy, TrackingPolicy
from i2v.video_predictor import I2VVideoPredictor

PARAM_BUDGET = 0.05
FIRST_OBJECT_BUDGET = 0.05
PER_OBJECT_BUDGET = 0.01
ADAPTERS = ("upgrader", "memory_readout", "presence_head")


def worst_case(model: SamI2V) -> SamI2V:
    """``model`` with every tracked object prompted by memory and never absent (see above)."""
    cfg = model.config
    mp = dataclasses.replace(cfg.memory_prompt, agreement=1.0, absent_below=0.0)
    model.config = dataclasses.replace(cfg, memory_prompt=mp)
    return model


def _video(model: SamI2V, frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = model.image_size
    return (rng.random((frames, s, s, 3)) * 255).astype(np.uint8)


def _object_masks(size: int, n: int) -> List[np.ndarray]:
    masks = []
    for k in range(n):
        m = np.zeros((size, size), dtype=bool)
        x = 40 + 100 * (k % 8)
        y = 60 + 120 * (k // 8)
        m[y : y + 180, x : x + 120] = True
        masks.append(m)
    return masks


def measure(
    model: SamI2V, encoded: torch.Tensor, num_objects: int, runs: int, policy: Optional[TrackingPolicy] = None
) -> Dict[str, float]:
    """Tracking FLOPs and seconds of one propagated frame with ``num_objects`` objects, tracked
    with ``policy`` (None: the predictor's default).

    Measured around ``propagate_in_video``: the last frame of a pass long enough that every
    object's memory is full. The image encoder does not run: a hook on it returns ``encoded``
    (its output on one frame) on every frame (:class:`benchmarks.predictor_probes.EncoderTap`),
    so what a frame costs here is the tracking alone, whatever the pixels.
    """
    frames = model.config.memory.filter.capacity + 2  # every object's memory is full by the last frame
    predictor = I2VVideoPredictor(model, progress=False, policy=policy)
    state = predictor.init_state(_video(model, frames))
    meter = FlopMeter()
    tap = EncoderTap(model.sam.image_encoder, meter)
    tap.prime(encoded)
    for k, mask in enumerate(_object_masks(model.image_size, num_objects)):
        predictor.add_new_mask(state, 0, k + 1, mask)
    flops = 0
    with meter:  # FlopCounterMode's module tracker needs autograd on; the predictor runs in inference mode
        before = meter.total()
        for _ in predictor.propagate_in_video(state):
            flops, before = meter.total() - before, meter.total()
    times = []
    for _ in range(runs + 1):  # the first pass pays for allocations
        start = time.perf_counter()
        for _ in predictor.propagate_in_video(state):
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            last, start = time.perf_counter() - start, time.perf_counter()
        times.append(last)
    tap.remove()
    if tap.live_calls or not tap.calls:
        raise RuntimeError("the image encoder ran on a propagated frame: the figures would not be tracking alone.")
    return {"flops": float(flops), "seconds": statistics.median(times[1:])}


def count_parameters(model: SamI2V) -> Dict[str, object]:
    sam_total = sum(p.numel() for p in model.sam.parameters())
    by_module = {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad) for name in ADAPTERS
    }
    trainable = sum(p.numel() for p in model.trainable_parameters())
    lora_model = build_sam_i2v(
        dataclasses.replace(model.config, lora=LoraConfig(enabled=True)), device="cpu", allow_random_sam=True
    )
    lora_trainable = sum(p.numel() for p in lora_model.trainable_parameters())
    return {
        "sam_total": sam_total,
        "trainable_lora_off": trainable,
        "trainable_lora_off_by_module": by_module,
        "ratio_lora_off": trainable / sam_total,
        "trainable_lora_on": lora_trainable,
        "ratio_lora_on": lora_trainable / sam_total,
    }


def run(config: str, device: str, objects: Sequence[int], runs: int) -> Dict[str, object]:
    """All measurements; ``objects`` must include 1."""
    model = build_sam_i2v(config, device=device, allow_random_sam=True)
    params = count_parameters(model)
    image = torch.randn(1, 3, model.image_size, model.image_size, device=model.device)
    with FlopMeter() as meter:
        model.encode_images(image)
    encoder_flops = float(meter.total())
    with torch.inference_mode():
        start = time.perf_counter()
        encoded = model.sam.image_encoder(image)
        encoder_seconds = time.perf_counter() - start
    per_n: Dict[str, Dict[str, Dict[str, float]]] = {}
    for n in objects:
        per_n[str(n)] = {
            name: measure(
                worst_case(build_sam_i2v(config, device=device, allow_random_sam=True)),
                encoded,
                n,
                runs,
                policy,
            )
            for name, policy in (("default", None), ("motion", MotionAwarePolicy()))
        }
    one, most = per_n["1"], per_n[str(max(objects))]
    extra = max(objects) - 1
    per_object = {k: (most[k]["flops"] - one[k]["flops"]) / extra if extra else 0.0 for k in one}
    per_object_s = {k: (most[k]["seconds"] - one[k]["seconds"]) / extra if extra else 0.0 for k in one}
    return {
        "parameters": params,
        "flops_note": "FlopCounterMode (+ attention from shapes) around propagate_in_video, its last frame, "
        "image encoder replayed: 2 FLOPs per MAC, matmul-like ops.",
        "encoder_flops": encoder_flops,
        "encoder_seconds": encoder_seconds,
        "objects": per_n,
        "first_object_flops": one["default"]["flops"],
        "per_object_flops": per_object,
        "per_object_seconds": per_object_s,
        "ratios": {
            "params": params["ratio_lora_off"],
            "first_object_vs_encoder": one["default"]["flops"] / encoder_flops,
            "per_object_vs_encoder": per_object["default"] / encoder_flops,
            "per_object_motion_vs_encoder": per_object["motion"] / encoder_flops,
            "first_object_seconds_vs_encoder": one["default"]["seconds"] / encoder_seconds,
        },
        "budgets": {
            "params": params["ratio_lora_off"] <= PARAM_BUDGET,
            "first_object": one["default"]["flops"] / encoder_flops <= FIRST_OBJECT_BUDGET,
            "per_object": per_object["default"] / encoder_flops <= PER_OBJECT_BUDGET,
        },
        "runs": runs,
    }


def report(m: Dict[str, object]) -> str:
    p, r, b, enc = m["parameters"], m["ratios"], m["budgets"], m["encoder_flops"]
    ok = {True: "ok", False: "OVER"}
    g = lambda f: f"{f / 1e9:.2f} G"  # noqa: E731
    pct = lambda x: f"{100 * x:.2f} %"  # noqa: E731
    lines = [
        format_table(
            ["budget", "measured", "limit", ""],
            [
                [
                    "trainable params (LoRA off) / SAM",
                    f"{p['trainable_lora_off']:,} / {p['sam_total']:,} = {pct(r['params'])}",
                    "5 %",
                    ok[b["params"]],
                ],
                [
                    "tracking, first object / encoder",
                    f"{g(m['first_object_flops'])} = {pct(r['first_object_vs_encoder'])}",
                    "5 %",
                    ok[b["first_object"]],
                ],
                [
                    "tracking, each further object / encoder",
                    f"{g(m['per_object_flops']['default'])} = {pct(r['per_object_vs_encoder'])}",
                    "1 %",
                    ok[b["per_object"]],
                ],
                [
                    "  the same, motion-aware selection on",
                    f"{g(m['per_object_flops']['motion'])} = {pct(r['per_object_motion_vs_encoder'])}",
                    "",
                    "",
                ],
            ],
        ),
        "",
        f"image encoder: {g(enc)} per frame, {m['encoder_seconds']:.2f} s",
    ]
    rows = [
        [
            n,
            g(v["default"]["flops"]),
            f"{v['default']['seconds']:.3f}",
            g(v["motion"]["flops"]),
            f"{v['motion']['seconds']:.3f}",
        ]
        for n, v in m["objects"].items()
    ]
    lines.append(format_table(["objects", "tracking FLOPs", "tracking s", "with motion", "motion s"], rows))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--config", default="vit_b", help="bundled model config or YAML path")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 8], help="object counts (1 is always added)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--output", default=None, help="result JSON (default benchmarks/results/cost.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available.")
    if min(args.objects) < 1:
        parser.error("--objects must be positive.")
    objects = sorted(set(args.objects) | {1})
    metrics = run(args.config, args.device, objects, max(1, args.runs))
    print(report(metrics))
    model = build_sam_i2v(args.config, device="cpu", allow_random_sam=True)
    path = write_result(
        "cost",
        {"args": vars(args), "model": model.config, "image_size": model.image_size, "sam_weights": "random (seed 0)"},
        metrics,
        args.device,
        sam_sha256=model.sam_sha256,
        path=args.output,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
