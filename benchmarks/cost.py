"""Cost of the upgrade over plain SAM: trainable parameters, FLOPs per tracked frame, wall-clock.

Budgets checked (vit_b at 1024 px, random weights: FLOPs and parameter counts do not depend on
the values):

- trainable parameters with LoRA off          <= 5 % of SAM's parameters;
- upgrade FLOPs per tracked frame, 1 object   <= 10 % of the image encoder's FLOPs;
- marginal FLOPs per further object           <= 2 % of the image encoder's FLOPs.

"Upgrade FLOPs" are everything a tracked frame costs beyond SAM: the full tracked step
(``prepare_frame`` with a full upgrader window + ``decode`` reading a full memory of
``memory.filter.capacity`` entries + ``make_memory``) minus SAM's own prompt encoder and mask
decoder on the same frame and mask prompt without memory. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per multiply-accumulate and
only matmul-like ops (no softmax, norms, pooling or interpolation).

    python -m benchmarks.cost [--device cpu|cuda] [--config vit_b] [--objects 1 2 4 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import format_table, write_result
from benchmarks.flop_count import count_flops, counter_counts_attention
from i2v.adapters.config import LoraConfig
from i2v.build import build_sam_i2v
from i2v.memory_bank import MemoryBatch
from i2v.model import FrameFeatures, ObjectPrompts, SamI2V
from i2v.motion import BoxKalman, track_objects_with_motion

PARAM_BUDGET = 0.05
UPGRADE_BUDGET = 0.10
PER_OBJECT_BUDGET = 0.02
UPGRADE_MODULES = ("upgrader", "key_map", "memory_prompt", "presence_head", "memory_encoder")

# -- one tracked frame ------------------------------------------------------------------------


@dataclass
class TrackedInputs:
    """What a tracked frame of N objects starts from, at its largest.

    Attributes:
        raw: (1, C, h, w) frozen encoder output.
        past: (1, window, p*p, C) pooled tokens of a full upgrader window.
        prior: (N, 1, 4h, 4w) last masks, fed to SAM's mask prompt (as the predictor does).
        memory: N objects x ``capacity`` entries each.
    """

    raw: torch.Tensor
    past: torch.Tensor
    prior: torch.Tensor
    memory: MemoryBatch
    entries: list  # one object's ``capacity`` memory entries (every object reads the same)


def make_inputs(model: SamI2V, raw: torch.Tensor, num_objects: int) -> TrackedInputs:
    cfg = model.config
    pooled = model.upgrader.pool(raw)
    past = pooled[:, None].expand(-1, cfg.upgrader.window, -1, -1).contiguous()
    prior = torch.randn(num_objects, 1, *model.low_res_size, device=raw.device)
    frame = model.prepare_frame(raw, None)
    one = model.make_memory(frame, 0, prior[:1], torch.ones(1), torch.ones(1), prompted=True)[0]
    entries = [dataclasses.replace(one, frame_idx=i) for i in range(cfg.memory.filter.capacity)]
    memory = MemoryBatch.stack([entries] * num_objects, raw.device)
    assert memory is not None
    return TrackedInputs(raw, past, prior, memory, entries)


def tracked_step(model: SamI2V, x: TrackedInputs) -> None:
    """Everything after the encoder on a tracked frame, as the video predictor runs it."""
    n = x.prior.shape[0]
    frame = model.prepare_frame(x.raw, x.past)
    prompts = ObjectPrompts(mask_inputs=x.prior if model.config.memory_prompt.mask_prior else None)
    out = model.decode(frame, prompts, x.memory, n)
    model.make_memory(frame, 1, out.low_res_logits, out.iou, out.presence_logits, prompted=False)


def motion_step(model: SamI2V, x: TrackedInputs) -> None:
    """:func:`tracked_step` with motion-aware selection (``ModelConfig.motion``): each object
    decoded alone, twice (SAM's single mask and its three multimask candidates)."""
    n = x.prior.shape[0]
    frame = model.prepare_frame(x.raw, x.past)
    h, w = model.low_res_size
    filters = [BoxKalman(np.array([0.0, 0.0, w, h])) for _ in range(n)]
    track_objects_with_motion(model, frame, 1, [x.prior[i : i + 1] for i in range(n)], [x.entries] * n, filters)


def sam_decoder_step(model: SamI2V, x: TrackedInputs) -> None:
    """SAM's own prompt encoder + mask decoder on the same frame and mask prompt, no memory."""
    sam = model.sam
    masks = x.prior if model.config.memory_prompt.mask_prior else None
    sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=masks)
    n = x.prior.shape[0]
    sam.mask_decoder(
        image_embeddings=x.raw,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse.expand(n, -1, -1),
        dense_prompt_embeddings=dense.expand(n, -1, -1, -1),
        multimask_output=False,
    )


