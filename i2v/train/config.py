"""The training recipe: typed dataclasses, loaded strictly from YAML plus ``key=value`` overrides.

A recipe names the model (a bundled config name, a YAML path, or an inline mapping), the
frozen SAM checkpoint, the datasets and how clips are cut from them, the simulated user, the
loss weights, the optimiser and the bookkeeping (checkpoints, logs, validation). Unknown keys
are errors that name the nearest valid key.

Overrides use dotted paths into the YAML (``optim.lr=3e-4``, ``data.0.num_videos=8``,
``model.upgrader.dim=32``); a named model is expanded into its mapping first, so model
overrides refine it rather than replace it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from i2v.config import BUNDLED_CONFIGS, ModelConfig, bundled_config_path, model_config_from_dict
from i2v.config_utils import apply_overrides, from_dict, read_yaml, to_dict
from i2v.errors import ConfigError
from i2v.train.calibration import CalibrationConfig
from i2v.train.config_checks import check_cacheable, check_model_sizes
from i2v.train.data_config import AugmentConfig, ClipConfig, DataSpec
from i2v.train.losses import LossWeights
from i2v.train.prompts import PromptSimConfig

__all__ = [
    "AugmentConfig",
    "CalibrationConfig",
    "ClipConfig",
    "DataSpec",
    "FeatureCacheConfig",
    "OptimConfig",
    "TrainConfig",
    "ValConfig",
    "check_cacheable",
    "load_train_config",
    "resolve_recipe",
    "train_config_from_dict",
    "train_config_to_dict",
]

PRECISIONS = ("no", "bf16", "fp16")
CACHE_DTYPES = ("float16", "bfloat16", "float32")
#: Trackers accelerate can log to (``Accelerator(log_with=...)``).
KNOWN_TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay, per optimizer step.

    Attributes:
        lr: peak learning rate; min_lr_ratio: final lr as a fraction of it.
        weight_decay: applied to weight matrices only (not to norms, biases, 1-D parameters
            or embeddings).
        betas: AdamW betas.
        warmup_steps, max_steps: schedule length in optimizer steps.
        grad_clip: clip the global gradient norm to this (0 disables).
        grad_accum: micro-steps accumulated per optimizer step.
        batch_size: clips per micro-step and process (processed one after the other: SAM's
            decoder batches prompts of one image, not images).
    """

    lr: float = 1e-4
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.05
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 10000
    grad_clip: float = 1.0
    grad_accum: int = 1
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not (0 < self.lr < math.inf) or self.max_steps < 1 or self.warmup_steps < 0:
            raise ValueError(f"optim needs a finite lr > 0 (got {self.lr}), max_steps >= 1 and warmup_steps >= 0.")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}.")
        if not 0.0 <= self.weight_decay < math.inf:
            raise ValueError(f"optim.weight_decay must be a finite number >= 0, got {self.weight_decay}.")
        if self.grad_accum < 1 or self.batch_size < 1 or not 0 <= self.grad_clip < math.inf:
            raise ValueError("optim needs grad_accum >= 1, batch_size >= 1 and grad_clip >= 0.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}.")


@dataclass
class FeatureCacheConfig:
    """Frozen image-encoder outputs stored on disk (see :mod:`i2v.train.feature_cache`).

    Attributes:
        enabled: read embeddings from the cache instead of running the encoder.
        dir: cache folder (shared between runs; entries are keyed by SAM hash, dataset,
            video, frame and preprocessing). Null: ``<output_dir>/feature_cache``.
        dtype: storage precision. vit_b in float16 takes 2 MiB per frame.
        fill: compute and store missing entries during training; false makes a miss an
            error (run ``sam-i2v cache-features`` first).
    """

    enabled: bool = False
    dir: Optional[str] = None
    dtype: str = "float16"
    fill: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in CACHE_DTYPES:
            raise ValueError(f"feature_cache.dtype must be one of {', '.join(CACHE_DTYPES)}; got {self.dtype!r}.")


