"""What a training run is set up from before its first step: the trackers it logs to, the
Accelerator, the model, and what an earlier run left in its output folder.

A run never mixes with an earlier one in its ``output_dir``: it continues it (``resume``),
replaces it (``overwrite``) or refuses to start (:func:`claim_output_dir`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.tracking import get_available_trackers
from accelerate.utils import DistributedDataParallelKwargs, is_tensorboard_available, set_seed
from torch import nn

from i2v.build import build_sam_i2v
from i2v.data.base import VideoDataset
from i2v.errors import CheckpointError, ConfigError
from i2v.model import SamI2V
from i2v.pretrained import trainable_state_dict
from i2v.train import checkpointing as ckpt
from i2v.train.config import TrainConfig
from i2v.train.curve import CURVE_NAME
from i2v.train.metrics_log import METRICS_NAME


def resolve_trackers(cfg: TrainConfig) -> List[str]:
    """The trackers a run logs to: ``cfg.trackers``, or TensorBoard when that is null and it is
    installed.

    Raises:
        ConfigError: a tracker the config names is not installed (before anything else starts).
    """
    if cfg.trackers is None:
        return ["tensorboard"] if is_tensorboard_available() else []
    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    missing = [t for t in cfg.trackers if t not in available]
    if missing:
        raise ConfigError(
            f"trackers {missing} are not installed (installed: {', '.join(sorted(available)) or 'none'}); "
            f"pip install {' '.join(missing)}, or remove them from 'trackers' (trackers=[] logs only to metrics.jsonl)."
        )
    return list(dict.fromkeys(cfg.trackers))


def check_dataset_objects(
    cfg: TrainConfig, dataset: Optional[VideoDataset], val_dataset: Optional[VideoDataset]
) -> None:
    """Dataset objects given instead of ``cfg.data`` fit the recipe, or ConfigError."""
    if dataset is None:
        return
    if cfg.feature_cache.enabled:
        raise ConfigError(
            "a dataset object cannot use the feature cache (its entries are keyed by the "
            "config's datasets); set feature_cache.enabled=false."
        )
    if cfg.val.every and val_dataset is None:
        raise ConfigError("with a dataset object, validation needs one too: pass val_dataset=..., or set val.every=0.")


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """CPU when no CUDA device; the config's trackers (see :func:`resolve_trackers`)."""
    trackers = resolve_trackers(cfg)
    # A second run in one process (tests, notebooks) may change precision or accumulation;
    # the process group (PartialState) is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(
        mixed_precision=cfg.precision,
        gradient_accumulation_steps=cfg.optim.grad_accum * cfg.optim.batch_size,
        cpu=not torch.cuda.is_available(),
        log_with=trackers or None,
        project_dir=cfg.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.ddp_find_unused_parameters)],
    )


def build_model(cfg: TrainConfig, device: torch.device) -> SamI2V:
    """The model a recipe trains, adapters in train mode (the frozen SAM stays in eval)."""
    set_seed(cfg.seed)
    model = build_sam_i2v(
        cfg.model,
        sam_checkpoint=cfg.sam_checkpoint,
        device=device,
        allow_random_sam=cfg.allow_random_sam,
        seed=cfg.seed,
    )
    return model.train()


def weights_sha256(model: nn.Module) -> str:
    """Hash of the trainable weights (identical across processes when DDP keeps them in sync)."""
    h = hashlib.sha256()
    for name, t in sorted(trainable_state_dict(model).items()):
        h.update(name.encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()


def dump_weight_hash(output_dir: Path, rank: int, step: int, model: nn.Module) -> None:
    """Add step ``step``'s adapter hash to ``weight_hashes/rank<rank>.json`` (``dump_weight_hashes``)."""
    folder = output_dir / "weight_hashes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rank{rank}.json"
    hashes = json.loads(path.read_text()) if path.is_file() else {}
    hashes[str(step)] = weights_sha256(model)
    path.write_text(json.dumps(hashes, indent=1))


def earlier_run(output_dir: Path) -> List[Path]:
    """What a training run leaves in ``output_dir``: checkpoints, ``latest``, the metrics log,
    its curve and the TensorBoard folder (those that exist)."""
    names = [ckpt.LATEST_NAME, METRICS_NAME, CURVE_NAME, "tensorboard"]
    return ckpt.list_checkpoints(output_dir) + [output_dir / n for n in names if (output_dir / n).exists()]


def damaged_listing(damaged: Dict[Path, str]) -> str:
    """``checkpoint-…: why; …``: the damaged checkpoints, for a message."""
    return "; ".join(f"{p.name}: {why}" for p, why in damaged.items())


@dataclass
class OutputClaim:
    """What a run does with its ``output_dir``.

    Attributes:
        resume_from: the newest intact checkpoint to continue from (with ``resume``), if any.
        damaged: checkpoints skipped as damaged, with why.
        replace: the earlier run's files, which the main process deletes before starting.
    """

    resume_from: Optional[Path] = None
    damaged: Dict[Path, str] = field(default_factory=dict)
    replace: List[Path] = field(default_factory=list)


def claim_output_dir(out: Path, resume: bool, overwrite: bool) -> OutputClaim:
    """Decide whether a run may start in ``out``, given what an earlier run left there.

    Raises:
        CheckpointError: ``resume`` over checkpoints that are all damaged, without ``overwrite``.
        ConfigError: an earlier run is there, and neither ``resume`` nor ``overwrite`` was given.
    """
    resume_from, damaged = ckpt.find_resumable(out) if resume else (None, {})
    if damaged and resume_from is None and not overwrite:
        raise CheckpointError(
            f"--resume: no checkpoint in {str(out)!r} is intact ({damaged_listing(damaged)}); pass "
            "--overwrite as well to start again from step 0, replacing them, or resume from a copy."
        )
    # --resume with no checkpoint at all continues the run's log from step 0; over only
    # damaged checkpoints (with --overwrite) the run is replaced
    replace = not resume or (damaged and resume_from is None)
    earlier = earlier_run(out) if replace else []
    if earlier and not overwrite:
        raise ConfigError(
            f"output_dir {str(out)!r} already holds a training run ({', '.join(p.name for p in earlier)}); "
            "pass --resume to continue it, --overwrite to replace it, or choose another output_dir."
        )
    return OutputClaim(resume_from, damaged, earlier)
