"""Explicit builders: config + checkpoints → SamI2V (and, in video_predictor, the predictor)."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import torch

from i2v.config import ModelConfig, load_model_config
from i2v.errors import CheckpointError, ConfigError, StandInSamWarning
from i2v.model import SamI2V
from i2v.preprocess import PREPROCESS_MODES
from i2v.pretrained import config_from_pretrained, load_adapter_weights, resolve_adapter_dir
from i2v.sam_builder import load_sam

if TYPE_CHECKING:
    from i2v.policies import TrackingPolicy
    from i2v.video_predictor import I2VVideoPredictor

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)

# SAM checkpoints that ship with the package (official ones are too large and licensed apart).
BUNDLED_SAM = {"tiny": "tiny_sam.safetensors"}


def default_sam_checkpoint(model_type: str) -> Optional[Path]:
    """The bundled SAM checkpoint for ``model_type``, or None if none ships."""
    name = BUNDLED_SAM.get(model_type)
    if name is None:
        return None
    path = Path(str(resources.files("i2v.checkpoints").joinpath(name)))
    return path if path.is_file() else None


# The one line that replaces the stand-in, as each entry point spells it.
REAL_SAM_PYTHON = (
    'build_i2v_video_predictor("vit_b", sam_checkpoint="sam_vit_b_01ec64.pth") '
    "(the official segment-anything file; vit_l / vit_h likewise)"
)
REAL_SAM_CLI = (
    "--config vit_b --sam-checkpoint sam_vit_b_01ec64.pth (the official segment-anything file; vit_l / vit_h likewise)"
)


def uses_stand_in_sam(model: SamI2V) -> bool:
    """Whether ``model`` holds the bundled tiny SAM (compared by the checkpoint's SHA-256)."""
    from i2v.sam_builder import file_sha256

    path = default_sam_checkpoint("tiny")
    return path is not None and model.sam_sha256 == file_sha256(path)


def warn_stand_in_sam(instead: str, stacklevel: int = 2) -> None:
    """Warn (:class:`StandInSamWarning`) that the bundled tiny SAM is segmenting real data.

    ``instead`` is the one line that passes a real SAM checkpoint (:data:`REAL_SAM_PYTHON`,
    :data:`REAL_SAM_CLI`).
    """
    warnings.warn(
        "no SAM checkpoint was given, so the bundled tiny SAM is used: a stand-in trained only on "
        "synthetic shapes (J&F about 0.1 on real videos). Pass a real SAM checkpoint instead: "
        f"{instead}.",
        StandInSamWarning,
        stacklevel=stacklevel + 1,
    )


def check_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` as a torch.device, if this machine has it; ConfigError saying what to pass if not."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {str(device)!r} is not a PyTorch device; pass cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {str(device)!r} was asked for, but PyTorch sees no CUDA GPU on this machine; "
            "pass cpu (or leave the device out to use the best available)."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {str(device)!r} was asked for, but this machine has {torch.cuda.device_count()} "
            f"CUDA GPU(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}."
        )
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise ConfigError(f"device {str(device)!r} was asked for, but MPS (Apple GPU) is not available here; pass cpu.")
    return dev


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """None → CUDA if available, else MPS if available, else CPU; a named device is checked
    with :func:`check_device`."""
    if device is not None:
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    """``dtype`` (a torch dtype or its name: "float32", "bfloat16", "float16") as a torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), dtype)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; pass torch.float32, torch.bfloat16 or torch.float16.")
    return dtype


def build_sam_i2v(
    config: Union[str, PathLike, ModelConfig, None] = None,
    checkpoint: Optional[PathLike] = None,
    sam_checkpoint: Optional[PathLike] = None,
    device: Union[str, torch.device, None] = None,
    *,
    allow_random_sam: bool = False,
    seed: int = 0,
    motion: Optional[bool] = None,
    preprocess: Optional[str] = None,
    dtype: Union[str, torch.dtype, None] = None,
) -> SamI2V:
    """Assemble a SamI2V.

    Args:
        config: bundled name, YAML path or ModelConfig. Ignored in favour of the saved config
            when ``checkpoint`` is given. None: the bundled config of the SAM type inferred
            from ``sam_checkpoint`` ("tiny" when no SAM checkpoint is given either).
        checkpoint: directory written by ``save_pretrained`` (or a training run's folder: its
            latest checkpoint); None = untrained adapters.
        sam_checkpoint: a SAM checkpoint file or folder (official ``.pth``, Hugging Face
            ``SamModel`` folder, MobileSAM, SAM-HQ, MedSAM, wrapped state dicts; see
            :mod:`i2v.sam_formats`); None = the bundled one where one exists.
        device: "cpu", "cuda", "mps" or None for the best available.
        allow_random_sam: with no checkpoint at all, build a randomly initialised SAM (for
            tests and benchmarks) instead of raising.
        seed: seeds the adapters' (and a random SAM's) initialisation, with the global RNG's
            state restored afterwards.
        motion: deprecated and ignored: motion-aware selection is a tracking policy of the
            predictor (``build_i2v_video_predictor(..., motion=True)``), not part of the model.
        preprocess: "sam" or "medsam" (:mod:`i2v.preprocess`); None keeps the config's. Saved
            adapters fix it: asking them for another is an error.
        dtype: precision of SAM's image encoder (torch.float32, bfloat16 or float16); the
            adapters, prompt encoder, decoder and memory stay in float32.
    """
    dt = check_dtype(dtype)
    if motion is not None:
        warnings.warn(
            "build_sam_i2v(motion=...) is ignored: motion-aware selection is a tracking policy of the "
            "predictor, not part of the model. Use build_i2v_video_predictor(..., motion=True) or "
            "I2VVideoPredictor(model, policy=MotionAwarePolicy()).",
            DeprecationWarning,
            stacklevel=2,
        )
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, the caller's RNG untouched
        torch.manual_seed(seed)
        return _build_sam_i2v(config, checkpoint, sam_checkpoint, device, allow_random_sam, preprocess, dt)


def _build_sam_i2v(
    config: Union[str, PathLike, ModelConfig, None],
    checkpoint: Optional[PathLike],
    sam_checkpoint: Optional[PathLike],
    device: Union[str, torch.device, None],
    allow_random_sam: bool,
    preprocess: Optional[str],
    dt: torch.dtype,
) -> SamI2V:
    """:func:`build_sam_i2v` under a freshly seeded global RNG."""
    checkpoint = resolve_adapter_dir(checkpoint) if checkpoint is not None else None
    loaded = None
    if checkpoint is not None:
        cfg = config_from_pretrained(checkpoint)
    elif config is None and sam_checkpoint is not None:  # the bundled config of the checkpoint's type
        loaded = load_sam(None, sam_checkpoint)
        cfg = load_model_config(loaded.model_type)
        logger.info(
            "SAM checkpoint %s: %s; using the bundled %s config", sam_checkpoint, loaded.description, loaded.model_type
        )
    else:
        cfg = load_model_config(config)
    if preprocess is not None and preprocess != cfg.preprocess:
        if preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {preprocess!r}.")
        if checkpoint is not None:
            raise ConfigError(
                f"the adapters in {str(checkpoint)!r} were trained with preprocess={cfg.preprocess!r}; running "
                f"them with preprocess={preprocess!r} would feed them inputs they never saw. Leave preprocess out."
            )
        cfg = dataclasses.replace(cfg, preprocess=preprocess)
    if sam_checkpoint is None:
        sam_checkpoint = default_sam_checkpoint(cfg.sam)
    if sam_checkpoint is None and not allow_random_sam:
        raise CheckpointError(
            f"no SAM checkpoint given for {cfg.sam!r} and none is bundled. Pass "
            f"sam_checkpoint='sam_{cfg.sam}_....pth' (the official segment-anything file) or the "
            "folder or file of any other supported SAM format."
        )
    if loaded is None:
        loaded = load_sam(cfg.sam, sam_checkpoint)
    model = SamI2V(loaded.sam, cfg, loaded.sha256)
    if checkpoint is not None:
        load_adapter_weights(model, checkpoint)
    model = model.to(resolve_device(device)).eval()
    if dt != torch.float32:
        model.sam.image_encoder.to(dt)
    return model


def build_i2v_video_predictor(
    config: Union[str, PathLike, ModelConfig, None] = None,
    checkpoint: Optional[PathLike] = None,
    sam_checkpoint: Optional[PathLike] = None,
    device: Union[str, torch.device, None] = None,
    *,
    allow_random_sam: bool = False,
    motion: Optional[bool] = None,
    preprocess: Optional[str] = None,
    dtype: Union[str, torch.dtype, None] = None,
    non_overlap_masks: bool = False,
    progress: bool = True,
    policy: Optional["TrackingPolicy"] = None,
) -> "I2VVideoPredictor":
    """A video predictor with SAM 2's API (see :class:`i2v.video_predictor.I2VVideoPredictor`).

    Args:
        config: bundled name ("tiny", "vit_b", "vit_l", "vit_h", "vit_t") or a YAML path;
            None = the bundled config of the type inferred from ``sam_checkpoint`` ("tiny"
            without one).
        checkpoint: adapter weights (directory from save_pretrained); None = untrained.
        sam_checkpoint: SAM checkpoint file or folder in any supported format (see
            :func:`build_sam_i2v`); None = the bundled default where one exists.
        device: "cpu" / "cuda" / "mps"; None = best available.
        motion: track with motion-aware mask selection (``MotionAwarePolicy()``, see
            :mod:`i2v.motion`) instead of the default policy; None or False: the default.
        preprocess: "sam" or "medsam" (MedSAM's square [0, 1] input); None keeps the config's.
        dtype: precision of SAM's image encoder: torch.float32 (default), bfloat16, float16.
        non_overlap_masks: resolve overlaps between objects in every output as SAM 2's
            ``non_overlap_masks=True`` does (per pixel, only the highest logit stays > 0).
        progress: progress bars while a frame folder is read and while propagating.
        policy: the tracking policy (:mod:`i2v.policies`); give it or ``motion``, not both.

    With ``sam_checkpoint`` None and the bundled tiny SAM picked as the default, a
    :class:`~i2v.errors.StandInSamWarning` says that it is a synthetic-only stand-in; passing
    ``sam_checkpoint=default_sam_checkpoint("tiny")`` uses it on purpose, without the warning.
    """
    from i2v.video_predictor import I2VVideoPredictor

    if motion and policy is not None:
        raise ConfigError("give motion=True or a policy, not both (motion=True means policy=MotionAwarePolicy()).")
    model = build_sam_i2v(
        config,
        checkpoint,
        sam_checkpoint,
        device,
        allow_random_sam=allow_random_sam,
        preprocess=preprocess,
        dtype=dtype,
    )
    if sam_checkpoint is None and uses_stand_in_sam(model):
        warn_stand_in_sam(REAL_SAM_PYTHON)
    if motion:
        from i2v.policies import MotionAwarePolicy

        policy = MotionAwarePolicy()
    return I2VVideoPredictor(model, non_overlap_masks=non_overlap_masks, progress=progress, policy=policy)
