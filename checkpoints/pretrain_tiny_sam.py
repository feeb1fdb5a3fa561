"""Pretrain the bundled tiny SAM from scratch on synthetic images, with SAM's promptable recipe.

The official SAM checkpoints cannot ship with the package (size, licence), and CPU demos and
tests still need a SAM that segments. This script trains ``SAM_ARCHS["tiny"]`` (segment_anything's
own classes at CPU size; see :mod:`i2v.sam_builder`) from scratch on frames of the train split of
the built-in synthetic video generator, the way SAM itself was trained:

* per image, every annotated object (visible area >= ``--min-area`` pixels) is a target;
* the first prompt is, with equal odds per image, one positive point drawn uniformly inside the
  mask or the tight box with Gaussian noise (std 10% of its side, clipped to 20%) clipped to the
  image;
* then 1-3 corrective clicks (one draw per step): each is drawn uniformly from the error region
  of the previous prediction (positive in a false negative, negative in a false positive), with
  the previous low-res logits fed back as the mask prompt;
* a lone point gets multimask output (3 masks) and the loss of the best mask only; every other
  prompt gets a single mask;
* loss = 20 * focal + 1 * dice on the masks + MSE between the predicted IoU and the actual IoU
  of every mask, computed at the decoder's low resolution (4x the embedding grid) in the padded
  frame, with the ground truth resized, padded and area-downsampled the same way.

With ``--corr-weight w > 0`` the image encoder also learns cross-frame correspondence (see
:mod:`i2v.checkpoints.correspondence`): each batch is ``batch-size / 2`` pairs of frames
``(t, t + k)`` of one train video (``k`` uniform in 1..``--max-gap``, either order); every token
of one frame reads the other frame's per-token instance labels (background, every blob, look-alikes
and occluders included, and SAM's padding) with ``softmax(cos / --corr-tau)`` over the other
frame's tokens of the L2-normalised embedding, and ``w`` times the instance-balanced
cross-entropy of that read-out (both directions) is added to the promptable loss, which still
covers all the pair's frames. This is what makes the memory read-out of sam-i2v, a cosine
similarity of raw embedding tokens, work on the stand-in as it does on real SAM features.
``--init`` fine-tunes an existing checkpoint; ``--freeze-encoder`` trains the prompt encoder and
mask decoder only.

Images are preprocessed exactly as ``SamPredictor`` does (``ResizeLongestSide(img_size)`` +
``Sam.preprocess``) and points/boxes go through ``apply_coords``/``apply_boxes``. ``Sam.forward``
runs under ``no_grad``, so the three modules are called directly; the decoder runs once per
image with that image's prompts batched (it repeats the image embedding per prompt). The
promptable step and the held-out evaluation are in :mod:`i2v.checkpoints.promptable`.

Held-out evaluation uses the "test" split (the "val" split belongs to the video evaluation).

The library supplies the focal and dice losses (:mod:`i2v.train.losses`), AdamW's parameter
groups (:mod:`i2v.train.optim`), the first prompts (:func:`~i2v.train.prompts.sample_points`,
:func:`~i2v.train.prompts.sample_box`, :func:`~i2v.train.prompts.mask_box`) and the depth map
of the evaluation clicks (:func:`~i2v.train.prompts.region_depth`). What stays here is SAM's own
recipe (:mod:`i2v.checkpoints.promptable`) where sam-i2v's video training differs on purpose: corrective clicks uniform in the
whole error (sam-i2v's land deep in the larger error), MSE on the IoU head (L1, plus a presence
term, in sam-i2v), an IoU of 1 when prediction and target are both empty, and a schedule
that follows the time budget (``WarmupCosine`` counts steps).

Usage::

    python -m i2v.checkpoints.pretrain_tiny_sam --minutes 25 --out checkpoints/
    python checkpoints/pretrain_tiny_sam.py --minutes 1 --out /tmp/tiny   # smoke run

Writes ``tiny_sam.safetensors`` (the ``Sam`` state dict, segment_anything key names, fp32) and
``tiny_sam.json`` (metrics and provenance) into ``--out``, both atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from tqdm import tqdm

from i2v.checkpoints.correspondence import FramePair, cell_labels, correspondence_loss, sample_pair
from i2v.checkpoints.promptable import Example, Prep, evaluate, train_step
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.io.atomic import atomic_path, write_text_atomic
from i2v.sam_builder import SAM_ARCHS, build_sam_arch, file_sha256, read_state_dict
from i2v.train.optim import param_groups

MODEL_TYPE = "tiny"
CHECKPOINT_NAME = "tiny_sam.safetensors"
METRICS_NAME = "tiny_sam.json"
NUM_TRAIN_VIDEOS = 1_000_000  # the stream draws (video, frame) pairs from this many train videos
NUM_TEST_VIDEOS = 10_000


# --------------------------------------------------------------------------------------------
# Data


def _keep_objects(masks: np.ndarray, min_area: int) -> np.ndarray:
    return masks[masks.reshape(len(masks), -1).sum(1) >= min_area]


def sample_train_example(ds: SyntheticVideoDataset, rng: np.random.Generator, min_area: int) -> Example:
    """A random frame of a random train video with at least one target of ``min_area``."""
    while True:
        index = int(rng.integers(len(ds)))
        t = int(rng.integers(ds.num_frames(index)))
        masks = _keep_objects(ds.masks(index, t), min_area)
        if len(masks):
            return Example(ds.frame(index, t), masks)


def pair_examples(pair: FramePair, min_area: int) -> List[Example]:
    """The two frames of a correspondence pair as promptable examples (targets of ``min_area``)."""
    return [Example(image, _keep_objects(masks, min_area)) for image, masks in zip(pair.images, pair.masks)]


def eval_examples(num_instances: int, min_area: int, seed: int = 0) -> List[Example]:
    """A fixed list of held-out test-split images holding >= ``num_instances`` targets."""
    ds = SyntheticVideoDataset("test", NUM_TEST_VIDEOS, seed=seed)
    out: List[Example] = []
    count, index = 0, 0
    while count < num_instances:
        t = (7 * index) % ds.num_frames(index)
        masks = _keep_objects(ds.masks(index, t), min_area)
        if len(masks):
            out.append(Example(ds.frame(index, t), masks))
            count += len(masks)
        index += 1
    return out


# --------------------------------------------------------------------------------------------
# The correspondence term and the schedule (the promptable recipe is in promptable.py)


def pair_loss(
    sam: Sam, pairs: Sequence[FramePair], embeddings: torch.Tensor, preps: Sequence[Prep], tau: float
) -> torch.Tensor:
    """Mean correspondence loss of the pairs, both directions; image ``2i`` of ``embeddings``
    (B, C, h, w) is the first frame of pair ``i`` and image ``2i + 1`` the second."""
    grid, img_size = embeddings.shape[-1], sam.image_encoder.img_size
    total = embeddings.new_zeros(())
    for i, pair in enumerate(pairs):
        labels = [
            cell_labels(inst, pair.num_classes, preps[2 * i + j].input_size, img_size, grid)
            for j, inst in enumerate(pair.instances)
        ]
        emb_a, emb_b = embeddings[2 * i], embeddings[2 * i + 1]
        total = (
            total
            + correspondence_loss(emb_a, emb_b, labels[0], labels[1], tau)
            + correspondence_loss(emb_b, emb_a, labels[1], labels[0], tau)
        )
    return total / (2 * len(pairs))


def lr_at(progress: float, step: int, base_lr: float, warmup_steps: int, min_ratio: float = 0.01) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from ``base_lr`` to ``min_ratio * base_lr``
    over ``progress`` in [0, 1] (the fraction of the time or step budget used)."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    cos = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return base_lr * warm * cos


def _fmt(metrics: Dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


# --------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(sam: Sam, path: Path) -> None:
    """The Sam state dict (segment_anything key names, fp32) as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sam.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "model_type": MODEL_TYPE})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors recreates the file with mode 0600


