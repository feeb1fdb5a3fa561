r"""sam-i2v eval: score the upgrade, its baselines and ablations on a VOS dataset, or score
a folder of predicted masks.

Score the upgrade (DAVIS 2017 val; --baselines adds per-frame SAM and the untrained upgrade):

    sam-i2v eval --dataset davis --root DAVIS --split val --config vit_b \
        --checkpoint runs/vit_b --sam-checkpoint sam_vit_b_01ec64.pth \
        --baselines --protocol mask click1

Score predictions made by anything (no model is built): DIR/<video>/<frame>.png palette PNGs,
pixel value = object id, the layout the DAVIS and YouTube-VOS servers take:

    sam-i2v eval --dataset davis --root DAVIS --split val --predictions DIR

Write masks for a challenge server (splits without local ground truth: YouTube-VOS / MOSE
valid, DAVIS test-dev; only the masks are written, no J/F is printed):

    sam-i2v eval --dataset ytvos --root YouTubeVOS --split valid --config vit_b \
        --checkpoint runs/vit_b --sam-checkpoint sam_vit_b_01ec64.pth \
        --save-masks submission/Annotations

Units and outputs: every score printed or written is a fraction in [0, 1], as in the DAVIS
toolkit's CSVs (papers quote them x100). The printed header names the config, the adapter
checkpoint, the SAM checkpoint's SHA-256 and the device. --out DIR receives results.csv (one
row per method and protocol), results.json (the header, per-video and per-object scores,
gains over per-frame SAM) and, for the evaluated method under the first protocol (or the
scored predictions), the DAVIS toolkit's two CSVs: global_results-<split>.csv
(J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay) and per-sequence_results-<split>.csv
(Sequence,J-Mean,F-Mean, one row per object named <video>_<object id>).

Overlaps between objects are resolved before scoring with SAM 2's rule (on each pixel the
object with the highest logit), so the printed scores are the scores of the --save-masks
PNGs: --predictions on that folder prints the same numbers.

One's own videos: --dataset folder --root my_videos [--split val] (my_videos/<video>/ frames
or a video file plus masks/ PNGs, see i2v.data.folder), or --dataset coco --annotations
instances.json --root frames/ (YouTube-VIS / OVIS style JSON). --checkpoint also takes a
training run's folder (its latest checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from i2v.cli_checks import add_model_options
from i2v.data.registry import DATASETS
from i2v.errors import ConfigError
from i2v.eval.vos import PROTOCOLS, VOSResult, evaluate, export_masks


@contextlib.contextmanager
def model_variant(model, upgrader: Optional[bool] = None, strategy: Optional[str] = None) -> Iterator[None]:
    """Temporarily switch the upgrader off or change the memory strategy in ``model``. (A
    tracking policy, such as motion-aware selection, is not a model variant: build a predictor
    with that policy.)"""
    saved = (model.config, model.upgrader.cfg)
    cfg = model.config
    if upgrader is not None:
        cfg = dataclasses.replace(cfg, upgrader=dataclasses.replace(cfg.upgrader, enabled=upgrader))
        model.upgrader.cfg = cfg.upgrader
    if strategy is not None:
        memory = dataclasses.replace(cfg.memory, filter=dataclasses.replace(cfg.memory.filter, strategy=strategy))
        cfg = dataclasses.replace(cfg, memory=memory)
    model.config = cfg
    try:
        yield
    finally:
        model.config, model.upgrader.cfg = saved


def tracking_policy(motion: bool):
    """The tracking policy of a method: motion-aware selection, or None for the predictor's default."""
    from i2v.policies import MotionAwarePolicy

    return MotionAwarePolicy() if motion else None


def method_name(trained: bool, motion: bool = False) -> str:
    """Label of the evaluated method in tables and progress bars."""
    return ("trained upgrade" if trained else "untrained upgrade") + (" + motion" if motion else "")


