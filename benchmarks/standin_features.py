"""Does the stand-in SAM's image embedding tell instances apart? (issue 15, item 4)

For each tiny SAM checkpoint given, on held-out synthetic videos (the "test" split; "val" is
kept for the video evaluation):

* **image mIoU** with one click and with a box, exactly as ``pretrain_tiny_sam.evaluate``
  reports it (the checkpoint's promptable quality must not pay for the features);
* **prototype localisation**: an object's prototype is the masked mean of its frame-0 embedding
  tokens (weights = the mask's area fraction in each 8 px token); on every later frame where the
  object is visible, is the token most cosine-similar to the prototype on the object? "on" =
  the token's cell is at least half object (``proto_loc``), or touches it (``proto_loc_touch``);
* **training-free read-out J**: memory = frame 0 with its true mask + the 3 most recent frames
  with their predicted probabilities; each token of frame t reads the memory with
  ``softmax(cos / 0.02)`` over all memory tokens, the read-out is upsampled to 64x64 and
  thresholded at 0.5; J at 64x64 on visible frames 1..T-1 (``readout_j``) and 1..7
  (``readout_j_short``). The same read-out on 16x16 mean RGB is the colour-only yardstick.

    python -m benchmarks.standin_features                                  # the bundled checkpoint
    python -m benchmarks.standin_features --checkpoint before=old.safetensors \\
        --checkpoint after=checkpoints/tiny_sam.safetensors

Writes ``benchmarks/results/standin_features.json`` (``--out`` to change it).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import format_table, write_result
from i2v.build import build_sam_i2v, default_sam_checkpoint
from i2v.checkpoints.correspondence import label_propagation
from i2v.checkpoints.pretrain_tiny_sam import eval_examples, evaluate
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.model import SamI2V
from i2v.sam_builder import file_sha256
from i2v.train.clip_step import prepare_clip


@dataclass
class Video:
    """One held-out video in the model's frames."""

    images: torch.Tensor  # (T, 3, S, S) SAM-preprocessed
    gt: torch.Tensor  # (T, N, 64, 64) bool, SAM's padded frame at the decoder's resolution


def load_videos(model: SamI2V, split: str, num_videos: int, num_frames: int) -> List[Video]:
    ds = SyntheticVideoDataset(split, num_videos, SyntheticConfig(num_frames=num_frames))
    videos = []
    for i in range(num_videos):
        frames = torch.from_numpy(np.stack([ds.frame(i, t) for t in range(num_frames)])).permute(0, 3, 1, 2)
        masks = torch.from_numpy(np.stack([ds.masks(i, t) for t in range(num_frames)]))
        clip = prepare_clip(model, frames, masks)
        videos.append(Video(clip.images, clip.gt))
    return videos