def module_calls(model: SamI2V, x: TrackedInputs) -> Dict[str, Callable[[], object]]:
    """Each upgrade module alone, on the inputs it sees in :func:`tracked_step`."""
    n = x.prior.shape[0]
    frame = FrameFeatures(x.raw, model.upgrader.pool(x.raw), model.memory_encoder.key_map(x.raw), x.raw.mean(dim=(0, 2, 3)))
    c = x.raw.shape[1]
    m = x.memory
    return {
        "upgrader": lambda: model.upgrader(x.raw, x.past),
        "key_map": lambda: model.memory_encoder.key_map(x.raw),
        "memory_prompt": lambda: model.memory_prompt(frame.embedding, frame.key_map, m.keys, m.values, m.padding),
        "presence_head": lambda: model.presence_head(x.raw.new_zeros(n, c), x.raw.new_zeros(n, c)),
        "memory_encoder": lambda: model.memory_encoder(frame.embedding, frame.key_map, x.prior),
    }


# -- measurement -----------------------------------------------------------------------------


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 with a single point)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def median_seconds(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_parameters(model: SamI2V) -> Dict[str, object]:
    sam_total = sum(p.numel() for p in model.sam.parameters())
    by_module = {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in ("upgrader", "memory_encoder", "memory_prompt", "presence_head")
    }
    trainable = sum(p.numel() for p in model.trainable_parameters())
    # With LoRA on, for reference: the default targets (the mask decoder's attention).
    lora_cfg = dataclasses.replace(model.config, lora=LoraConfig(enabled=True))
    lora_model = build_sam_i2v(lora_cfg, device="cpu", allow_random_sam=True)
    lora_trainable = sum(p.numel() for p in lora_model.trainable_parameters())
    del lora_model
    return {
        "sam_total": sam_total,
        "trainable_lora_off": trainable,
        "trainable_lora_off_by_module": by_module,
        "ratio_lora_off": trainable / sam_total,
        "trainable_lora_on": lora_trainable,
        "ratio_lora_on": lora_trainable / sam_total,
    }


def run(model: SamI2V, objects: Sequence[int], runs: int) -> Dict[str, object]:
    """All measurements; ``objects`` must include 1 (the upgrade budget is for one object)."""
    device = model.device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    params = count_parameters(model)
    attention_counted = counter_counts_attention(device, dtype)
    s = model.image_size
    image = torch.randn(1, 3, s, s, device=device)

    with autocast:
        with torch.no_grad():
            raw = model.encode_images(image).float()
            inputs = {n: make_inputs(model, raw, n) for n in objects}
        # FLOPs are counted with autograd on: FlopCounterMode's module tracker hooks every
        # input that requires grad, and under no_grad/inference_mode views of the adapters'
        # parameters still say requires_grad without the graph that hook needs. Only forward
        # FLOPs are counted; nothing here calls backward.
        enc = count_flops(lambda: model.encode_images(image), attention_counted)
        per_n: Dict[int, Dict[str, object]] = {}
        for n, x in inputs.items():
            step = count_flops(lambda: tracked_step(model, x), attention_counted)
            moving = count_flops(lambda: motion_step(model, x), attention_counted)
            sam_dec = count_flops(lambda: sam_decoder_step(model, x), attention_counted)
            with torch.no_grad():
                calls = module_calls(model, x)
            parts = {k: count_flops(f, attention_counted).total for k, f in calls.items()}
            per_n[n] = {
                "tracked_step": step.total,
                "tracked_step_motion": moving.total,
                "tracked_step_attention": step.attention,
                "tracked_step_attention_in_counter": step.attention_in_counted,
                "sam_decoder": sam_dec.total,
                "upgrade": step.total - sam_dec.total,
                "upgrade_modules": parts,
                # The decoder reads num_tokens extra sparse prompt tokens per object.
                "upgrade_extra_decoder_tokens": step.total - sam_dec.total - sum(parts.values()),
                "frame_total_upgraded": enc.total + step.total,
                "frame_total_sam": enc.total + sam_dec.total,
            }
        with torch.inference_mode():
            encoder_s = median_seconds(lambda: model.encode_images(image), runs, device)
            for n, x in inputs.items():
                tracked_step(model, x)  # warm-up: first calls pay for allocations
                per_n[n]["rest_seconds"] = median_seconds(lambda: tracked_step(model, x), runs, device)
                motion_step(model, x)
                per_n[n]["rest_seconds_motion"] = median_seconds(lambda: motion_step(model, x), runs, device)

    ns = list(per_n)
    first = per_n[1]
    per_object_full = slope(ns, [per_n[n]["tracked_step"] for n in ns])
    per_object_upgrade = slope(ns, [per_n[n]["upgrade"] for n in ns])
    per_object_motion = slope(ns, [per_n[n]["tracked_step_motion"] for n in ns])
    upgrade_1 = first["upgrade"]
    return {
        "parameters": params,
        "flops_note": "FlopCounterMode: 2 FLOPs per multiply-accumulate; matmul/conv-like ops only.",
        "attention_counted_by_counter": attention_counted,
        "attention_added_explicitly": not attention_counted,
        "encoder_flops": enc.total,
        "objects": {str(n): v for n, v in per_n.items()},
        "upgrade_flops_one_object": upgrade_1,
        "per_object_flops_full": per_object_full,
        "per_object_flops_upgrade": per_object_upgrade,
        "per_object_flops_motion": per_object_motion,
        "ratios": {
            "params": params["ratio_lora_off"],
            "upgrade_vs_encoder": upgrade_1 / enc.total,
            "per_object_full_vs_encoder": per_object_full / enc.total,
            "per_object_upgrade_vs_encoder": per_object_upgrade / enc.total,
            "per_object_motion_vs_encoder": per_object_motion / enc.total,
        },
        "budgets": {
            "params": params["ratio_lora_off"] <= PARAM_BUDGET,
            "upgrade": upgrade_1 / enc.total <= UPGRADE_BUDGET,
            "per_object": per_object_full / enc.total <= PER_OBJECT_BUDGET,
        },
        "dominant_upgrade_module": max(first["upgrade_modules"], key=first["upgrade_modules"].get),
        "encoder_seconds": encoder_s,
        "runs": runs,
    }


# -- report ----------------------------------------------------------------------------------


def _g(flops: float) -> str:
    return f"{flops / 1e9:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def report(m: Dict[str, object]) -> str:
    p = m["parameters"]
    enc = m["encoder_flops"]
    r, b = m["ratios"], m["budgets"]
    one = m["objects"]["1"]
    ok = {True: "ok", False: "OVER"}
    lines = [
        format_table(
            ["budget", "measured", "limit", ""],
            [
                ["trainable params (LoRA off) / SAM", f"{p['trainable_lora_off']:,} / {p['sam_total']:,} = {_pct(r['params'])}", "5 %", ok[b["params"]]],
                ["upgrade FLOPs, 1 object / encoder", f"{_g(m['upgrade_flops_one_object'])} G = {_pct(r['upgrade_vs_encoder'])}", "10 %", ok[b["upgrade"]]],
                ["per further object (full step) / encoder", f"{_g(m['per_object_flops_full'])} G = {_pct(r['per_object_full_vs_encoder'])}", "2 %", ok[b["per_object"]]],
                ["per further object (upgrade only) / encoder", f"{_g(m['per_object_flops_upgrade'])} G = {_pct(r['per_object_upgrade_vs_encoder'])}", "", ""],
                ["per further object, motion-aware selection on / encoder", f"{_g(m['per_object_flops_motion'])} G = {_pct(r['per_object_motion_vs_encoder'])}", "", ""],
            ],
        ),
        "",
        f"image encoder: {_g(enc)} GFLOPs/frame ({_g(enc / 2)} GMACs); "
        f"LoRA on (default targets): {p['trainable_lora_on']:,} trainable = {_pct(p['ratio_lora_on'])}",
        f"SDPA counted by FlopCounterMode (known-size check): {m['attention_counted_by_counter']}"
        + ("" if m["attention_counted_by_counter"] else " -> SDPA FLOPs added explicitly from shapes")
        + f"; SDPA in the 1-object step: {_g(one['tracked_step_attention'])} G from shapes, "
        f"{_g(one['tracked_step_attention_in_counter'])} G booked by the counter",
        "",
    ]
    rows = []
    for n, v in m["objects"].items():
        mods = v["upgrade_modules"]
        rows.append(
            [n, _g(v["frame_total_sam"]), _g(v["frame_total_upgraded"]), _g(v["sam_decoder"]), _g(v["upgrade"])]
            + [_g(mods[k]) for k in UPGRADE_MODULES]
            + [_g(v["upgrade_extra_decoder_tokens"]), f"{v['rest_seconds']:.3f}", f"{v['rest_seconds_motion']:.3f}"]
        )
    lines.append(
        format_table(
            ["objects", "SAM frame", "upgraded frame", "SAM dec", "upgrade"] + list(UPGRADE_MODULES) + ["dec +tokens", "rest s", "motion s"],
            rows,
        )
    )
    lines += [
        "(GFLOPs; 'rest s' = median wall-clock of the tracked step after the encoder; 'motion s' the same "
        "with motion-aware selection on)",
        f"encoder wall-clock: {m['encoder_seconds']:.2f} s/frame (median of {m['runs']}); "
        f"largest upgrade module: {m['dominant_upgrade_module']}",
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda also turns on bf16 autocast")
    parser.add_argument("--config", default="vit_b", help="bundled model config or YAML path")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 2, 4, 8], help="object counts for the per-object slope")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--output", default=None, help="result JSON (default benchmarks/results/cost.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available.")
    if min(args.objects) < 1:
        parser.error("--objects must be positive.")
    objects = sorted(set(args.objects) | {1})  # the upgrade budget is stated for one object
    model = build_sam_i2v(args.config, device=args.device, allow_random_sam=True)
    metrics = run(model, objects, max(1, args.runs))
    print(report(metrics))
    path = write_result(
        "cost",
        {"args": vars(args), "model": model.config, "image_size": model.image_size, "sam_weights": "random (seed 0)"},
        metrics,
        args.device,
        sam_sha256=model.sam_sha256,  # hash of the random weights, so they are never taken for official ones
        path=args.output,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
