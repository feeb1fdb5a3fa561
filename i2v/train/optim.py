"""AdamW parameter groups and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any, Dict, List

from torch import nn

from i2v.train.config import OptimConfig

# Modules whose ``weight`` is a matrix worth decaying; everything else (norms, biases, 1-D
# parameters, embeddings, learned queries and tokens) is left undecayed.
_DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Trainable parameters split into a decayed and an undecayed AdamW group.

    Returns:
        [{"params", "weight_decay", "names"}, ...]; groups without parameters are left out.
    """
    decay: Dict[str, nn.Parameter] = {}
    no_decay: Dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        for leaf, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            name = f"{module_name}.{leaf}" if module_name else leaf
            if isinstance(module, _DECAYED) and leaf == "weight" and p.ndim >= 2:
                decay[name] = p
            else:
                no_decay[name] = p
    groups = [
        {"params": list(decay.values()), "weight_decay": weight_decay, "names": list(decay)},
        {"params": list(no_decay.values()), "weight_decay": 0.0, "names": list(no_decay)},
    ]
    return [g for g in groups if g["params"]]


class WarmupCosine:
    """LR multiplier: linear from 1/warmup to 1 over ``warmup_steps``, then cosine to
    ``min_lr_ratio`` at ``max_steps`` (for ``torch.optim.lr_scheduler.LambdaLR``).

    A class rather than a closure so that the scheduler's state_dict records its settings
    (a resumed run compares them with its config's).
    """

    def __init__(self, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> None:
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio

    @classmethod
    def from_config(cls, cfg: OptimConfig) -> "WarmupCosine":
        return cls(cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