@dataclass
class ValConfig:
    """Periodic validation J&F (semi-supervised, as DAVIS scores it).

    Attributes:
        every: validate every this many optimizer steps (0: never).
        num_videos: videos scored (the first ones of the split).
        split: split of the first training dataset's type and root to score on.
        protocol: "mask", "box", "click1", "click3" or "click5".
    """

    every: int = 0
    num_videos: int = 4
    split: str = "val"
    protocol: str = "mask"

    def __post_init__(self) -> None:
        from i2v.eval.vos import PROTOCOLS  # the evaluation defines them; imported only here

        if self.every < 0 or self.num_videos < 1:
            raise ValueError(
                f"val needs every >= 0 (0: never) and num_videos >= 1; got {self.every} and {self.num_videos}."
            )
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"val.protocol must be one of {', '.join(PROTOCOLS)}; got {self.protocol!r}.")


@dataclass
class TrainConfig:
    """A training run.

    Attributes:
        model: the upgrade to train (resolved from a name, a path or a mapping).
        sam_checkpoint: the official SAM checkpoint to upgrade; null = the bundled one
            (only "tiny" ships one).
        allow_random_sam: with no checkpoint at all, upgrade a randomly initialised SAM
            (tests and benchmarks only).
        data: the training datasets, sampled by weight.
        clip, prompts, loss, optim, feature_cache, val, calibration: see their classes.
        precision: "no", "bf16" or "fp16" mixed precision.
        num_workers: DataLoader worker processes.
        epoch_length: clips per data epoch (default: the videos of all datasets).
        checkpoint_every: save a resumable checkpoint every this many steps (and at the end).
        keep_last: resumable checkpoints kept (older ones are deleted).
        log_every: write metrics every this many steps.
        max_nonfinite_in_row: stop after this many skipped steps in a row.
        seed: seeds the adapters' initialisation, clip sampling and simulated prompts.
        output_dir: checkpoints, metrics.jsonl, training_curve.png, tracker logs.
        trackers: experiment trackers the metrics also go to, through accelerate's
            ``log_with`` ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml",
            "dvclive"); each must be installed. Null: TensorBoard when it is installed;
            ``[]``: none (``metrics.jsonl`` and the curve are always written).
        tracker_project: project (wandb), experiment (mlflow) or run folder (TensorBoard,
            under output_dir) the trackers log to.
        ddp_find_unused_parameters: DDP option, for adapters some steps do not use.
        dump_weight_hashes: write a hash of each process's adapter weights after each step
            (``weight_hashes/rank<k>.json``; for checking that processes stay in sync).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    sam_checkpoint: Optional[str] = None
    allow_random_sam: bool = False
    data: List[DataSpec] = field(default_factory=lambda: [DataSpec(type="synthetic")])
    clip: ClipConfig = field(default_factory=ClipConfig)
    prompts: PromptSimConfig = field(default_factory=PromptSimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    precision: str = "no"
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)
    num_workers: int = 0
    epoch_length: Optional[int] = None
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    val: ValConfig = field(default_factory=ValConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    max_nonfinite_in_row: int = 10
    seed: int = 0
    output_dir: str = "runs/train"
    trackers: Optional[List[str]] = None
    tracker_project: str = "tensorboard"
    ddp_find_unused_parameters: bool = False
    dump_weight_hashes: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")
        if not self.data:
            raise ValueError("data lists no dataset.")
        if sum(d.weight for d in self.data) <= 0:
            raise ValueError("the data weights sum to 0.")
        if self.checkpoint_every < 1 or self.keep_last < 1 or self.log_every < 1 or self.max_nonfinite_in_row < 1:
            raise ValueError("checkpoint_every, keep_last, log_every and max_nonfinite_in_row must be >= 1.")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: load in the training process), got {self.num_workers}.")
        if self.epoch_length is not None and self.epoch_length < 1:
            raise ValueError(
                f"epoch_length must be >= 1, or null for the videos of all datasets; got {self.epoch_length}."
            )
        if self.trackers is not None:
            unknown = [t for t in self.trackers if t not in KNOWN_TRACKERS]
            if unknown:
                raise ValueError(
                    f"trackers: unknown {unknown}; choose among {', '.join(KNOWN_TRACKERS)} (or [] for none)."
                )
        check_model_sizes(self.model)
        if self.feature_cache.enabled:
            check_cacheable(self.model)

    @property
    def cache_dir(self) -> Path:
        return Path(self.feature_cache.dir) if self.feature_cache.dir else Path(self.output_dir) / "feature_cache"


def _model_mapping(value: Any, where: str) -> Dict[str, Any]:
    """A model given as a bundled name or a YAML path → its mapping; a mapping unchanged."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}.model: expected a bundled name ({', '.join(BUNDLED_CONFIGS)}), a YAML path or a mapping; got {value!r}."
        )
    path = bundled_config_path(value) if value in BUNDLED_CONFIGS else Path(value)
    data = read_yaml(path)
    return data["model"] if isinstance(data.get("model"), dict) else data


