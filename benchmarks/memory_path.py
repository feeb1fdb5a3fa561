"""What the memory path does on its own: memory-only tracking J and the presence head's AUC.

- memory-only tracking: the object's previous output is never given to SAM (no mask or box
  prior), so every tracked frame is segmented from memory's prompts alone (the read-out's box,
  its peak click and the read-out as mask prompt); J on frames where the object is visible;
- presence AUC: ROC AUC of the presence logit of every tracked (frame, object) pair for
  "visible" against "hidden or gone" (the Mann-Whitney U statistic over the two groups).

    python -m benchmarks.memory_path --checkpoint ADAPTER [--videos 48] [--split val]

``benchmarks/accuracy.py`` calls these on its wider check; run alone it scores an adapter.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from scipy.stats import mannwhitneyu

from i2v.eval.vos import DatasetVideo, prompt_object
from i2v.policies import DefaultPolicy, PriorOptions, TrackingPolicy
from i2v.video_predictor import I2VVideoPredictor

# The default policy without mask or box prior: memory alone prompts tracked frames.
MEMORY_ONLY = DefaultPolicy(priors=PriorOptions(mask=False, box=False))


def _track(model, dataset, index: int, policy: Optional[TrackingPolicy] = None):
    """Prompt each object with its mask where it first shows (as ``i2v.eval.vos.segment_video``
    does) and propagate with ``policy`` (None: the predictor's default); yields (t, obj_id, n,
    mask (H, W) bool, presence logit or None) for every object from its prompted frame on (None
    on that frame)."""
    predictor = I2VVideoPredictor(model, progress=False, policy=policy)
    ids = list(dataset.obj_ids(index))
    num = dataset.num_frames(index)
    state = predictor.init_state(DatasetVideo(dataset, index))
    starts = {}
    for n, obj_id in enumerate(ids):
        visible = [t for t in range(num) if dataset.masks(index, t)[n].any()]
        if visible:
            starts[obj_id] = visible[0]
            prompt_object(predictor, state, visible[0], obj_id, dataset.masks(index, visible[0])[n], "mask")
    if not starts:
        return
    with torch.inference_mode():
        for t, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=min(starts.values())):
            for k, obj_id in enumerate(obj_ids):
                if t < starts[obj_id]:
                    continue
                presence = None if t == starts[obj_id] else state.tracks[obj_id].output(t).presence_logit
                yield t, obj_id, ids.index(obj_id), (logits[k, 0] > 0).cpu().numpy(), presence


def _jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def memory_only_j(model, dataset, indices: Sequence[int]) -> Dict[str, Optional[float]]:
    """Mean J of memory-only tracking on the visible (tracked frame, object) pairs, and on
    frames 1-7."""
    every: List[float] = []
    early: List[float] = []
    for i in indices:
        for t, _, n, mask, presence in _track(model, dataset, i, MEMORY_ONLY):
            g = dataset.masks(i, t)[n]
            if presence is not None and g.any():
                j = _jaccard(mask, g)
                every.append(j)
                if t <= 7:
                    early.append(j)
    return {
        "j_visible": float(np.mean(every)) if every else None,
        "j_visible_frames_1_7": float(np.mean(early)) if early else None,
        "pairs": len(every),
    }


def presence_auc(model, dataset, indices: Sequence[int]) -> Dict[str, Optional[float]]:
    """ROC AUC of the presence logit for visible vs hidden tracked pairs (None without both)."""
    visible: List[float] = []
    hidden: List[float] = []
    for i in indices:
        for t, _, n, _, presence in _track(model, dataset, i):
            if presence is not None:
                (visible if dataset.masks(i, t)[n].any() else hidden).append(float(presence))
    auc = None
    if visible and hidden:
        auc = float(mannwhitneyu(visible, hidden).statistic / (len(visible) * len(hidden)))
    return {"auc": auc, "visible_pairs": len(visible), "hidden_pairs": len(hidden)}


def main(argv: Optional[List[str]] = None) -> None:
    from benchmarks.common import write_result
    from i2v.build import build_sam_i2v
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="adapter folder (default: the untrained upgrade)")
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--split", default="val")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model = (
        build_sam_i2v(checkpoint=args.checkpoint, device=args.device)
        if args.checkpoint
        else build_sam_i2v("tiny", device=args.device)
    )
    dataset = make_dataset(
        "synthetic", split=args.split, num_videos=args.videos, config=SyntheticConfig(num_frames=args.frames)
    )
    indices = range(args.videos)
    metrics = {"memory_only": memory_only_j(model, dataset, indices), "presence": presence_auc(model, dataset, indices)}
    print(metrics)
    write_result("memory_path", config=vars(args), metrics=metrics, device=args.device, sam_sha256=model.sam_sha256)


if __name__ == "__main__":
    main()
