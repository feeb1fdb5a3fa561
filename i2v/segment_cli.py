r"""sam-i2v segment: prompt objects on a video and write their masks for every frame.

    sam-i2v segment video.mp4 --frame 0 --obj-id 1 --point 320,180 --point 400,200,0 \
                              --obj-id 2 --box 10,20,200,240 --out masks/ --format png

Prompts are read in order: ``--frame`` and ``--obj-id`` set the frame and object that the
following ``--point`` / ``--box`` / ``--mask`` options belong to, so one command prompts
several objects (on several frames). Frames before the first prompted frame are segmented
by a reverse pass.

Formats: ``png`` (``<frame>.png`` palette PNGs, pixel value = object id), ``rle`` (one JSON of
COCO RLEs per frame and object), ``coco`` (``instances.json`` in the YouTube-VIS layout that
annotation tools import and ``i2v.data.coco_video`` reads: ``file_names`` relative to the
video folder's parent, one RLE or null per frame and object, with bboxes and areas) and
``overlay`` (an MP4 of the masks drawn on the frames).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from i2v.cli_checks import add_model_options
from i2v.errors import PromptError

FORMATS = ("png", "rle", "coco", "overlay")


class _Ordered(argparse.Action):
    """Append (option, value) to one shared list, so the options' order is kept."""

    def __call__(self, parser, namespace, values, option_string=None):
        seq = getattr(namespace, "sequence", None) or []
        seq.append((self.dest, values))
        namespace.sequence = seq


@dataclass
class ObjectPromptSpec:
    frame: int
    obj_id: int
    points: List[Tuple[float, float]] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    box: Optional[Tuple[float, float, float, float]] = None
    mask: Optional[str] = None