_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _normalise(item: str) -> str:
    """``lr=3e-4`` → ``lr=0.0003``: YAML 1.1 reads exponents without a dot as strings."""
    key, sep, raw = item.partition("=")
    return f"{key}={float(raw)!r}" if sep and _EXP_FLOAT.fullmatch(raw.strip()) else item


def _override_key(item: str) -> str:
    return item.split("=", 1)[0]


def _apply(data: Dict[str, Any], overrides: Sequence[str], where: str) -> Dict[str, Any]:
    """Apply overrides in order; ``data.<i>.key`` indexes into the dataset list."""
    for item in map(_normalise, overrides):
        key = _override_key(item)
        if key.startswith("model.") and not isinstance(data.get("model"), dict):
            data["model"] = _model_mapping(data.get("model", "tiny"), where)
        m = re.fullmatch(r"data\.(\d+)\.(.+)", key)
        if m:
            specs = list(data.get("data") or [])
            i = int(m.group(1))
            if i >= len(specs):
                raise ConfigError(f"override {item!r}: the config lists {len(specs)} dataset(s).")
            specs[i] = apply_overrides(dict(specs[i]), [f"{m.group(2)}={item.split('=', 1)[1]}"])
            data["data"] = specs
        else:
            data = apply_overrides(data, [item])
    return data


def train_config_from_dict(data: Dict[str, Any], where: str = "train config") -> TrainConfig:
    """Strictly convert a mapping (model as a name, path or mapping) to :class:`TrainConfig`."""
    data = dict(data)
    model = model_config_from_dict(_model_mapping(data.pop("model", "tiny"), where), where=f"{where}.model")
    cfg = from_dict(TrainConfig, data, where)
    cfg.model = model
    check_model_sizes(model)
    if cfg.feature_cache.enabled:
        check_cacheable(model)
    return cfg


def resolve_recipe(path: Union[str, Path]) -> Path:
    """A recipe path, or the name of a bundled one ("train_tiny_synthetic")."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and p.name.startswith("train_"):
        bundled = Path(str(resources.files("i2v.configs").joinpath(f"{p.name}.yaml")))
        if bundled.is_file():
            return bundled
    return p


def load_train_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training recipe (a path, or a bundled recipe's name) and apply ``key=value``
    overrides (values parsed as YAML)."""
    path = resolve_recipe(path)
    where = str(path)
    data = _apply(read_yaml(path), overrides, where)
    return train_config_from_dict(data, where)


def train_config_to_dict(cfg: TrainConfig) -> Dict[str, Any]:
    """The resolved recipe as plain data (what the run writes to ``train_config.yaml``)."""
    return json.loads(json.dumps(to_dict(cfg)))  # tuples → lists, so YAML's safe dumper takes it
