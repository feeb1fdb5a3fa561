"""A disk cache of the frozen image encoder's outputs, so training runs only the adapters.

The encoder is frozen, so its output for a frame never changes during training, and it is
by far the most expensive part of a step (vit_b: ~0.1 TFLOP per 1024 px frame). The cache
stores it once per frame:

    <dir>/sam-<SAM sha256>/<preprocessing>/<dataset key>/<video>.safetensors
        features       (T', C, h, w) float16 / bfloat16 / float32, T' frames stored so far
        frame_indices  (T',) int64, ascending: which frames of the video those are
        metadata       SAM hash, preprocessing, dataset key, video name (checked on read)

The SAM hash is part of the path, so a cache built on another SAM checkpoint is never read;
``<preprocessing>`` names SAM's input size, the clip resize, the storage dtype and, when not SAM's
own float32, the preprocessing (MedSAM's) and the encoder's precision. Files are
read lazily (``safe_open(...).get_slice`` memory-maps them, so a clip reads only its frames)
and written atomically (a temporary file, fsync, rename), so a killed run never leaves a
truncated file. Missing frames are computed and merged in on first use, or all at once with
``sam-i2v cache-features --config FILE``.

What a cache rules out: pixel augmentations (crops, flips, colour jitter) change the
encoder's output, so with a cache the frames are only resized to ``clip.size`` (time reversal,
frame sampling and object sampling still vary); and LoRA on the image encoder changes its
output as it trains, so that combination is refused (see :func:`i2v.train.config_checks.check_cacheable`).
"""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from i2v.errors import I2VError
from i2v.io import atomic
from i2v.io.atomic import atomic_path
from i2v.model import SamI2V
from i2v.train.clip_step import prepare_clip
from i2v.train.config import TrainConfig
from i2v.train.data import ResizeOnly, clip_size, open_videos, split_clip_name

FORMAT_VERSION = "1"
# A temporary file untouched this long before a run started is no other run's write in progress.
STALE_MARGIN_S = 60.0
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class FeatureCacheMiss(I2VError, LookupError):
    """Features are not in the cache and the cache may not fill itself."""


def _safe_name(name: str) -> str:
    """A file-system-safe, collision-free version of ``name``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if safe != name or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


class FeatureCache:
    """Encoder outputs of one SAM checkpoint under one preprocessing.

    Args:
        root: cache folder.
        sam_sha256: hash of the SAM weights (``model.sam_sha256``).
        image_size: SAM's input side S.
        resize: (H, W) frames are resized to before SAM's own preprocessing, or None.
        dtype: "float16", "bfloat16" or "float32".
        preprocess: the model's preprocessing ("sam" or "medsam", :mod:`i2v.preprocess`).
        encoder_dtype: precision the image encoder ran in ("float32" unless built with dtype=).
    """

    def __init__(
        self,
        root: Union[str, Path],
        sam_sha256: str,
        image_size: int,
        resize: Optional[Tuple[int, int]] = None,
        dtype: str = "float16",
        preprocess: str = "sam",
        encoder_dtype: str = "float32",
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
        self.sam_sha256, self.dtype = sam_sha256, dtype
        size = f"{resize[0]}x{resize[1]}" if resize else "native"
        # SAM's own preprocessing in float32 keeps the key it always had, so existing caches stay valid.
        extra = "" if preprocess == "sam" else f"-{preprocess}"
        extra += "" if encoder_dtype == "float32" else f"-enc_{encoder_dtype}"
        self.preprocessing = f"s{image_size}-{size}-{dtype}{extra}"
        self.dir = Path(root) / f"sam-{_safe_name(sam_sha256)}" / self.preprocessing

    @classmethod
    def for_run(cls, cfg: TrainConfig, model: SamI2V) -> "FeatureCache":
        """The cache a training recipe uses with this model."""
        return cls(
            cfg.cache_dir,
            model.sam_sha256,
            model.image_size,
            clip_size(cfg),
            cfg.feature_cache.dtype,
            model.config.preprocess,
            str(model.encoder_dtype).replace("torch.", ""),
        )

    def remove_stale_temporaries(self, older_than: float) -> List[Path]:
        """Delete the temporary files that killed writers left in this cache (a video's file
        can be hundreds of MB). The cache is shared between runs, so only files untouched
        for a minute before ``older_than`` go: another run's write in progress stays."""
        return atomic.remove_stale_temporaries(self.dir, older_than - STALE_MARGIN_S, recursive=True)

    def path(self, clip_name: str) -> Path:
        """File of the video a clip is named after (``"<dataset key>/<video>"``)."""
        key, video = split_clip_name(clip_name)
        return self.dir / _safe_name(key) / f"{_safe_name(video)}.safetensors"

    def _metadata(self, clip_name: str) -> Dict[str, str]:
        key, video = split_clip_name(clip_name)
        return {
            "format_version": FORMAT_VERSION,
            "sam_sha256": self.sam_sha256,
            "preprocessing": self.preprocessing,
            "dataset": key,
            "video": video,
        }

    def stored_frames(self, clip_name: str) -> List[int]:
        """Frame indices of the video already in the cache (empty when none or unusable).

        A damaged file (cut short, overwritten, an index that does not match its features)
        counts as empty, with a warning naming it: its frames are recomputed and the file is
        rewritten whole.
        """
        path = self.path(clip_name)
        if not path.is_file():
            return []
        try:
            with safe_open(str(path), framework="pt") as f:
                if f.metadata() != self._metadata(clip_name):
                    return []  # another SAM or preprocessing (e.g. a file copied by hand): never use it
                index = f.get_tensor("frame_indices")
                count = f.get_slice("features").get_shape()[0]
        except Exception as exc:  # safetensors raises its own error types on damaged files
            return self._damaged(path, f"it cannot be read: {exc}")
        if index.ndim != 1 or index.dtype != torch.int64 or len(index) != count:
            return self._damaged(path, f"its index lists {tuple(index.shape)} frames for {count} stored")
        return index.tolist()

    @staticmethod
    def _damaged(path: Path, why: str) -> List[int]:
        warnings.warn(
            f"feature cache file {path} is damaged ({why}); its frames are recomputed and the file rewritten.",
            RuntimeWarning,
            stacklevel=3,
        )
        return []

    def read(self, clip_name: str, frames: Sequence[int]) -> Dict[int, torch.Tensor]:
        """The cached (C, h, w) features of those of ``frames`` that are stored."""
        stored = self.stored_frames(clip_name)
        if not stored:
            return {}
        row = {t: i for i, t in enumerate(stored)}
        out: Dict[int, torch.Tensor] = {}
        path = self.path(clip_name)
        try:
            with safe_open(str(path), framework="pt") as f:
                features = f.get_slice("features")
                for t in dict.fromkeys(int(t) for t in frames):
                    if t in row:
                        out[t] = features[row[t] : row[t] + 1][0]
        except Exception as exc:  # damaged after its header (e.g. cut short)
            self._damaged(path, f"its features cannot be read: {exc}")
            return {}
        return out

    def write(self, clip_name: str, new: Dict[int, torch.Tensor]) -> None:
        """Store frames ``{index: (C, h, w)}``, merged with what the video's file holds."""
        merged = self.read(clip_name, self.stored_frames(clip_name))
        merged.update({int(t): f.detach().to("cpu", DTYPES[self.dtype]) for t, f in new.items()})
        order = sorted(merged)
        tensors = {
            "features": torch.stack([merged[t] for t in order]).contiguous(),
            "frame_indices": torch.tensor(order, dtype=torch.int64),
        }
        with atomic_path(self.path(clip_name)) as tmp:
            save_file(tensors, str(tmp), metadata=self._metadata(clip_name))

    def embeddings(
        self, clip_name: str, frames: Sequence[int], encode: Optional[Callable[[List[int]], torch.Tensor]]
    ) -> torch.Tensor:
        """(T, C, h, w) features of a clip's frames, computing and storing missing ones.

        Args:
            clip_name: ``"<dataset key>/<video>"``.
            frames: the clip's T frame indices in the video (repeats allowed).
            encode: maps positions in ``frames`` to their (k, C, h, w) encoder outputs;
                None makes a miss an error.
        """
        frames = [int(t) for t in frames]
        found = self.read(clip_name, frames)
        missing = [t for t in dict.fromkeys(frames) if t not in found]
        if missing:
            if encode is None:
                raise FeatureCacheMiss(
                    f"frames {missing[:5]} of {clip_name!r} are not in the feature cache {self.dir}; run "
                    "`sam-i2v cache-features --config FILE` or set feature_cache.fill=true."
                )
            computed = encode([frames.index(t) for t in missing])
            new = {t: computed[k] for k, t in enumerate(missing)}
            self.write(clip_name, new)
            found.update({t: f.to("cpu", DTYPES[self.dtype]) for t, f in new.items()})
        return torch.stack([found[t] for t in frames])


