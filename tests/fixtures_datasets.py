"""Builders of tiny datasets in the real on-disk formats (DAVIS, YouTube-VOS, SA-V, SA-1B).

Frames are solid-colour JPEGs with one coloured rectangle per object, so tests can check that a
mask lands on its object's colour; annotation PNGs are real palette PNGs written with PIL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image

H, W = 24, 32
BACKGROUND = (0, 0, 255)
OBJ_COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (255, 255, 0)}


def write_palette_png(path: Path, labels: np.ndarray) -> None:
    """Save (H, W) uint8 labels as a mode "P" PNG with a DAVIS-like palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (3 * 251) + [224, 224, 192]
    im.putpalette(palette)
    im.save(path)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=100, subsampling=0)  # near-lossless


def labels_at(t: int, ids: Sequence[int], void: bool = False) -> np.ndarray:
    """(H, W) labels of frame t: object k is a 6x8 box moving right by one pixel per frame."""
    lab = np.zeros((H, W), np.uint8)
    for k in ids:
        top, left = 2 + 8 * (k - 1), 2 + t + 4 * (k - 1)
        lab[top : top + 6, left : left + 8] = k
    if void:  # a void ring around object 1, as DAVIS marks uncertain boundaries
        lab[1, 1 + t : 11 + t] = 255
    return lab


def paint(lab: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 frame whose object pixels have their object's colour."""
    rgb = np.empty(lab.shape + (3,), np.uint8)
    rgb[:] = BACKGROUND
    for k, c in OBJ_COLOURS.items():
        rgb[lab == k] = c
    return rgb


def make_davis(root: Path, n_frames: int = 5) -> Dict[str, List[np.ndarray]]:
    """DAVIS 2017: seqA (objects 1, 2 from frame 0, void pixels), seqB (objects 1, 3 from
    frame 0, object 2 appearing at frame 2). Returns the label maps per sequence."""
    seqs = {
        "seqA": lambda t: labels_at(t, [1, 2], void=True),
        "seqB": lambda t: labels_at(t, [1, 3] + ([2] if t >= 2 else [])),
    }
    out: Dict[str, List[np.ndarray]] = {}
    for name, fn in seqs.items():
        out[name] = []
        for t in range(n_frames):
            lab = fn(t)
            out[name].append(lab)
            write_jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", paint(lab))
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", lab)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("seqA\nseqB\n")
    (sets / "train.txt").write_text("seqB\n")
    return out


def make_ytvos(root: Path, split: str = "valid", meta: bool = True) -> Dict[str, np.ndarray]:
    """YouTube-VOS: one video, frames 00000, 00005, ..., 00020; object 1 annotated on 00000,
    object 2 first appears (and is annotated) on 00010; meta.json lists both."""
    vid = "0a1b2c3d4e"
    labs = {}
    for t in range(5):
        lab = labels_at(t, [1] + ([2] if t >= 2 else []))
        write_jpeg(root / split / "JPEGImages" / vid / f"{5 * t:05d}.jpg", paint(lab))
        labs[f"{5 * t:05d}"] = lab
    for stem in ("00000", "00010"):
        lab = labs[stem].copy()
        if stem == "00010":
            lab[lab == 1] = 0  # valid split: only the newly appearing object is given
        write_palette_png(root / split / "Annotations" / vid / f"{stem}.png", lab)
        labs[stem] = lab
    if meta:
        objs = {"1": {"category": "cat", "frames": ["00000"]}, "2": {"category": "dog", "frames": ["00010"]}}
        (root / split / "meta.json").write_text(json.dumps({"videos": {vid: {"objects": objs}}}))
    return labs


def rle(mask: np.ndarray) -> Dict[str, object]:
    """COCO RLE with str counts, as SA-V and SA-1B JSON files store them."""
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode()}