def _numbers(text: str, count: Tuple[int, ...], what: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise PromptError(f"{what} {text!r} must be comma-separated numbers.") from None
    if len(values) not in count:
        raise PromptError(f"{what} {text!r} needs {' or '.join(map(str, count))} numbers.")
    return values


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PromptError(f"{what} {text!r} must be an integer.") from None


def group_prompts(sequence: List[Tuple[str, str]]) -> List[ObjectPromptSpec]:
    """Turn the ordered options into one prompt per (frame, object)."""
    frame, obj_id = 0, None
    specs: Dict[Tuple[int, int], ObjectPromptSpec] = {}
    for dest, value in sequence:
        if dest == "frame":
            frame = _integer(value, "--frame")
            continue
        if dest == "obj_id":
            obj_id = _integer(value, "--obj-id")
            continue
        if obj_id is None:
            raise PromptError(f"--{dest} {value} comes before any --obj-id; name the object first.")
        spec = specs.setdefault((frame, obj_id), ObjectPromptSpec(frame, obj_id))
        if dest == "point":
            v = _numbers(value, (2, 3), "--point")
            spec.points.append((v[0], v[1]))
            if len(v) == 3 and not v[2].is_integer():
                raise PromptError(f"--point {value!r}: the label {v[2]:g} must be 1 (positive) or 0 (negative).")
            spec.labels.append(int(v[2]) if len(v) == 3 else 1)
        elif dest == "box":
            spec.box = tuple(_numbers(value, (4,), "--box"))  # type: ignore[assignment]
        elif dest == "mask":
            spec.mask = value
    if not specs:
        raise PromptError("no prompt given: add --obj-id K with --point X,Y, --box X0,Y0,X1,Y1 or --mask PNG.")
    return list(specs.values())


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment objects in a video from prompts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", help="video file, folder of JPEG/PNG frames, or an image")
    p.add_argument("--frame", action=_Ordered, help="frame index of the prompts that follow (default 0)")
    p.add_argument("--obj-id", dest="obj_id", action=_Ordered, help="object id of the prompts that follow")
    p.add_argument("--point", action=_Ordered, metavar="X,Y[,LABEL]", help="a click (label 1 positive, 0 negative)")
    p.add_argument("--box", action=_Ordered, metavar="X0,Y0,X1,Y1", help="a box")
    p.add_argument("--mask", action=_Ordered, metavar="PNG", help="a mask image (non-zero = object)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="palette PNGs, COCO RLE JSON, YouTube-VIS style COCO video JSON, or an overlay video",
    )
    add_model_options(
        p,
        "SAM checkpoint file or folder: official .pth, Hugging Face SamModel folder, MobileSAM, "
        "SAM-HQ, MedSAM, wrapped state dicts",
    )
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the overlay video")
    p.add_argument(
        "--motion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="motion-aware mask selection when tracking: a box Kalman filter picks among SAM's "
        "candidate masks and looks for lost objects where their motion says (default: off)",
    )
    p.set_defaults(func=run, sequence=[])


def _load_mask(path: str) -> np.ndarray:
    """A --mask image as (H, W) bool: non-zero pixels are the object."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("L")) > 0
    except FileNotFoundError:
        raise PromptError(f"--mask {path} does not exist.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PromptError(
            f"--mask {path} is not a readable image ({exc}); pass a PNG whose non-zero pixels are the object."
        ) from exc


def _apply(predictor, state, spec: ObjectPromptSpec) -> None:
    if spec.mask is not None:
        predictor.add_new_mask(state, spec.frame, spec.obj_id, _load_mask(spec.mask))
    if spec.points or spec.box is not None:
        predictor.add_new_points_or_box(
            state,
            spec.frame,
            spec.obj_id,
            points=np.array(spec.points) if spec.points else None,
            labels=np.array(spec.labels) if spec.points else None,
            box=spec.box,
            clear_old_points=spec.mask is None,
        )


def segment_video(predictor, state, specs: List[ObjectPromptSpec]) -> Iterator[Tuple[int, List[int], np.ndarray]]:
    """Yield (frame_idx, obj_ids, masks (N, H, W) bool) for every frame, in frame order."""
    from i2v.io.masks import logits_to_masks

    for spec in specs:
        _apply(predictor, state, spec)
    first = min(s.frame for s in specs)
    before: List[Tuple[int, List[int], np.ndarray]] = []
    if first > 0:
        for t, ids, logits in predictor.propagate_in_video(state, start_frame_idx=first, reverse=True):
            if t < first:
                before.append((t, list(ids), logits_to_masks(logits)))
    yield from reversed(before)
    for t, ids, logits in predictor.propagate_in_video(state, start_frame_idx=first):
        yield t, list(ids), logits_to_masks(logits)


def frame_file_names(video: Path, num_frames: int) -> List[str]:
    """``file_names`` of a video in a COCO video JSON: ``<folder>/<frame file>`` for a frame
    folder (the JSON's image root is then the folder's parent); for a video file, the names its
    frames get when extracted as ``<video stem>/00000.jpg, ...``."""
    from i2v.io.image_files import list_frame_files

    if video.is_dir():
        return [f"{video.name}/{p.name}" for p in list_frame_files(video)]
    if video.suffix.lower() in (".jpg", ".jpeg", ".png"):
        return [video.name]
    return [f"{video.stem}/{t:05d}.jpg" for t in range(num_frames)]


def run(args: argparse.Namespace) -> int:
    from i2v.build import REAL_SAM_CLI, build_sam_i2v, uses_stand_in_sam, warn_stand_in_sam
    from i2v.io.atomic import write_text_atomic
    from i2v.io.masks import encode_rle, masks_to_label_map, save_palette_png
    from i2v.io.overlay import overlay_masks, write_overlay_video

    specs = group_prompts(args.sequence)
    from i2v.policies import MotionAwarePolicy
    from i2v.video_predictor import I2VVideoPredictor

    model = build_sam_i2v(
        args.config,
        args.checkpoint,
        args.sam_checkpoint,
        args.device,
        preprocess=args.preprocess,
        dtype=args.dtype,
    )
    if args.sam_checkpoint is None and uses_stand_in_sam(model):
        warn_stand_in_sam(REAL_SAM_CLI)
    policy = MotionAwarePolicy() if args.motion else None
    predictor = I2VVideoPredictor(model, progress=False, policy=policy)
    state = predictor.init_state(args.video)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = tqdm(segment_video(predictor, state, specs), total=state.num_frames, desc="segment", unit="frame")
    if args.format == "png":
        for t, ids, masks in frames:
            save_palette_png(out / f"{t:05d}.png", masks_to_label_map(masks, ids))
        where = out
    elif args.format == "rle":
        rles: Dict[str, Dict[str, Any]] = {}
        for t, ids, masks in frames:
            rles[str(t)] = {str(i): encode_rle(m) for i, m in zip(ids, masks)}
        result = {"video": str(args.video), "height": state.video_height, "width": state.video_width, "frames": rles}
        where = out / "masks.json"
        write_text_atomic(where, json.dumps(result))
    elif args.format == "coco":
        from i2v.data.coco_video import coco_video_json

        shape = (state.num_frames, state.video_height, state.video_width)
        per_object: Dict[int, np.ndarray] = {}
        for t, ids, masks in frames:
            for obj_id, mask in zip(ids, masks):
                per_object.setdefault(int(obj_id), np.zeros(shape, dtype=bool))[t] = mask
        video = {
            "name": Path(args.video).stem,
            "file_names": frame_file_names(Path(args.video), state.num_frames),
            "height": state.video_height,
            "width": state.video_width,
            "masks": dict(sorted(per_object.items())),
        }
        where = out / "instances.json"
        write_text_atomic(where, json.dumps(coco_video_json([video])))
    else:
        where = out / "overlay.mp4"
        source = state.video
        write_overlay_video(
            where, (overlay_masks(source.frame(t), masks, ids) for t, ids, masks in frames), fps=args.fps
        )
    print(f"wrote {args.format} masks of {len(state.obj_ids)} object(s) on {state.num_frames} frames to {where}")
    return 0
