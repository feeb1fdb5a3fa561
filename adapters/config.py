"""Config dataclasses of the trainable modules attached to the frozen SAM.

One dataclass per adapter, validated on construction; every field says what it does. The
dimensions of SAM itself (embedding width, grid size) are not configured here: the modules
read them from the SAM they are attached to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


def _positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{owner}.{name} must be at least 1, got {value}.")


@dataclass
class UpgraderConfig:
    """Temporal upgrader: refines frame t's embedding from a short causal window.

    Attributes:
        enabled: False skips the module (the embedding stays SAM's).
        window: how many past frames' pooled features frame t reads.
        pool: past frames are pooled to a ``pool`` x ``pool`` grid of tokens.
        dim: attention width.
        heads: attention heads (``dim`` must be divisible by it).
        mlp_ratio: hidden width of the refinement MLP relative to SAM's embedding width.
    """

    enabled: bool = True
    window: int = 2
    pool: int = 16
    dim: int = 128
    heads: int = 4
    mlp_ratio: float = 1.0

    def __post_init__(self) -> None:
        _positive("upgrader", window=self.window, pool=self.pool, dim=self.dim, heads=self.heads)
        if self.dim % self.heads:
            raise ValueError(f"upgrader.dim ({self.dim}) must be divisible by heads ({self.heads}).")


@dataclass
class MemoryEncoderConfig:
    """Memory encoder: turns a frame's mask and features into a compact entry.

    Attributes:
        grid: each entry keeps ``grid`` x ``grid`` pooled tokens, so reading memory costs the
            same whatever SAM's embedding resolution.
        key_dim: width of the keys that match the current frame against memory.
        value_dim: width of the values (appearance + mask) read out of memory.
    """

    grid: int = 16
    key_dim: int = 64
    value_dim: int = 64

    def __post_init__(self) -> None:
        _positive("memory_encoder", grid=self.grid, key_dim=self.key_dim, value_dim=self.value_dim)


@dataclass
class MemoryPromptConfig:
    """Memory-as-prompt: selected memory becomes prompt tokens for SAM's own decoder.

    Attributes:
        num_tokens: extra sparse prompt tokens per object.
        heads: attention heads of the learned queries.
        dense_readout: also read memory densely (affinity of each current-frame position to
            memory keys) and add it to SAM's dense prompt embedding.
        mask_prior: feed the object's latest mask to SAM's own mask-prompt input.
        box_prior: also give SAM that mask's bounding box (what SAM needs to use a mask prompt
            well: an untrained upgrade then tracks like SAM re-prompted on every frame).
        presence_bias: initial object-presence logit (positive: present until trained).
    """

    num_tokens: int = 4
    heads: int = 4
    dense_readout: bool = True
    mask_prior: bool = True
    box_prior: bool = True
    presence_bias: float = 4.0

    def __post_init__(self) -> None:
        _positive("memory_prompt", num_tokens=self.num_tokens, heads=self.heads)


@dataclass
class LoraConfig:
    """Low-rank adapters on SAM's attention layers, through peft. Off by default.

    Attributes:
        enabled: inject LoRA modules.
        r: rank.
        alpha: scaling numerator (peft's ``lora_alpha``).
        dropout: dropout on the LoRA branch.
        targets: anchored regular expressions over module names (peft matches them in full).
            LoRA on the image encoder changes its output, so cached features are not used then.
    """

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: List[str] = field(
        default_factory=lambda: [
            r"mask_decoder\.transformer\.layers\.\d+\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)\.(q_proj|v_proj)",
        ]
    )

    def __post_init__(self) -> None:
        _positive("lora", r=self.r, alpha=self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}.")
        if self.enabled and not self.targets:
            raise ValueError("lora.targets is empty; name at least one module pattern.")
