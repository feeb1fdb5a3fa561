"""Build the frozen base SAM from segment_anything's own classes and load official checkpoints.

``segment_anything.build_sam`` unpickles checkpoints with a plain ``torch.load`` (which can run
arbitrary code) and reports a wrong model type as a wall of missing keys. This module builds the
same architectures, loads with ``weights_only=True`` and strict keys, records the checkpoint's
SHA-256, and says in one sentence what is wrong with a file that does not fit.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from i2v.errors import CheckpointError

PathLike = Union[str, Path]


@dataclass(frozen=True)
class SamArch:
    """Hyper-parameters of one SAM architecture (the official ones match segment_anything)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: Tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


SAM_ARCHS: Dict[str, SamArch] = {
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
    # A CPU-sized SAM from the same classes: 128 px input, 8 px patches (16x16 embedding,
    # 64x64 masks), 128-d prompt space. About 1.5 M parameters; serves tests and the quickstart.
    "tiny": SamArch(
        encoder_embed_dim=128,
        encoder_depth=4,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(1, 3),
        image_size=128,
        patch_size=8,
        window_size=8,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        decoder_num_heads=4,
        iou_head_hidden_dim=128,
    ),
}


def build_sam_arch(arch: SamArch) -> Sam:
    """Assemble an untrained SAM with the given hyper-parameters."""
    embedding_size = arch.image_size // arch.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file, read in chunks (SAM vit_h is 2.4 GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Content hash of an in-memory state dict (for SAMs that never came from a file)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()


def nonfinite_tensors(state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, t in state_dict.items()
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())]


def infer_model_type(state_dict: Mapping[str, torch.Tensor]) -> Tuple[Optional[str], str]:
    """Guess the architecture of a SAM state dict.

    Returns ``(model_type or None, description)``; the description says what was found and
    goes into error messages.
    """
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        sample = ", ".join(list(state_dict)[:3])
        return None, f"no SAM image encoder (first keys: {sample or 'none'})"
    dim = int(state_dict[key].shape[0])
    blocks = {int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    found = f"embed dim {dim}, {depth} blocks"
    for name, arch in SAM_ARCHS.items():
        if arch.encoder_embed_dim == dim and arch.encoder_depth == depth:
            return name, f"a {name} SAM ({found})"
    return None, f"an unknown SAM variant ({found})"


def _unwrap(obj: object, path: PathLike) -> Dict[str, torch.Tensor]:
    # Fine-tuning scripts often save {"model": state_dict} or {"state_dict": ...}.
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and "image_encoder.patch_embed.proj.weight" in inner:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{str(path)!r} is not a SAM checkpoint: expected a state dict of tensors "
            f"(as in sam_vit_b_01ec64.pth), found {type(obj).__name__}."
        )
    return dict(obj)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON header ("{")."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a SAM state dict from ``.pth`` (safe unpickling only) or ``.safetensors``."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(
            f"SAM checkpoint {str(p)!r} is a directory; pass the checkpoint file itself "
            "(e.g. sam_vit_b_01ec64.pth or a .safetensors file)."
        )
    if not p.is_file():
        raise CheckpointError(
            f"SAM checkpoint {str(p)!r} does not exist. Download the official file "
            "(e.g. sam_vit_b_01ec64.pth) and pass its path as sam_checkpoint."
        )
    if p.suffix.lower() == ".safetensors" or _looks_like_safetensors(p):
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{str(p)!r} is not a readable safetensors file: {exc}") from exc
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{str(p)!r} was refused: it contains Python objects beyond tensors, and loading "
            "it could run arbitrary code. Official SAM checkpoints are plain state dicts; "
            "re-save yours with torch.save(model.state_dict(), path)."
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on damaged or foreign files
        raise CheckpointError(
            f"{str(p)!r} could not be read as a PyTorch checkpoint (truncated or corrupt "
            f"download?): {exc}"
        ) from exc
    return _unwrap(obj, p)


@dataclass
class LoadedSam:
    """A SAM model with the provenance the adapters record."""

    sam: Sam
    model_type: str
    sha256: str
    checkpoint: Optional[str]


def load_sam(
    model_type: str,
    checkpoint: Optional[PathLike] = None,
    *,
    seed: Optional[int] = None,
) -> LoadedSam:
    """Build SAM ``model_type`` and load ``checkpoint`` with strict keys.

    Args:
        model_type: "tiny", "vit_b", "vit_l" or "vit_h".
        checkpoint: an official SAM checkpoint (``.pth`` state dict) or ``.safetensors``;
            None leaves the weights randomly initialised (seeded with ``seed`` when given).
    """
    if model_type not in SAM_ARCHS:
        raise CheckpointError(
            f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_ARCHS)}."
        )
    if seed is not None:
        torch.manual_seed(seed)
    sam = build_sam_arch(SAM_ARCHS[model_type])
    if checkpoint is None:
        return LoadedSam(sam, model_type, state_dict_sha256(sam.state_dict()), None)
    state_dict = read_state_dict(checkpoint)
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise CheckpointError(
            f"{str(checkpoint)!r} holds NaN or infinite weights ({', '.join(bad[:3])}"
            f"{' and others' if len(bad) > 3 else ''}): the file is damaged or came from a diverged "
            "fine-tune. Use the official checkpoint (or the last good one of your fine-tune).")
    found_type, found = infer_model_type(state_dict)
    if found_type != model_type:
        raise CheckpointError(
            f"{str(checkpoint)!r} holds {found}, but the config expects a {model_type} SAM. "
            f"Pass a {model_type} checkpoint or a config for the checkpoint's type."
        )
    try:
        result = sam.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise CheckpointError(
            f"{str(checkpoint)!r} does not match the {model_type} architecture: {exc}"
        ) from exc
    problems: List[str] = []
    if result.missing_keys:
        problems.append(f"missing keys {result.missing_keys[:5]}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {result.unexpected_keys[:5]}")
    if problems:
        raise CheckpointError(
            f"{str(checkpoint)!r} does not match the {model_type} architecture: "
            + "; ".join(problems)
        )
    return LoadedSam(sam, model_type, file_sha256(checkpoint), str(checkpoint))


SAM_BUILDERS: Dict[str, Callable[[], Sam]] = {
    name: partial(build_sam_arch, arch) for name, arch in SAM_ARCHS.items()
}
