"""Builders of one's-own-video datasets for the tests: frame folders or video files plus masks/."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image

from i2v.io.masks import save_palette_png

H, W = 40, 56
COLOURS = {1: (230, 40, 40), 2: (40, 230, 40), 3: (240, 240, 40)}


def labels_at(t: int, ids: Sequence[int] = (1, 2)) -> np.ndarray:
    """(H, W) uint8: object k is a 10x12 box that moves right by 2 px per frame."""
    lab = np.zeros((H, W), np.uint8)
    for k in ids:
        top, left = 4 + 12 * (k - 1), 2 + 2 * t + 6 * (k - 1)
        lab[top : top + 10, left : left + 12] = k
    return lab


def paint(lab: np.ndarray) -> np.ndarray:
    rgb = np.full(lab.shape + (3,), 30, np.uint8)
    for k, c in COLOURS.items():
        rgb[lab == k] = c
    return rgb


def save_mask(path: Path, lab: np.ndarray, kind: str) -> None:
    """``kind``: "palette" (mode P), "gray" (mode L ids) or "binary" (mode L, 0/255)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "palette":
        save_palette_png(path, lab)
    elif kind == "gray":
        Image.fromarray(lab, mode="L").save(path)
    else:
        Image.fromarray(np.where(lab > 0, 255, 0).astype(np.uint8), mode="L").save(path)


def make_video(
    folder: Path,
    n: int = 6,
    names: Optional[Sequence[str]] = None,
    ext: str = ".jpg",
    kind: str = "palette",
    annotated: Optional[Sequence[int]] = None,
    ids: Sequence[int] = (1, 2),
    mask_dir: str = "masks",
    video_file: bool = False,
) -> Dict[int, np.ndarray]:
    """Write one video folder; returns the label map of every frame (annotated or not)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"{t:05d}" for t in range(n)]
    labels = {t: labels_at(t, ids) for t in range(n)}
    if video_file:
        from video_files import write_video

        write_video(folder / f"{folder.name}.mp4", [paint(labels[t]) for t in range(n)], options={"qscale": "1"})
    else:
        for t in range(n):
            Image.fromarray(paint(labels[t])).save(
                folder / f"{names[t]}{ext}", **({"quality": 95} if ext == ".jpg" else {})
            )
    for t in annotated if annotated is not None else range(n):
        save_mask(folder / mask_dir / f"{names[t]}.png", labels[t], kind)
    return labels