def sav_labels(n: int) -> np.ndarray:
    """Labels of 24 fps frame n of the SA-V fixture: masklet 0 (label 1) always, masklet 1
    (label 2) from frame 4 on."""
    return labels_at(n // 2, [1] + ([2] if n >= 4 else []))


def make_sav_train(root: Path, n_frames: int = 9, jpeg_every: int = 4, mp4: bool = False) -> str:
    """SA-V train: sav_train/sav_000/sav_000001_manual.json (masklets every 4th frame) and
    either extracted JPEGs (every ``jpeg_every``-th 24 fps frame, named by frame number) or
    an mp4 of all frames. Returns the video id."""
    vid = "sav_000001"
    split = root / "sav_train"
    masklet = []
    for n in range(0, n_frames, 4):
        lab = sav_labels(n)
        masklet.append([rle(lab == 1), rle(lab == 2) if n >= 4 else None])
    ann = {
        "video_id": vid,
        "video_duration": n_frames / 24,
        "video_frame_count": float(n_frames),
        "video_height": float(H),
        "video_width": float(W),
        "video_resolution": float(H * W),
        "video_environment": "Indoor",
        "video_split": "train",
        "masklet": masklet,
        "masklet_id": [0, 1],
        "masklet_first_appeared_frame": [0, 1],
        "masklet_num": 2,
        "masklet_type": ["manual", "manual"],
    }
    (split / "sav_000").mkdir(parents=True)
    (split / "sav_000" / f"{vid}_manual.json").write_text(json.dumps(ann))
    if mp4:
        write_mp4(split / "sav_000" / f"{vid}.mp4", [paint(sav_labels(n)) for n in range(n_frames)])
    else:
        for n in range(0, n_frames, jpeg_every):
            write_jpeg(split / "JPEGImages_24fps" / vid / f"{n:05d}.jpg", paint(sav_labels(n)))
    return vid


def write_mp4(path: Path, frames: Sequence[np.ndarray]) -> None:
    from video_files import write_video

    write_video(path, frames, rate=24, options={"qscale": "1"})


def make_sav_val(root: Path, n_frames: int = 9) -> str:
    """SA-V val: all 24 fps JPEGs, per-object binary PNGs every 4th frame (object 001 from 4)."""
    vid = "sav_000002"
    split = root / "sav_val"
    for n in range(n_frames):
        lab = sav_labels(n)
        write_jpeg(split / "JPEGImages_24fps" / vid / f"{n:05d}.jpg", paint(lab))
        if n % 4 == 0:
            for obj in (0, 1):
                if obj == 1 and n < 4:
                    continue
                write_palette_png(
                    split / "Annotations_6fps" / vid / f"{obj:03d}" / f"{n:05d}.png", (lab == obj + 1).astype(np.uint8)
                )
    (split / "sav_val.txt").write_text(vid + "\n")
    return vid


def make_sa1b(root: Path) -> Tuple[str, np.ndarray]:
    """SA-1B: sa_1.jpg + sa_1.json with three masks (ids 7, 3, 11) of areas 48, 48+, 12.
    Returns the name and the label map (labels 1, 2, 3 for ids 7, 3, 11)."""
    lab = labels_at(0, [1, 2])
    lab[0:2, 0:6] = 3  # a small third object
    root.mkdir(parents=True, exist_ok=True)
    write_jpeg(root / "sa_1.jpg", paint(lab))
    anns = []
    for ann_id, k in ((7, 1), (3, 2), (11, 3)):
        m = lab == k
        if k == 2:
            m = m | (lab == 3)  # overlapping masks are allowed in SA-1B; make id 3 the largest
        ys, xs = np.nonzero(m)
        anns.append(
            {
                "id": ann_id,
                "segmentation": rle(m),
                "area": int(m.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                "predicted_iou": 0.9,
                "stability_score": 0.95,
                "point_coords": [[float(xs.mean()), float(ys.mean())]],
                "crop_box": [0, 0, W, H],
            }
        )
    data = {"image": {"image_id": 1, "width": W, "height": H, "file_name": "sa_1.jpg"}, "annotations": anns}
    (root / "sa_1.json").write_text(json.dumps(data))
    return "sa_1", lab


class OraclePredictor:
    """A stand-in predictor for the eval runner: answers with the ground truth, except on frame
    ``blind`` (if given), where it predicts nothing."""

    def __init__(self, dataset, blind: Optional[int] = None) -> None:
        self.dataset, self.blind = dataset, blind

    def init_state(self, video):
        return {"video": video, "ids": []}

    def add_new_mask(self, state, t, obj_id, mask):
        state["ids"].append(obj_id)

    def propagate_in_video(self, state, start_frame_idx=0):
        video = state["video"]
        ids = list(self.dataset.obj_ids(video.index))
        for t in range(start_frame_idx, len(video)):
            gt = self.dataset.masks(video.index, t)
            logits = torch.tensor(np.stack([gt[ids.index(i)] for i in state["ids"]]))[:, None].float() * 20 - 10
            yield t, state["ids"], torch.full_like(logits, -10.0) if t == self.blind else logits
