"""Checks of training-recipe values that span several fields or need the model's modules.

Range checks of single fields live in the config dataclasses' ``__post_init__``; these are the
shared limits and the checks that look at the model (adapter sizes, LoRA over the encoder).
"""

from __future__ import annotations

from typing import List

import torch

from i2v.adapters.lora import matching_modules
from i2v.config import ModelConfig
from i2v.errors import ConfigError
from i2v.sam_builder import SAM_ARCHS, build_sam_arch

DAVIS_YEARS = (2016, 2017)
DAVIS_RESOLUTIONS = ("480p", "Full-Resolution")
SAV_ANNOTATIONS = ("manual", "auto")
MAX_SIDE = 8192  # largest clip side, in pixels
MAX_CLIP_FRAMES = 1024  # longest training clip; far beyond what fits in GPU memory
# Upper bounds of the adapters' sizes: far above any useful value, far below an allocator error.
MODEL_SIZE_LIMITS = {
    "upgrader.dim": 8192,
    "upgrader.heads": 256,
    "upgrader.window": 64,
    "upgrader.pool": 256,
    "memory_readout.grid": 256,
    "memory_readout.short_term": 10_000,
    "memory_readout.chunk": 1 << 20,
    "lora.r": 1024,
}


def in_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ValueError naming ``name`` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}.")


def check_model_sizes(model: ModelConfig) -> None:
    """Refuse adapter sizes far beyond any sensible model, which would fail only when the
    modules are allocated (or exhaust the memory trying)."""
    for name, limit in MODEL_SIZE_LIMITS.items():
        part, attr = name.split(".")
        value = getattr(getattr(model, part), attr)
        if value > limit:
            raise ConfigError(
                f"model.{name} is {value}; at most {limit} is supported (the bundled configs use "
                f"{getattr(getattr(ModelConfig(), part), attr)})."
            )


def lora_on_image_encoder(model: ModelConfig) -> List[str]:
    """Image-encoder modules that the model's LoRA targets select (empty: none)."""
    if not model.lora.enabled:
        return []
    with torch.device("meta"):  # module names only: no memory, no init cost even for vit_h
        sam = build_sam_arch(SAM_ARCHS[model.sam])
    return [n for n in matching_modules(sam, model.lora.targets) if n.startswith("image_encoder.")]


def check_cacheable(model: ModelConfig) -> None:
    """Refuse a feature cache for a model whose trained LoRA changes the encoder's output."""
    hit = lora_on_image_encoder(model)
    if hit:
        raise ConfigError(
            f"feature_cache.enabled is true but model.lora puts LoRA on the image encoder "
            f"({hit[0]}{' and others' if len(hit) > 1 else ''}), so its output changes as it trains "
            "and cannot be cached. Set feature_cache.enabled=false, or restrict model.lora.targets "
            "to the mask decoder."
        )