def run_methods(
    model,
    untrained,
    dataset,
    protocols: List[str],
    *,
    baselines: bool,
    ablations: bool,
    trained: bool,
    indices=None,
    progress: bool = True,
    save_masks: Optional[Path] = None,
    motion: bool = False,
) -> List[VOSResult]:
    """Evaluate the model (and optionally baselines / ablations) under each protocol.

    With ``save_masks`` a folder, the evaluated method's predictions under the first protocol
    are written there while they are scored (baselines and ablations are not saved). With
    ``motion``, the evaluated method (and the untrained baseline) track with motion-aware
    selection; the ablations then include it switched off.
    """
    from i2v.eval.baselines import PerFrameSamPredictor
    from i2v.memory_filter import STRATEGIES
    from i2v.video_predictor import I2VVideoPredictor

    def tracker(m, with_motion: bool = motion) -> I2VVideoPredictor:
        return I2VVideoPredictor(m, policy=tracking_policy(with_motion))

    name = method_name(trained, motion)
    # (label, predictor, model variant, whether this is the evaluated method itself)
    runs: List[Tuple[str, object, dict, bool]] = []
    if baselines:
        runs.append(("per-frame SAM", PerFrameSamPredictor(untrained), {}, False))
        if trained:
            runs.append((method_name(False, motion), tracker(untrained), {}, False))
    runs.append((name, tracker(model), {}, True))
    if ablations:
        runs.append((f"{name}, upgrader off", tracker(model), {"upgrader": False}, False))
        for strategy in STRATEGIES:
            if strategy != model.config.memory.filter.strategy:
                runs.append((f"{name}, memory={strategy}", tracker(model), {"strategy": strategy}, False))
        label = f"{name}, motion-aware selection {'off' if motion else 'on'}"
        runs.append((label, tracker(model, not motion), {}, False))
    results = []
    for k, protocol in enumerate(protocols):
        for label, predictor, variant, evaluated in runs:
            out = save_masks if evaluated and k == 0 else None
            with model_variant(model, **variant):
                results.append(evaluate(predictor, dataset, indices, protocol, label, progress, save_masks=out))
    return results


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate on a VOS dataset (J, F, J&F)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        choices=[name for name, entry in DATASETS.items() if entry.evaluable],
        required=True,
        help="folder: one's own videos, ROOT/<video>/ frames (or a video file) plus masks/ PNGs; "
        "coco: a YouTube-VIS / OVIS style JSON (--annotations) of frames under ROOT",
    )
    p.add_argument(
        "--root",
        default=None,
        help="dataset folder (not needed for synthetic; coco: the folder the "
        "JSON's file_names are relative to, default the JSON's folder)",
    )
    p.add_argument("--annotations", default=None, metavar="JSON", help="coco only: the video instance JSON file")
    p.add_argument("--split", default=None, help="split name (default: the dataset's validation split)")
    p.add_argument("--num-videos", type=int, default=20, help="synthetic only: how many held-out videos")
    p.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N videos")
    p.add_argument(
        "--predictions",
        metavar="DIR",
        default=None,
        help="score the masks in DIR/<video>/<frame>.png (palette PNGs, pixel value = object id) "
        "instead of running a model",
    )
    p.add_argument(
        "--protocol",
        nargs="+",
        default=None,
        choices=PROTOCOLS,
        help="how each object is prompted on its first frame (default: mask)",
    )
    add_model_options(
        p,
        "your SAM checkpoint (file or folder, any supported format); default: the bundled "
        "tiny SAM, a stand-in for synthetic data only",
    )
    p.add_argument("--baselines", action="store_true", help="also per-frame SAM and the untrained upgrade")
    p.add_argument("--ablations", action="store_true", help="also upgrader off and each memory strategy")
    p.add_argument(
        "--out",
        default="eval_out",
        help="directory for results.csv, results.json and the DAVIS toolkit's global / per-sequence CSVs",
    )
    p.add_argument(
        "--motion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="motion-aware mask selection when tracking: a box Kalman filter picks among SAM's "
        "candidate masks and looks for lost objects where their motion says (default: off)",
    )
    p.add_argument(
        "--save-masks",
        metavar="DIR",
        default=None,
        help="also write the evaluated method's masks (first protocol) as DIR/<video>/<frame>.png "
        "palette PNGs for the DAVIS / YouTube-VOS servers; required on splits without "
        "local ground truth (YouTube-VOS / MOSE valid, DAVIS test-dev)",
    )
    p.set_defaults(func=run)