def init_provenance(init: Path) -> Dict:
    """Where a ``--init`` checkpoint came from: its path and hash, and, when the ``tiny_sam.json``
    beside it describes that very file, its command, steps, time, metrics and own provenance (so a
    chain of fine-tunes stays traceable to its first run)."""
    out: Dict = {"path": str(init), "sha256": file_sha256(init)}
    report_path = init.with_name(METRICS_NAME)
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        if report.get("sha256") == out["sha256"]:
            for key in ("command", "steps", "train_minutes", "metrics", "init"):
                if key in report:
                    out[key] = report[key]
    return out


def command_line() -> str:
    spec = globals().get("__spec__")
    if spec is not None and spec.name and spec.name != "__main__":
        head = ["python", "-m", spec.name]
    else:
        head = ["python", sys.argv[0]]
    return " ".join(shlex.quote(a) for a in head + sys.argv[1:])


# --------------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=25.0, help="training time budget (the cosine schedule spans it)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="fixed number of steps instead of a time budget (the schedule spans them; fully reproducible)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this tiny SAM checkpoint (strict keys) instead of random weights",
    )
    p.add_argument(
        "--corr-weight",
        type=float,
        default=0.0,
        help="weight of the cross-frame correspondence loss on the image embedding; > 0 makes "
        "each batch batch-size/2 frame pairs (t, t+k) of one video each",
    )
    p.add_argument("--corr-tau", type=float, default=0.05, help="softmax temperature of the correspondence read-out")
    p.add_argument("--max-gap", type=int, default=8, help="largest frame gap k of a correspondence pair")
    p.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="train the prompt encoder and mask decoder only (adapt them to a fixed embedding)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--max-corrections", type=int, default=3, help="corrective clicks per step: uniform in 1..N")
    p.add_argument("--min-area", type=int, default=20, help="least visible pixels of a target (original resolution)")
    p.add_argument("--eval-instances", type=int, default=240, help="held-out object instances in the final eval")
    p.add_argument("--periodic-eval-instances", type=int, default=48)
    p.add_argument("--eval-every-min", type=float, default=5.0, help="minutes between periodic held-out evals")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads. 1 by default: on a shared 2-core machine 2 threads ran 10-20x "
        "slower per step than 1 (OpenMP threads stall whenever the other core is busy)",
    )
    return p.parse_args(argv)