def jaccard(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool → (...,) IoU; 1 when both are empty."""
    inter = (pred & gt).flatten(-2).sum(-1).float()
    union = (pred | gt).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def cell_fraction(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """(..., 64, 64) bool → (..., grid * grid) area fraction of each embedding token."""
    lead = mask.shape[:-2]
    pooled = F.adaptive_avg_pool2d(mask.reshape(-1, 1, *mask.shape[-2:]).float(), grid)
    return pooled.reshape(*lead, grid * grid)


def readout(feat: torch.Tensor, gt0: torch.Tensor, tau: float, recent: int) -> torch.Tensor:
    """Training-free memory read-out of one object through a video.

    Args:
        feat: (T, D, g, g) features; gt0: (64, 64) bool, the true mask of frame 0.
    Returns:
        (T, 64, 64) bool predictions; frame 0 is ``gt0``.
    """
    t_len, g = feat.shape[0], feat.shape[-1]
    tokens = feat.flatten(2).transpose(1, 2)  # (T, g*g, D)
    keys, values = [tokens[0]], [cell_fraction(gt0, g)]
    preds = [gt0]
    for t in range(1, t_len):
        read = label_propagation(tokens[t], torch.cat(keys), torch.cat(values)[:, None], tau)  # (g*g, 1)
        prob = F.interpolate(read.T.reshape(1, 1, g, g), size=gt0.shape, mode="bilinear", align_corners=False)[0, 0]
        preds.append(prob > 0.5)
        keys = [keys[0]] + (keys[1:] + [tokens[t]])[-recent:]
        values = [values[0]] + (values[1:] + [F.adaptive_avg_pool2d(prob[None, None], g).flatten()])[-recent:]
    return torch.stack(preds)


def feature_metrics(
    videos: Sequence[Video], feats: Sequence[torch.Tensor], tau: float, recent: int
) -> Dict[str, float]:
    """Prototype localisation and read-out J over every object present on frame 0."""
    hits, touches, js, short = [], [], [], []
    for video, feat in zip(videos, feats):
        g = feat.shape[-1]
        tokens = F.normalize(feat.flatten(2), dim=1)  # (T, D, g*g)
        for n in range(video.gt.shape[1]):
            gt = video.gt[:, n]
            if not gt[0].any():
                continue
            visible = gt.flatten(1).any(1)
            frac = cell_fraction(gt, g)  # (T, g*g)
            proto = F.normalize((tokens[0] * frac[0]).sum(-1) / frac[0].sum(), dim=0)  # (D,)
            best = torch.einsum("d,tdk->tk", proto, tokens).argmax(-1)  # (T,)
            on = frac.gather(1, best[:, None])[:, 0]
            hits.append((on[1:] >= 0.5)[visible[1:]])
            touches.append((on[1:] > 0)[visible[1:]])
            j = jaccard(readout(feat, gt[0], tau, recent), gt)
            js.append(j[1:][visible[1:]])
            short.append(j[1:8][visible[1:8]])
    return {
        "proto_loc": float(torch.cat(hits).float().mean()),
        "proto_loc_touch": float(torch.cat(touches).float().mean()),
        "readout_j": float(torch.cat(js).mean()),
        "readout_j_short": float(torch.cat(short).mean()),
        "objects": len(js),
        "frames": int(sum(len(j) for j in js)),
    }


@torch.no_grad()
def measure(checkpoint: Path, args: argparse.Namespace) -> Dict[str, object]:
    model = build_sam_i2v("tiny", sam_checkpoint=checkpoint, device="cpu").eval()
    t0 = time.perf_counter()
    videos = load_videos(model, args.split, args.videos, args.frames)
    feats = [torch.cat([model.encode_images(v.images[k : k + 8]) for k in range(0, len(v.images), 8)]) for v in videos]
    out: Dict[str, object] = {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}
    out["embedding"] = feature_metrics(videos, feats, args.tau, args.recent)
    if args.rgb:
        rgb = [F.adaptive_avg_pool2d(v.images, feats[0].shape[-1]) for v in videos]
        out["rgb16"] = feature_metrics(videos, rgb, args.tau, args.recent)
    if args.image_instances > 0:
        out["image"] = evaluate(model.sam, eval_examples(args.image_instances, args.min_area))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def parse_checkpoint(spec: str) -> Tuple[str, Path]:
    name, _, path = spec.rpartition("=")
    return (name or Path(path).stem), Path(path)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, object]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="[NAME=]PATH of a tiny SAM .safetensors (repeatable); default: the bundled one",
    )
    p.add_argument(
        "--split", default="test", choices=("test", "train"), help="never 'val': it is kept for the video evaluation"
    )
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--tau", type=float, default=0.02)
    p.add_argument("--recent", type=int, default=3)
    p.add_argument("--image-instances", type=int, default=240, help="held-out instances of the image mIoU (0 skips it)")
    p.add_argument("--min-area", type=int, default=20)
    p.add_argument("--no-rgb", dest="rgb", action="store_false", help="skip the 16x16 mean-RGB yardstick")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--out", type=Path, default=None, help="result JSON (default benchmarks/results/standin_features.json)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = args.checkpoint or [f"bundled={default_sam_checkpoint('tiny')}"]
    results = {}
    for spec in specs:
        name, path = parse_checkpoint(spec)
        results[name] = measure(path, args)
        print(f"{name}: done in {results[name]['seconds']} s", flush=True)
    rows = []
    for name, r in results.items():
        for feat in ("embedding", "rgb16"):
            if feat in r:
                m = r[feat]
                img = r.get("image", {}) if feat == "embedding" else {}
                rows.append(
                    (
                        f"{name} {feat}",
                        f"{m['proto_loc']:.3f}",
                        f"{m['proto_loc_touch']:.3f}",
                        f"{m['readout_j']:.3f}",
                        f"{m['readout_j_short']:.3f}",
                        f"{img['click1_miou']:.3f}" if img else "",
                        f"{img['box_miou']:.3f}" if img else "",
                    )
                )
    print(format_table(("features", "proto loc", "proto touch", "read-out J", "J 1-7", "1 click", "box"), rows))
    first = next(iter(results.values()))
    path = write_result(
        "standin_features",
        config={**vars(args), "checkpoint": specs},
        metrics=results,
        device="cpu",
        sam_sha256=str(first["sha256"]),
        path=args.out,
    )
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
