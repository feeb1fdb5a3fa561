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
class MemoryReadoutConfig:
    """Memory read-out: where on the current frame does each object's memory say it is?

    Every position of the current frame compares its key with the keys of the object's selected
    memory entries (cosine similarity over a temperature) and reads the remembered mask
    probabilities there: a training-free label propagation (STM / XMem style) that works before
    any training. Keys come from the frozen SAM embedding plus a zero-initialised learned
    residual, so they depend on the frame only and one affinity serves every object.

    Attributes:
        grid: keys and remembered masks are kept at ``grid`` x ``grid`` positions (SAM's
            embedding resolution when it is smaller; vit_b's 64x64 is pooled to 32x32).
        temperature: initial softmax temperature of the cosine affinity (learned; small = sharp).
        locality: initial width (std, as a fraction of the frame's side; learned) of a locality
            prior on short-term entries: recent frames are read near where the object was,
            prompted and older entries anywhere. 0 switches it off.
        short_term: unprompted entries at most this many frames from the current one are
            short-term.
        learn_keys: add the zero-initialised learned 1x1 residual to the keys.
        refine_dim: width of the learned read-out refiner (a small convolutional head that sees
            the read-out, the frame's keys and their similarity to the object's remembered
            foreground and background, and adds a zero-initialised correction to the read-out's
            logits); 0 switches it off.
        chunk: query positions per affinity block (bounds memory on large embeddings).
    """

    grid: int = 32
    temperature: float = 0.02
    locality: float = 0.2
    short_term: int = 4
    learn_keys: bool = True
    refine_dim: int = 32
    chunk: int = 1024

    def __post_init__(self) -> None:
        _positive("memory_readout", grid=self.grid, short_term=self.short_term, chunk=self.chunk)
        if not 0 <= self.refine_dim <= 1024:
            raise ValueError(f"memory_readout.refine_dim must be in [0, 1024] (0: no refiner), got {self.refine_dim}.")
        if not 0.0 < self.temperature <= 10.0:
            raise ValueError(f"memory_readout.temperature must be in (0, 10], got {self.temperature}.")
        if not 0.0 <= self.locality <= 10.0:
            raise ValueError(f"memory_readout.locality must be in [0, 10], got {self.locality}.")


@dataclass
class MemoryPromptConfig:
    """Memory-as-prompt: each object's read-out becomes prompts SAM's own decoder understands.

    SAM 1's frozen decoder barely uses its dense mask input on its own but segments well from a
    box or a click, so memory reaches it as a box around the read-out, a click at its peak and
    the read-out itself as the mask prompt, through SAM's frozen prompt encoder. The object's
    previous output (mask and box: what per-frame SAM would use) is kept while memory agrees
    with it; memory takes over when there is no previous output or the two disagree.

    Attributes:
        mask_prior, box_prior: deprecated, kept so that saved configs load. Whether the object's
            latest mask (and its box) prompts SAM is a tracking-policy option now
            (:class:`i2v.policies.PriorOptions`); a config that turns one off is mapped to it
            with a DeprecationWarning.
        threshold: read-out probability from which a position counts as the object (the box
            memory prompts is drawn around those positions).
        absent_below: an object whose read-out peaks below this is absent, whatever its
            previous output says: memory finds it nowhere.
        agreement: memory replaces the previous output when the IoU of the two masks (at the
            read-out's resolution) is below this; 0 keeps the previous output whenever it exists,
            1 (the default) lets memory prompt whenever it finds the object (with instance-aware
            features memory's prompts segment better than the previous output; with features
            that tell objects apart poorly, about 0.3 did best).
        click: add a positive click at the read-out's peak to memory's prompts.
        focus: draw memory's box around the connected region of the read-out that holds its
            peak only, so that a look-alike elsewhere does not stretch the box over both.
        negative_click: add a negative click at the strongest read-out response outside that
            region when it reaches ``threshold`` (a look-alike memory also matches).
        presence_bias: initial object-presence logit on top of the read-out's evidence
            (positive: present until trained; any positive value gives the same untrained
            outputs). Kept near the decision boundary so training can move it there: at +4,
            Adam moved it by under 0.02 in the quickstart's 600 steps and the trained head
            never hid an output (``benchmarks/training_share.py``).
        presence_scale: unused, kept so that saved configs load (the presence head learns how
            much the read-out's evidence weighs; an object memory finds nowhere is absent by rule,
            ``absent_below``).
    """

    mask_prior: bool = True
    box_prior: bool = True
    threshold: float = 0.5
    absent_below: float = 0.2
    agreement: float = 1.0
    click: bool = True
    focus: bool = True
    negative_click: bool = True
    presence_bias: float = 1.0
    presence_scale: float = 20.0

    def __post_init__(self) -> None:
        for name in ("threshold", "absent_below", "agreement"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"memory_prompt.{name} must be in [0, 1], got {value}.")
        if not self.presence_scale >= 0.0:
            raise ValueError(f"memory_prompt.presence_scale must be at least 0, got {self.presence_scale}.")


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