def budget_progress(args: argparse.Namespace, step: int, elapsed_s: float) -> Optional[float]:
    """How much of the budget (``--steps``, else ``--minutes``) is used, in [0, 1); None when spent."""
    if args.steps is not None:
        return step / args.steps if step < args.steps else None
    budget_s = args.minutes * 60.0
    return elapsed_s / budget_s if elapsed_s < budget_s else None


def sample_batch(
    args: argparse.Namespace, train_ds: SyntheticVideoDataset, rng: np.random.Generator
) -> Tuple[List[Example], List[FramePair]]:
    """A step's images: ``--batch-size`` random frames, or (with ``--corr-weight``) the frames
    of ``--batch-size / 2`` correspondence pairs, returned with the pairs."""
    if args.corr_weight > 0:
        pairs = [sample_pair(train_ds, rng, args.min_area, args.max_gap) for _ in range(args.batch_size // 2)]
        return [ex for pair in pairs for ex in pair_examples(pair, args.min_area)], pairs
    return [sample_train_example(train_ds, rng, args.min_area) for _ in range(args.batch_size)], []


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    sam = build_sam_arch(SAM_ARCHS[MODEL_TYPE]).train()
    if args.init is not None:
        sam.load_state_dict(read_state_dict(args.init), strict=True)
    if args.freeze_encoder:
        if args.corr_weight > 0:
            raise SystemExit("--corr-weight acts on the image encoder; it cannot be > 0 with --freeze-encoder.")
        sam.image_encoder.requires_grad_(False)
    if args.corr_weight > 0 and args.batch_size % 2:
        raise SystemExit("--batch-size must be even with --corr-weight > 0 (the batch is made of frame pairs).")
    n_params = sum(p.numel() for p in sam.parameters())
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    train_ds = SyntheticVideoDataset("train", NUM_TRAIN_VIDEOS, config=SyntheticConfig(), seed=args.seed, cache_size=4)
    held_out = eval_examples(args.eval_instances, args.min_area)
    opt = torch.optim.AdamW(param_groups(sam, args.weight_decay), lr=args.lr, betas=(0.9, 0.999))

    print(
        f"tiny SAM: {n_params / 1e6:.2f} M parameters; batch {args.batch_size}; "
        + (f"{args.steps} steps" if args.steps else f"{args.minutes:g} min budget")
        + f"; held-out set {sum(len(e.masks) for e in held_out)} instances in {len(held_out)} test images",
        flush=True,
    )

    history: List[Dict] = []
    losses: List[Dict] = []
    start = time.perf_counter()
    last_eval = start
    step = 0
    ema: Dict[str, float] = {}
    bar = tqdm(total=args.steps, desc="pretrain tiny SAM", unit="step", mininterval=10, dynamic_ncols=True)
    try:
        while True:
            progress = budget_progress(args, step, time.perf_counter() - start)
            if progress is None:
                break
            lr = lr_at(progress, step, args.lr, args.warmup_steps)
            for g in opt.param_groups:
                g["lr"] = lr
            rng = np.random.default_rng([args.seed, step])  # the data of step s never depends on timing
            batch, pairs = sample_batch(args, train_ds, rng)
            out = train_step(sam, transform, batch, rng, args.max_corrections)
            loss, stats = out.loss, out.stats
            if args.corr_weight > 0:
                corr = pair_loss(sam, pairs, out.embeddings, out.preps, args.corr_tau)
                stats["corr"] = float(corr.detach())
                loss = loss + args.corr_weight * corr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_([p for p in sam.parameters() if p.requires_grad], args.grad_clip)
            )
            opt.step()
            step += 1
            stats = {"loss": float(loss.detach()), **stats}
            for k, v in stats.items():
                ema[k] = v if k not in ema else 0.9 * ema[k] + 0.1 * v
            if step % 10 == 0 or step == 1:
                losses.append(
                    {
                        "step": step,
                        "t_min": round((time.perf_counter() - start) / 60, 2),
                        "lr": lr,
                        "grad_norm": round(grad_norm, 3),
                        **{k: round(v, 4) for k, v in ema.items()},
                    }
                )
                tqdm.write(
                    f"step {step} t={losses[-1]['t_min']:.1f}min lr={lr:.2e} |g|={grad_norm:.2f} "
                    + " ".join(f"{k}={v:.3f}" for k, v in ema.items())
                )
            bar.update(1)
            bar.set_postfix(loss=f"{ema['loss']:.3f}", iou=f"{ema['iou_first']:.2f}", lr=f"{lr:.1e}", refresh=False)
            now = time.perf_counter()
            if now - last_eval >= args.eval_every_min * 60:
                m = evaluate(sam, held_out, args.periodic_eval_instances)
                history.append({"step": step, "t_min": round((now - start) / 60, 2), **m})
                tqdm.write(f"[eval step {step}] {_fmt(m)}")
                # evaluation time does not eat the training budget
                start += time.perf_counter() - now
                last_eval = time.perf_counter()
    except KeyboardInterrupt:
        tqdm.write("interrupted: evaluating and saving what has been trained")
    bar.close()
    train_minutes = (time.perf_counter() - start) / 60

    print(f"final held-out evaluation on {args.eval_instances}+ instances ...", flush=True)
    t0 = time.perf_counter()
    final = evaluate(sam, held_out)
    print(f"[final step {step}] {_fmt(final)} ({time.perf_counter() - t0:.0f} s)", flush=True)

    ckpt = out_dir / CHECKPOINT_NAME
    save_checkpoint(sam, ckpt)
    report = {
        "model_type": MODEL_TYPE,
        "checkpoint": CHECKPOINT_NAME,
        "sha256": file_sha256(ckpt),
        "size_bytes": ckpt.stat().st_size,
        "parameters": n_params,
        "metrics": final,
        "metrics_protocol": (
            "held-out test split of SyntheticVideoDataset (seed 0), one frame per video, objects with "
            f">= {args.min_area} visible pixels; mIoU at the original resolution. click1: one positive "
            "click at the interior point farthest from the boundary, multimask, highest predicted IoU; "
            "click1_oracle: best of the 3 masks; click3: + 2 corrective clicks at the farthest point of "
            "the larger error; box: tight box, single mask."
        ),
        "init": None if args.init is None else init_provenance(args.init),
        "steps": step,
        "images_seen": step * args.batch_size,
        "train_minutes": round(train_minutes, 2),
        "seed": args.seed,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "command": command_line(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "periodic_eval": history,
        "train_log": losses,
    }
    write_text_atomic(out_dir / METRICS_NAME, json.dumps(report, indent=2) + "\n")
    print(f"saved {ckpt} ({ckpt.stat().st_size / 1e6:.1f} MB) and {out_dir / METRICS_NAME}", flush=True)
    return report


if __name__ == "__main__":
    main()