MODEL_FLAGS = ("checkpoint", "sam_checkpoint", "baselines", "ablations", "save_masks", "motion", "protocol")


def _score_predictions(args: argparse.Namespace, dataset, split: str, indices) -> int:
    """``--predictions DIR``: score a folder of PNGs, no model."""
    from i2v.eval.predictions import score_predictions, unscored_videos
    from i2v.eval.report import format_header, format_table, write_davis_csvs, write_reports

    given = [f"--{f.replace('_', '-')}" for f in MODEL_FLAGS if getattr(args, f) not in (None, False)]
    if given:
        raise ConfigError(
            f"--predictions scores existing masks without a model, so {', '.join(given)} "
            "mean(s) nothing; leave them out, or leave out --predictions to run the model."
        )
    if args.dataset == "sav":
        raise ConfigError(
            "--predictions reads DAVIS / YouTube-VOS label-map PNGs (object ids 1..255), but SA-V "
            "numbers its objects from 0 and is scored from per-object PNGs; score SA-V with "
            "SAM 2's sav_evaluator."
        )
    pred_dir = Path(args.predictions)
    header = {"dataset": f"{args.dataset} split {split!r}", "predictions": f"{pred_dir} (no model)"}
    print(format_header(header))
    result = score_predictions(pred_dir, dataset, indices)
    extra = sorted(unscored_videos(pred_dir, dataset))
    if extra:
        print(
            f"note: {len(extra)} folder(s) of {pred_dir} name no video of this split and were not "
            f"scored: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"
        )
    print(format_table([result]))
    out = Path(args.out)
    paths = write_reports([result], out, {**header, "split": split})
    davis = write_davis_csvs(result, out, split or "all")
    print(f"wrote {paths['csv']}, {paths['json']}, {davis['global']} and {davis['per_sequence']}")
    return 0


def _model_header(args: argparse.Namespace, model, split: str) -> dict:
    from i2v.build import uses_stand_in_sam

    sam = model.sam_sha256 + (" (the bundled tiny SAM, a synthetic-only stand-in)" if uses_stand_in_sam(model) else "")
    return {
        "dataset": f"{args.dataset} split {split!r}",
        "config": (args.config or model.config.sam) if args.checkpoint is None else f"from {args.checkpoint}",
        "checkpoint": args.checkpoint or "none (untrained adapters)",
        "sam_checkpoint": args.sam_checkpoint or "bundled default",
        "sam_sha256": sam,
        "device": str(next(model.parameters()).device),
    }


