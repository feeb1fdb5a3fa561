"""Accuracy breakdown: where the J&F of a method comes from, on held-out synthetic videos.

The synthetic generator scripts its hard moments (full occlusions, exits and returns,
look-alikes held next to a target), so every (frame, object) pair of a held-out video can be
told apart by what is happening to the object there:

- ``clean``: nothing scripted is happening to it;
- ``look-alike``: a look-alike is held next to it (or next to where it vanished);
- ``hidden``: it is fully occluded or out of the frame (its ground truth is empty, so J is 1
  only for an empty prediction);
- ``after``: any frame after it came back from an occlusion or an exit.

Where two apply, the first of hidden, after, look-alike wins.

Figures: J per phase (and the number of pairs) for per-frame SAM and for the upgrade (the
adapter given by ``--checkpoint``, or the untrained one) with and without motion-aware
selection (``i2v.motion``), and the frozen SAM's one-step ceiling on clean frames: the J it reaches on frame t when prompted with the ground truth of frame t-1
(its mask and that mask's box, prompted by the default policy's own code exactly as the predictor
prompts a tracked object from its previous mask; its box alone) or with frame t's own box, and the J of the ground truth
itself after the trip through the decoder's low-resolution mask (the resolution bound). The
ceiling is what clean frames can reach at most with this SAM, whatever the memory does.

:class:`EventOracle` is the other bound: a method told the scripted events, i.e. its output is
emptied on every hidden frame and it is re-prompted with the true mask on the first frame an
object shows again after an occlusion or exit (``benchmarks/accuracy.py`` scores per-frame SAM
and the trained upgrade that way). It is what perfect presence and re-acquisition would be
worth; the drift before an occlusion and on clean frames stays the method's own.

    python -m benchmarks.accuracy_breakdown [--checkpoint quickstart_out/adapter] [--val-videos 12]
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import write_result

PHASES = ("clean", "look-alike", "hidden", "after")


def frame_phases(events: Sequence, obj_id: int, num_frames: int) -> List[str]:
    """The phase of object ``obj_id`` on every frame (see the module docstring)."""
    phases = ["clean"] * num_frames
    for t in range(num_frames):
        for e in events:
            if e.obj_id != obj_id:
                continue
            if e.kind == "distractor" and e.start <= t < e.end and phases[t] == "clean":
                phases[t] = "look-alike"
            if e.kind in ("occlusion", "exit"):
                if e.start <= t < e.end:
                    phases[t] = "hidden"
                elif t >= e.end and phases[t] != "hidden":
                    phases[t] = "after"
    return phases


def _jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def _mean(values: Sequence[float]) -> Optional[float]:
    """Mean, or None (JSON null) when there is nothing to average."""
    return float(np.mean(values)) if len(values) else None


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


class EventOracle:
    """A predictor wrapper that knows the scripted events of a synthetic video (see the module
    docstring): hidden frames come out empty, and each object is re-prompted with its true mask
    on the first frame after an occlusion or exit where at least ``min_area`` pixels show.

    Evaluate it like any predictor (``i2v.eval.vos.evaluate``) on an ``i2v.data.synthetic``
    dataset; the runner's ``DatasetVideo`` tells it which video it is on.
    """

    def __init__(self, inner, min_area: int = 20) -> None:
        self.inner, self.min_area = inner, min_area
        self._video = None

    def init_state(self, video):
        self._video = video
        return self.inner.init_state(video)

    def add_new_mask(self, state, frame_idx: int, obj_id: int, mask):
        return self.inner.add_new_mask(state, frame_idx, obj_id, mask)

    def add_new_points_or_box(self, *args, **kwargs):
        return self.inner.add_new_points_or_box(*args, **kwargs)

    def propagate_in_video(self, state, **kwargs):
        dataset, index = self._video.dataset, self._video.index
        ids = list(dataset.obj_ids(index))
        hidden: Dict[int, set] = {obj_id: set() for obj_id in ids}
        for e in dataset.events(index):
            if e.kind not in ("occlusion", "exit"):
                continue
            hidden[e.obj_id].update(range(e.start, e.end))
            for t in range(e.end, dataset.num_frames(index)):
                mask = dataset.masks(index, t)[ids.index(e.obj_id)]
                if mask.sum() >= self.min_area:
                    self.inner.add_new_mask(state, t, e.obj_id, mask)
                    break
        for t, out_ids, logits in self.inner.propagate_in_video(state, **kwargs):
            logits = logits.clone()
            for k, obj_id in enumerate(out_ids):
                if t in hidden.get(obj_id, ()):
                    logits[k] = -20.0
            yield t, out_ids, logits


def phase_scores(predictor, dataset, indices: Sequence[int]) -> Dict[str, Dict[str, float]]:
    """Mean J per phase over every (frame after the prompt, object) pair of the videos."""
    from i2v.eval.vos import segment_video

    scores: Dict[str, List[float]] = {p: [] for p in PHASES}
    for i in indices:
        preds, gts = segment_video(predictor, dataset, i, "mask")
        for n, obj_id in enumerate(dataset.obj_ids(i)):
            visible = np.flatnonzero(gts[:, n].reshape(len(gts), -1).any(axis=1))
            if not len(visible):
                continue
            phases = frame_phases(dataset.events(i), obj_id, len(gts))
            for t in range(int(visible[0]) + 1, len(gts)):
                scores[phases[t]].append(_jaccard(preds[t, n], gts[t, n]))
    return {p: {"j": _mean(v), "pairs": len(v)} for p, v in scores.items()}


def one_step_ceiling(model, dataset, indices: Sequence[int], min_area: int = 20) -> Dict[str, float]:
    """The frozen SAM's J on frame t of clean pairs, prompted from ground truth (see docstring)."""
    from i2v.model import ObjectPrompts
    from i2v.policies import DefaultPolicy, ObjectInput
    from i2v.tracking_ops import mask_prompt_logits, mask_to_low_res

    policy = DefaultPolicy()  # "mask and box" is the prompt the predictor gives a tracked object's prior

    s = model.image_size
    scores: Dict[str, List[float]] = {k: [] for k in ("prev_mask_and_box", "prev_box", "own_box", "low_res_round_trip")}

    def box(mask: np.ndarray, scale: float) -> torch.Tensor:
        ys, xs = np.nonzero(mask)
        return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32) * scale

    with torch.no_grad():
        for i in indices:
            ids = dataset.obj_ids(i)
            phases = {obj_id: frame_phases(dataset.events(i), obj_id, dataset.num_frames(i)) for obj_id in ids}
            prev_gt = dataset.masks(i, 0)
            for t in range(1, dataset.num_frames(i)):
                image, gt = dataset.frame(i, t), dataset.masks(i, t)
                h, w = image.shape[:2]
                x, input_size = model.preprocess(image)
                frame = model.prepare_frame(model.encode_images(x), None)
                scale = s / max(h, w)

                def j_of(logits: torch.Tensor, target: np.ndarray, size=input_size, hw=(h, w)) -> float:
                    mask = model.sam.postprocess_masks(logits.float(), size, hw)[0, 0].cpu().numpy() > 0
                    return _jaccard(mask, target)

                for n, obj_id in enumerate(ids):
                    if phases[obj_id][t] != "clean" or prev_gt[n].sum() < min_area or gt[n].sum() < min_area:
                        continue
                    low = mask_prompt_logits(
                        mask_to_low_res(
                            torch.as_tensor(prev_gt[n], device=model.device)[None], input_size, s, model.low_res_size
                        )
                    )
                    as_prior = policy.plan(model, frame, t, [ObjectInput(low, [])]).prompts[0]
                    assert as_prior is not None
                    prompts = {
                        "prev_mask_and_box": as_prior,
                        "prev_box": ObjectPrompts(boxes=box(prev_gt[n], scale).to(model.device)),
                        "own_box": ObjectPrompts(boxes=box(gt[n], scale).to(model.device)),
                    }
                    for name, p in prompts.items():
                        scores[name].append(j_of(model.decode(frame, p, 1).low_res_logits, gt[n]))
                    own = mask_prompt_logits(
                        mask_to_low_res(
                            torch.as_tensor(gt[n], device=model.device)[None], input_size, s, model.low_res_size
                        )
                    )
                    scores["low_res_round_trip"].append(j_of(own, gt[n]))
                prev_gt = gt
    out: Dict[str, Optional[float]] = {k: _mean(v) for k, v in scores.items()}
    out["pairs"] = len(scores["own_box"])
    return out


