"""The model's configuration: typed dataclasses, loaded from bundled or user YAML files."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from i2v.adapters.config import LoraConfig, MemoryPromptConfig, MemoryReadoutConfig, UpgraderConfig
from i2v.config_utils import from_dict, read_yaml
from i2v.errors import ConfigError
from i2v.memory_filter import MemoryFilterConfig
from i2v.preprocess import PREPROCESS_MODES
from i2v.sam_builder import SAM_ARCHS


@dataclass
class MemoryBankConfig:
    """How much an object remembers, and how a frame picks what to read.

    Attributes:
        bank_size: the most entries kept per object (older or less useful ones are evicted
            by the same rules the filter uses), so memory stays flat on long videos.
        filter: strategy and capacity of the per-frame selection.
    """

    bank_size: int = 16
    filter: MemoryFilterConfig = field(default_factory=MemoryFilterConfig)

    def __post_init__(self) -> None:
        if self.bank_size < self.filter.capacity:
            raise ValueError(
                f"memory.bank_size ({self.bank_size}) must be at least memory.filter.capacity ({self.filter.capacity})."
            )


@dataclass(frozen=True)
class MotionConfig:
    """Settings of motion-aware mask selection (:class:`i2v.policies.MotionAwarePolicy`, see
    :mod:`i2v.motion`). A tracking policy's options, not part of the model's config.

    Attributes:
        weight: weight of the motion IoU against SAM's predicted IoU when ranking candidates.
        min_iou: a tracked object is lost when no candidate's box overlaps the predicted box
            (clipped to the picture) by at least this much.
        max_growth: no candidate is taken whose box area exceeds this many times the object's
            size (the larger of its predicted box and its largest box of the last frames): a
            mask that suddenly swells has usually run onto a neighbour or an occluder.
        reacquire_score: a lost object is found again only by a candidate whose predicted IoU
            is at least this.
        search_growth: while an object is lost, its search region (its size, around where the
            filter expects it and around where it was last seen) grows by this fraction of the
            object's size per frame, up to ``max_search`` times the object's size.
        max_search: the widest search region, in object sizes.
        damping: factor applied to the predicted velocity on each frame the object is lost.
    """

    weight: float = 0.25
    min_iou: float = 0.3
    max_growth: float = 1.5
    reacquire_score: float = 0.5
    search_growth: float = 0.5
    max_search: float = 3.0
    damping: float = 0.8

    def __post_init__(self) -> None:
        for name in ("weight", "min_iou", "reacquire_score", "damping"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"motion.{name} must be in [0, 1], got {value}.")
        for name in ("max_growth", "max_search"):
            value = getattr(self, name)
            if not value >= 1.0:
                raise ValueError(f"motion.{name} must be at least 1, got {value}.")
        if not self.search_growth >= 0.0:
            raise ValueError(f"motion.search_growth must be at least 0, got {self.search_growth}.")


@dataclass
class ModelConfig:
    """Everything needed to assemble an upgraded SAM.

    Attributes:
        sam: base SAM architecture: "tiny", "vit_b", "vit_l", "vit_h" or "vit_t" (MobileSAM /
            TinySAM's TinyViT encoder).
        upgrader, memory_readout, memory_prompt, lora: the adapters' configs.
        memory: memory bank size and selection.
        absent_logit: mask logit written where the presence head says the object is absent.
        preprocess: how frames become SAM's input: "sam" (SAM's resize-longest-side and
            ImageNet mean/std) or "medsam" (MedSAM's S x S squash scaled to [0, 1]); see
            :mod:`i2v.preprocess`. Part of the model's identity: saved with the adapters.
    """

    sam: str = "tiny"
    upgrader: UpgraderConfig = field(default_factory=UpgraderConfig)
    memory_readout: MemoryReadoutConfig = field(default_factory=MemoryReadoutConfig)
    memory_prompt: MemoryPromptConfig = field(default_factory=MemoryPromptConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    memory: MemoryBankConfig = field(default_factory=MemoryBankConfig)
    absent_logit: float = -1024.0
    preprocess: str = "sam"

    def __post_init__(self) -> None:
        if self.sam not in SAM_ARCHS:
            raise ValueError(f"sam must be one of {sorted(SAM_ARCHS)}, got {self.sam!r}.")
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {self.preprocess!r}.")


BUNDLED_CONFIGS = ("tiny", "vit_b", "vit_l", "vit_h", "vit_t")


def bundled_config_path(name: str) -> Path:
    """Path of a YAML file shipped in ``i2v.configs``."""
    path = Path(str(resources.files("i2v.configs").joinpath(f"{name}.yaml")))
    if not path.is_file():
        raise ConfigError(f"no bundled config named {name!r}; bundled: {', '.join(BUNDLED_CONFIGS)}.")
    return path


def _drop_legacy_motion(data: Dict[str, Any], where: str) -> Dict[str, Any]:
    """``data`` without the ``motion`` section that configs (and saved adapters) of earlier
    releases carried. The section is still checked (a typo or a bad value is an error), then
    ignored with a DeprecationWarning when it asked for anything: motion-aware selection is a
    tracking policy of the predictor now, chosen when the predictor is built."""
    if "motion" not in data:
        return data
    data = dict(data)
    section = data.pop("motion")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}.motion: expected a mapping, got {section!r}.")
    section = dict(section)
    enabled = section.pop("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.motion.enabled: expected true or false, got {enabled!r}.")
    settings = from_dict(MotionConfig, section, f"{where}.motion")
    if enabled or settings != MotionConfig():
        warnings.warn(
            f"{where}: the 'motion' section (enabled: {str(enabled).lower()}) is ignored: motion-aware "
            "selection is no longer part of the model config but a tracking policy of the predictor. "
            "Ask for it when building the predictor: build_i2v_video_predictor(..., motion=True), "
            "I2VVideoPredictor(model, policy=MotionAwarePolicy(MotionConfig(...))), or --motion on the CLI.",
            DeprecationWarning,
            stacklevel=3,
        )
    return data


def model_config_from_dict(data: Dict[str, Any], where: str = "model config") -> ModelConfig:
    """Strictly convert a mapping to :class:`ModelConfig` (unknown keys are errors; the
    ``motion`` section of earlier releases is checked and ignored, see :func:`_drop_legacy_motion`)."""
    return from_dict(ModelConfig, _drop_legacy_motion(data, where), where)


def load_model_config(config: Union[str, Path, ModelConfig, None]) -> ModelConfig:
    """Resolve a bundled name ("tiny", "vit_b", ...), a YAML path, or a ready config."""
    if config is None:
        config = "tiny"
    if isinstance(config, ModelConfig):
        return config
    text = str(config)
    path: Optional[Path] = None
    if text in BUNDLED_CONFIGS or (not text.endswith((".yaml", ".yml")) and not Path(text).exists()):
        path = bundled_config_path(text)
    else:
        path = Path(text)
    data = read_yaml(path)
    if "model" in data and isinstance(data["model"], dict):
        data = data["model"]  # a training recipe embeds the model config under "model"
    return model_config_from_dict(data, where=str(path))