def run(args: argparse.Namespace) -> int:
    from i2v.build import REAL_SAM_CLI, build_sam_i2v, uses_stand_in_sam, warn_stand_in_sam
    from i2v.data.registry import DEFAULT_SPLITS, make_dataset
    from i2v.eval.report import (
        format_gain,
        format_header,
        format_table,
        gains_vs_baseline,
        submission_hint,
        write_davis_csvs,
        write_reports,
    )

    kwargs = {"num_videos": args.num_videos} if args.dataset == "synthetic" else {}
    if args.dataset == "coco":
        kwargs = {"annotations": args.annotations}
    elif args.annotations:
        raise ConfigError(f"--annotations is for --dataset coco; the {args.dataset} reader finds its own annotations.")
    dataset = make_dataset(args.dataset, args.root, args.split, **kwargs)
    split = args.split if args.split is not None else DEFAULT_SPLITS[args.dataset]
    full_gt = bool(getattr(dataset, "has_full_ground_truth", True))
    indices = range(min(len(dataset), args.max_videos)) if args.max_videos else None
    if args.predictions is not None:
        if not full_gt:
            raise ConfigError(
                f"the {args.dataset} split {split!r} has no local ground truth beyond each object's first "
                f"mask, so --predictions cannot be scored here: upload them to the challenge server. "
                f"{submission_hint(args.dataset, args.predictions)}"
            )
        return _score_predictions(args, dataset, split, indices)
    protocols = args.protocol or ["mask"]
    if not full_gt and not args.save_masks:
        raise ConfigError(
            f"the {args.dataset} split {split!r} has no local ground truth beyond each object's first "
            f"mask, so J/F computed here would mean nothing: its scores come from the challenge "
            f"server. Pass --save-masks DIR to write the predicted masks for submission."
        )
    if args.save_masks and args.dataset == "sav":
        raise ConfigError(
            "--save-masks writes DAVIS / YouTube-VOS label-map PNGs (object ids 1..255), but SA-V "
            "numbers its objects from 0 and is scored from per-object PNGs; its val/test ground "
            "truth is local, so evaluate SA-V without --save-masks."
        )
    model = build_sam_i2v(
        args.config,
        args.checkpoint,
        args.sam_checkpoint,
        args.device,
        preprocess=args.preprocess,
        dtype=args.dtype,
    )
    if args.dataset != "synthetic" and args.sam_checkpoint is None and uses_stand_in_sam(model):
        warn_stand_in_sam(REAL_SAM_CLI)
    header = _model_header(args, model, split)
    print(format_header(header))
    trained = args.checkpoint is not None
    motion = bool(args.motion)
    name = method_name(trained, motion)
    save_masks = Path(args.save_masks) if args.save_masks else None
    if not full_gt:
        from i2v.video_predictor import I2VVideoPredictor

        skipped = [
            flag
            for flag, on in (
                ("--baselines", args.baselines),
                ("--ablations", args.ablations),
                ("protocols after the first", len(protocols) > 1),
            )
            if on
        ]
        if skipped:
            print(
                f"note: split {split!r} is scored by the challenge server; only the {name} "
                f"under protocol {protocols[0]!r} is written ({', '.join(skipped)} ignored)."
            )
        server_dir = Path(args.save_masks)  # given: checked before the model was built
        folders = export_masks(
            I2VVideoPredictor(model, policy=tracking_policy(motion)), dataset, server_dir, indices, protocols[0], name
        )
        print(f"no scores for {args.dataset} split {split!r}: its ground truth is on the challenge server.")
        videos = f"{len(folders)} video{'' if len(folders) == 1 else 's'}"
        print(f"wrote the {name}'s masks of {videos} to {server_dir}/<video>/<frame>.png")
        print(submission_hint(args.dataset, server_dir))
        return 0
    untrained = (
        build_sam_i2v(model.config, None, args.sam_checkpoint, args.device, dtype=args.dtype)
        if args.checkpoint
        else model
    )
    results = run_methods(
        model,
        untrained,
        dataset,
        protocols,
        baselines=args.baselines,
        ablations=args.ablations,
        trained=trained,
        indices=indices,
        save_masks=save_masks,
        motion=motion,
    )
    print(format_table(results))
    for row in gains_vs_baseline(results):
        print(format_gain(row))
    out = Path(args.out)
    paths = write_reports(results, out, {**header, "split": args.split, "sam_sha256": model.sam_sha256})
    evaluated = next(r for r in results if r.method == name and r.protocol == protocols[0])
    davis = write_davis_csvs(evaluated, out, split or "all")
    print(
        f"wrote {paths['csv']}, {paths['json']}, and the {name}'s ({protocols[0]}) "
        f"{davis['global'].name} and {davis['per_sequence'].name}"
    )
    if save_masks is not None:
        print(f"wrote the {name}'s masks ({protocols[0]}) to {save_masks}/<video>/<frame>.png")
    return 0
