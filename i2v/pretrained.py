"""Adapters-only checkpoints, the PEFT way.

``save_pretrained(model, dir)`` writes ``adapter_model.safetensors`` (trainable weights only)
and ``adapter_config.json`` (library version, model config, SAM type and SAM checkpoint hash).
Loading checks that the SAM underneath is the one the adapters were trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Union

import torch
from safetensors.torch import load_file, save_file

from i2v.config import ModelConfig, model_config_from_dict
from i2v.config_utils import to_dict
from i2v.errors import CheckpointError
from i2v.io.atomic import atomic_path, write_text_atomic
from i2v.model import CALIBRATED
from i2v.sam_builder import nonfinite_tensors
from i2v.version import __version__

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
# 2: the memory read-out and memory-as-prompt of this release (1: learned memory tokens).
FORMAT_VERSION = 2

PathLike = Union[str, Path]


def trainable_state_dict(model: Any) -> Dict[str, torch.Tensor]:
    """The adapters' weights (``SamI2V.adapter_parameters``: found by module membership, so a
    model whose gradients were switched off saves the same file), nothing of the frozen SAM."""
    return {n: p.detach().cpu().contiguous() for n, p in model.adapter_parameters().items()}


def _config_dict(config: ModelConfig) -> Dict[str, Any]:
    """The config as saved. The preprocessing (added after the format's first release) is
    written only when it differs from SAM's own, the only one before, so adapters that do not
    use it stay readable by releases that predate it. (Tracking policies, such as motion-aware
    selection, are the predictor's choice and are not saved.)"""
    data = to_dict(config)
    if config.preprocess == "sam":
        data.pop("preprocess")
    return data


def save_pretrained(model: Any, directory: PathLike) -> Path:
    """Write the adapters of ``model`` (a SamI2V) to ``directory``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "library": "sam-i2v",
        "library_version": __version__,
        "sam_model_type": model.config.sam,
        "sam_sha256": model.sam_sha256,
        "config": _config_dict(model.config),
    }
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(trainable_state_dict(model), str(tmp), metadata={"format": "pt"})
    write_text_atomic(out / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    return out


def resolve_adapter_dir(directory: PathLike) -> Path:
    """``directory`` itself, or, for a training run's folder (no ``adapter_config.json`` but a
    ``latest`` file naming its newest checkpoint), that checkpoint's folder."""
    folder = Path(directory)
    latest = folder / "latest"
    if not (folder / CONFIG_NAME).is_file() and latest.is_file():
        try:
            name = latest.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return folder
        if name and (folder / name / CONFIG_NAME).is_file():
            return folder / name
    return folder


def read_adapter_config(directory: PathLike) -> Dict[str, Any]:
    """Read and check ``adapter_config.json`` of a saved upgrade."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{str(directory)!r} is not a saved sam-i2v upgrade: {CONFIG_NAME} is missing "
            "(expected a directory written by save_pretrained)."
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{str(path)!r} holds {type(meta).__name__}, not a JSON object; was it written by save_pretrained?"
        )
    check_format_version(meta.get("format_version"), path)
    for key in ("sam_model_type", "sam_sha256", "config"):
        if key not in meta:
            raise CheckpointError(f"{str(path)!r} lacks the key {key!r}; was it written by save_pretrained?")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(
            f"{str(path)!r} has a 'config' of type {type(meta['config']).__name__}, not a "
            "JSON object of model settings; was it written by save_pretrained?"
        )
    return meta


def check_format_version(version: Any, path: Path) -> None:
    """Refuse an ``adapter_config.json`` whose format this release cannot read."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{str(path)!r} has format_version {version!r}; save_pretrained writes a positive integer "
            f"({FORMAT_VERSION} in this release), so the file is damaged or not a sam-i2v upgrade."
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has format_version {version}, newer than this sam-i2v ({__version__}) reads "
            f"({FORMAT_VERSION}); upgrade sam-i2v (pip install -U sam-i2v)."
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has format_version {version}: adapters of an earlier release, whose memory path "
            f"(learned memory tokens) this release replaced with the memory read-out; retrain them with "
            f"this release (sam-i2v train), or load them with the release that wrote them."
        )


def config_from_pretrained(directory: PathLike) -> ModelConfig:
    meta = read_adapter_config(directory)
    return model_config_from_dict(meta["config"], where=str(Path(directory) / CONFIG_NAME))


def load_adapter_weights(model: Any, directory: PathLike) -> None:
    """Load saved adapter weights into ``model`` with strict keys and a SAM hash check."""
    meta = read_adapter_config(directory)
    if meta["sam_sha256"] != model.sam_sha256:
        raise CheckpointError(
            f"the adapters in {str(directory)!r} were trained on the SAM checkpoint with SHA-256 "
            f"{meta['sam_sha256']}, but the SAM given has SHA-256 {model.sam_sha256}. Pass the "
            "SAM checkpoint they were trained on."
        )
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing.")
    try:
        weights = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    bad = nonfinite_tensors(weights)
    if bad:
        raise CheckpointError(
            f"{str(path)!r} holds NaN or infinite weights ({', '.join(bad[:3])}{' and others' if len(bad) > 3 else ''}); "
            "every tracked mask would come out empty. Load an earlier checkpoint of the run."
        )
    expected = set(model.adapter_parameters())
    # Adapters saved before a calibrated value existed keep its initial value (calibration off).
    missing, unexpected = expected - set(weights) - set(CALIBRATED), set(weights) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{str(path)!r} does not fit this model config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}."
        )
    params = model.adapter_parameters()
    with torch.no_grad():
        for name, value in weights.items():
            if params[name].shape != value.shape:
                raise CheckpointError(
                    f"{str(path)!r}: {name} has shape {tuple(value.shape)}, model expects {tuple(params[name].shape)}."
                )
        for name, value in weights.items():
            params[name].copy_(value)