def breakdown(
    checkpoint: Optional[str], val_videos: int, frames: int, device: str, verbose: bool = True
) -> Dict[str, object]:
    """Phase J of per-frame SAM and of the upgrade (``checkpoint``, or untrained), and the
    one-step ceiling, on the first ``val_videos`` held-out synthetic videos."""
    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig
    from i2v.eval.baselines import PerFrameSamPredictor
    from i2v.policies import MotionAwarePolicy
    from i2v.video_predictor import I2VVideoPredictor

    model = build_sam_i2v(checkpoint=checkpoint, device=device)
    dataset = make_dataset("synthetic", split="val", num_videos=val_videos, config=SyntheticConfig(num_frames=frames))
    indices = range(len(dataset))
    upgrade = "trained upgrade" if checkpoint else "untrained upgrade"
    methods = {}
    for name, predictor in (
        ("per-frame SAM", PerFrameSamPredictor(model)),
        (upgrade, I2VVideoPredictor(model)),
        (f"{upgrade} + motion", I2VVideoPredictor(model, policy=MotionAwarePolicy())),
    ):
        methods[name] = phase_scores(predictor, dataset, indices)
        if verbose:
            print(f"  {name:26s} " + "  ".join(f"{p} {_fmt(s['j'])} ({s['pairs']})" for p, s in methods[name].items()))
    ceiling = one_step_ceiling(model, dataset, indices)
    if verbose:
        print(
            "  one-step ceiling on clean pairs: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in ceiling.items() if k != "pairs")
        )
    return {"phases": methods, "one_step_ceiling": ceiling, "sam_sha256": model.sam_sha256}


def main(argv: Optional[List[str]] = None) -> None:
    from i2v.quickstart import DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", default=None, help="adapter directory (save_pretrained); default: untrained adapters"
    )
    parser.add_argument("--val-videos", type=int, default=DEFAULTS["val_videos"])
    parser.add_argument("--frames", type=int, default=DEFAULTS["frames"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", default=None, help="result JSON path (default benchmarks/results/accuracy_breakdown.json)"
    )
    args = parser.parse_args(argv)
    result = breakdown(args.checkpoint, args.val_videos, args.frames, args.device)
    sam_sha256 = result.pop("sam_sha256")
    path = write_result(
        "accuracy_breakdown",
        config=vars(args),
        metrics=result,
        device=args.device,
        sam_sha256=sam_sha256,
        path=args.out,
    )  # type: ignore[arg-type]
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