@dataclass
class CacheReport:
    """What ``cache-features`` did: videos and frames computed, and videos already complete."""

    videos_computed: int = 0
    frames_computed: int = 0
    videos_skipped: int = 0
    dir: str = ""


def fill_cache(
    cfg: TrainConfig,
    model: SamI2V,
    rank: int = 0,
    world_size: int = 1,
    chunk: int = 8,
    autocast: Optional[Callable[[], ContextManager]] = None,
    progress: bool = True,
) -> CacheReport:
    """Compute every frame of every training video into the cache (videos ``rank::world_size``).

    Frames go through exactly what training does to them: the clip resize, then
    :func:`~i2v.train.clip_step.prepare_clip`, then ``model.encode_images``.
    """
    cache = FeatureCache.for_run(cfg, model)
    cache.remove_stale_temporaries(time.time())
    resize = ResizeOnly(size=tuple(cfg.clip.size)) if cfg.clip.size else None  # type: ignore[arg-type]
    report = CacheReport(dir=str(cache.dir))
    amp = autocast or nullcontext
    for spec in cfg.data:
        videos = open_videos(spec)
        mine = range(rank, len(videos), world_size)
        for v in tqdm(mine, desc=f"cache {videos.key}", unit="video", disable=not progress):
            name, n = videos.video_name(v), videos.num_frames(v)
            if len(cache.stored_frames(name)) >= n:
                report.videos_skipped += 1
                continue
            new: Dict[int, torch.Tensor] = {}
            for start in range(0, n, chunk):
                idx = list(range(start, min(n, start + chunk)))
                frames = torch.from_numpy(np.stack([videos.frame(v, t) for t in idx])).permute(0, 3, 1, 2).contiguous()
                masks = torch.zeros((len(idx), 0) + tuple(frames.shape[-2:]), dtype=torch.bool)
                if resize is not None:
                    frames, masks = resize.apply(frames, masks, resize.sample(np.random.default_rng(0), 0, 0))
                with amp():
                    feats = model.encode_images(prepare_clip(model, frames, masks).images)
                new.update({t: feats[k].to("cpu", DTYPES[cache.dtype]) for k, t in enumerate(idx)})
            cache.write(name, new)
            report.videos_computed += 1
            report.frames_computed += n
    return report
