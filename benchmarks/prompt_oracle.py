"""How much a better choice of prompt source could add: memory's prompts vs the previous output.

On every tracked frame, the default policy prompts SAM with memory's prompts whenever memory
finds the object (``memory_prompt.agreement`` = 1), and with the object's previous output (its
mask and box, what per-frame SAM uses) only where memory has nothing. A learned gate between
the two could only help as much as an oracle that, per object and frame, decodes both and keeps
the one closer to the ground truth. This benchmark scores, paired over videos with a 95 %
bootstrap interval against the default policy:

- ``previous-output``: the previous output whenever there is one (``agreement`` = 0);
- ``predicted-iou``: whichever of the two SAM's IoU head rates higher (a training-free gate);
- ``oracle``: whichever of the two has the higher IoU with the ground truth (an upper bound).

    python -m benchmarks.prompt_oracle [--checkpoint ADAPTER] [--videos 24] [--split test]

Each gate is a tracking policy (:mod:`i2v.policies`) of a few lines: the seam a learned gate
would use.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from i2v.model import FrameFeatures, SamI2V
from i2v.policies import DefaultPolicy, ObjectInput, PolicyOutput
from i2v.tracking_ops import TrackedObjects, mask_to_low_res, track_objects

# (frame index, object id) -> (4h, 4w) bool ground truth at the decoder's mask resolution.
TruthFn = Callable[[int, int], torch.Tensor]


def _iou(pred: torch.Tensor, gt: torch.Tensor) -> float:
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def _pick(a: TrackedObjects, b: TrackedObjects, take_b: List[bool]) -> TrackedObjects:
    """Row i from ``b`` where ``take_b[i]``, else from ``a``."""
    sel = torch.tensor(take_b, device=a.logits.device)

    def rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(sel.view(-1, *([1] * (x.dim() - 1))), y, x)

    return TrackedObjects(
        rows(a.logits, b.logits),
        rows(a.raw_logits, b.raw_logits),
        rows(a.all_logits, b.all_logits),
        rows(a.all_iou, b.all_iou),
        rows(a.iou, b.iou),
        rows(a.presence_logits, b.presence_logits),
        [eb if t else ea for ea, eb, t in zip(a.entries, b.entries, take_b)],
        a.plan,
        a.decoded | b.decoded,
    )


class SourceGate(DefaultPolicy):
    """Decodes every tracked object twice (memory's prompts; its previous output) and keeps one.

    Args:
        rule: ``"previous-output"``, ``"predicted-iou"`` or ``"oracle"``.
        truth: ground truth for ``"oracle"``.
    """

    def __init__(self, rule: str, truth: Optional[TruthFn] = None) -> None:
        super().__init__()
        self.rule, self.truth = rule, truth

    def _decode(
        self, model: SamI2V, frame: FrameFeatures, t: int, objects: Sequence[ObjectInput], agreement: float
    ) -> TrackedObjects:
        saved = model.config
        mp = dataclasses.replace(saved.memory_prompt, agreement=agreement)
        model.config = dataclasses.replace(saved, memory_prompt=mp)
        try:
            memories = [o.memory for o in objects]
            return track_objects(model, frame, t, self.mask_priors(objects), memories, self.priors.box)
        finally:
            model.config = saved

    def track(
        self,
        model: SamI2V,
        frame: FrameFeatures,
        frame_idx: int,
        objects: Sequence[ObjectInput],
        extent: Optional[Tuple[int, int]] = None,
    ) -> PolicyOutput:
        memory = self._decode(model, frame, frame_idx, objects, 1.0)
        previous = self._decode(model, frame, frame_idx, objects, 0.0)
        if self.rule == "previous-output":
            take = [True] * len(objects)
        elif self.rule == "predicted-iou":
            take = (previous.iou > memory.iou).tolist()
        else:
            if self.truth is None:
                raise ValueError("the oracle gate needs the ground truth")
            take = []
            for i, o in enumerate(objects):
                if o.obj_id is None:
                    raise ValueError("the oracle gate needs each object's id")
                gt = self.truth(frame_idx, o.obj_id)
                take.append(_iou(previous.logits[i, 0] > 0, gt) > _iou(memory.logits[i, 0] > 0, gt))
        return PolicyOutput(_pick(memory, previous, take), [None] * len(objects))


def _truth(model: SamI2V, dataset, index: int) -> TruthFn:
    ids = list(dataset.obj_ids(index))
    height, width = dataset.masks(index, 0).shape[-2:]
    input_size = model.transform.get_preprocess_shape(height, width, model.image_size)
    cache: Dict[Tuple[int, int], torch.Tensor] = {}

    def truth(t: int, obj_id: int) -> torch.Tensor:
        if (t, obj_id) not in cache:
            mask = torch.from_numpy(dataset.masks(index, t)[ids.index(obj_id)])
            cover = mask_to_low_res(mask[None], input_size, model.image_size, model.low_res_size)
            cache[(t, obj_id)] = cover[0, 0].to(model.device) > 0.5
        return cache[(t, obj_id)]

    return truth


def per_video_jf(model: SamI2V, dataset, rule: Optional[str]) -> List[float]:
    """J&F (points) of each video with the default policy (``rule`` None) or a gate."""
    from i2v.eval.vos import evaluate
    from i2v.video_predictor import I2VVideoPredictor

    scores = []
    for i in range(len(dataset)):
        policy = DefaultPolicy() if rule is None else SourceGate(rule, _truth(model, dataset, i))
        predictor = I2VVideoPredictor(model, policy=policy, progress=False)
        scores.append(
            100 * evaluate(predictor, dataset, [i], "mask", rule or "default", progress=False).summary()["jf_mean"]
        )
    return scores


def paired(diff: np.ndarray, seed: int = 0, rounds: int = 2000) -> Dict[str, float]:
    rng = np.random.default_rng(seed)
    boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(rounds)]
    low, high = np.percentile(boots, [2.5, 97.5])
    return {"gain": float(diff.mean()), "low": float(low), "high": float(high), "videos": len(diff)}


def main(argv: Optional[List[str]] = None) -> None:
    from benchmarks.common import write_result
    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="adapter folder (default: the untrained tiny upgrade)")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--split", default="test", help="a development split; the held-out val is for the README")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.checkpoint:
        model = build_sam_i2v(checkpoint=args.checkpoint, device=args.device)
    else:
        model = build_sam_i2v("tiny", device=args.device)
    dataset = make_dataset(
        "synthetic", split=args.split, num_videos=args.videos, config=SyntheticConfig(num_frames=args.frames)
    )
    with torch.inference_mode():
        base = per_video_jf(model, dataset, None)
    metrics: Dict[str, object] = {"default": float(np.mean(base))}
    with torch.inference_mode():
        for rule in ("previous-output", "predicted-iou", "oracle"):
            scores = per_video_jf(model, dataset, rule)
            gain = paired(np.array(scores) - np.array(base))
            metrics[rule] = {"jf": float(np.mean(scores)), "vs default": gain}
            print(
                f"{rule:16s} J&F {np.mean(scores):.1f}  vs default {gain['gain']:+.1f} ({gain['low']:+.1f} to {gain['high']:+.1f})"
            )
    path = write_result("prompt_oracle", config=vars(args), metrics=metrics, device=args.device, path=args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
