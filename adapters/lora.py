"""LoRA on SAM's attention layers through peft's functional API.

peft owns the LoRA layers; this module only turns the project's config into a peft config,
injects it into the frozen SAM, and names the parameters that result.
"""

from __future__ import annotations

import re
from typing import Dict, List

import torch
from torch import nn

from .config import LoraConfig

LORA_MARKER = "lora_"


def target_regex(targets: List[str]) -> str:
    """One anchored regular expression matching any of ``targets`` (peft full-matches it)."""
    for t in targets:
        re.compile(t)  # fail early with the offending pattern in the traceback
    return "|".join(f"(?:{t})" for t in targets)


def matching_modules(model: nn.Module, targets: List[str]) -> List[str]:
    """Names of the ``nn.Linear`` modules of ``model`` that ``targets`` select."""
    pattern = re.compile(target_regex(targets))
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(name)]


def inject_lora(sam: nn.Module, cfg: LoraConfig) -> List[str]:
    """Attach LoRA modules to ``sam`` in place; returns the adapted module names.

    Raises:
        ValueError: when the targets select no linear layer (a typo would otherwise train
            nothing without a word).
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    names = matching_modules(sam, cfg.targets)
    if not names:
        raise ValueError(
            f"lora.targets {cfg.targets} match no linear layer of SAM; module names look like "
            "'mask_decoder.transformer.layers.0.self_attn.q_proj' (every SAM type), "
            "'image_encoder.blocks.0.attn.qkv' (ViT encoders) or 'image_encoder.layers.1.blocks.0.attn.qkv' "
            "(vit_t's TinyViT)."
        )
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=target_regex(cfg.targets),
        bias="none",
    )
    inject_adapter_in_model(peft_cfg, sam)
    return names


def lora_parameters(sam: nn.Module) -> Dict[str, torch.nn.Parameter]:
    """The LoRA parameters of ``sam`` by name (empty when none were injected)."""
    return {n: p for n, p in sam.named_parameters() if LORA_MARKER in n}
