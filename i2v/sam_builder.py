"""Build the frozen base SAM from segment_anything's own classes and load its checkpoints.

``segment_anything.build_sam`` unpickles checkpoints with a plain ``torch.load`` (which can run
arbitrary code) and reports a wrong model type as a wall of missing keys. This module builds the
same architectures (and MobileSAM's ``vit_t``, whose TinyViT encoder lives in
:mod:`i2v.tiny_vit`), reads any checkpoint format :mod:`i2v.sam_formats` recognises, infers the
model type from it, loads with strict keys, records the checkpoint's SHA-256, and says in one
sentence what is wrong with a file that does not fit.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
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
from i2v.sam_formats import file_sha256, files_sha256, read_sam_weights  # noqa: F401 (file_sha256 re-exported)
from i2v.tiny_vit import TinyViT

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass(frozen=True)
class SamArch:
    """Hyper-parameters of one SAM architecture (the official ones match segment_anything).

    ``encoder`` names the image encoder: "vit" (SAM's ViT, shaped by the ``encoder_*`` fields)
    or "tiny_vit" (MobileSAM's TinyViT-5M, whose shape is fixed; the ``encoder_*`` fields then
    only describe it).
    """

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
    encoder: str = "vit"


SAM_ARCHS: Dict[str, SamArch] = {
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
    # MobileSAM / TinySAM: TinyViT-5M (final stage 320-d, 12 blocks in 4 stages), SAM's decoder.
    "vit_t": SamArch(320, 12, 10, (), encoder="tiny_vit"),
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


def _image_encoder(arch: SamArch) -> torch.nn.Module:
    if arch.encoder == "tiny_vit":
        return TinyViT(img_size=arch.image_size, out_chans=arch.prompt_embed_dim)
    return ImageEncoderViT(
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
    )


def build_sam_arch(arch: SamArch) -> Sam:
    """Assemble an untrained SAM with the given hyper-parameters."""
    embedding_size = arch.image_size // arch.patch_size
    return Sam(
        image_encoder=_image_encoder(arch),
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


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Content hash of an in-memory state dict (for SAMs that never came from a file)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()


def nonfinite_tensors(state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [
        k
        for k, t in state_dict.items()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    ]


TINY_VIT_KEY = "image_encoder.layers.0.blocks.0.conv1.c.weight"


def infer_model_type(state_dict: Mapping[str, torch.Tensor]) -> Tuple[Optional[str], str]:
    """Guess the architecture of a SAM state dict (segment_anything names) from keys and shapes.

    Returns ``(model_type or None, description)``; the description says what was found and
    goes into messages.
    """
    if TINY_VIT_KEY in state_dict:
        dims = [
            int(state_dict[k].shape[0])
            for k in sorted(state_dict)
            if k.startswith("image_encoder.layers.") and k.endswith(".attn.norm.weight")
        ]
        last = max(dims) if dims else 0
        found = f"TinyViT image encoder, final stage {last}-d"
        if last == SAM_ARCHS["vit_t"].encoder_embed_dim:
            return "vit_t", f"a vit_t SAM (MobileSAM / TinySAM: {found})"
        return None, f"an unknown TinyViT variant ({found}; vit_t is TinyViT-5M)"
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        sample = ", ".join(list(state_dict)[:3])
        return None, f"no SAM image encoder (first keys: {sample or 'none'})"
    dim = int(state_dict[key].shape[0])
    blocks = {int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    found = f"embed dim {dim}, {depth} blocks"
    for name, arch in SAM_ARCHS.items():
        if arch.encoder == "vit" and arch.encoder_embed_dim == dim and arch.encoder_depth == depth:
            return name, f"a {name} SAM ({found})"
    return None, f"an unknown SAM variant ({found})"


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """A SAM state dict in segment_anything's names from any format :func:`read_sam_weights` reads."""
    return read_sam_weights(path).state_dict


@dataclass
class LoadedSam:
    """A SAM model with the provenance the adapters record.

    Attributes:
        format: the checkpoint format recognised (None for a random SAM).
        notes: what loading changed (prefixes stripped, SAM-HQ tensors dropped, ...).
        description: one line saying what was found (format, type, notes).
    """

    sam: Sam
    model_type: str
    sha256: str
    checkpoint: Optional[str]
    format: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    description: str = ""


# Tensors a checkpoint may lack: MobileSAM's unused classification head.
_OPTIONAL_PREFIXES = ("image_encoder.head.", "image_encoder.norm_head.")


def load_sam(
    model_type: Optional[str],
    checkpoint: Optional[PathLike] = None,
    *,
    seed: Optional[int] = None,
) -> LoadedSam:
    """Build SAM ``model_type`` and load ``checkpoint`` with strict keys.

    Args:
        model_type: "tiny", "vit_b", "vit_l", "vit_h" or "vit_t"; None infers it from the
            checkpoint (and is then required).
        checkpoint: a SAM checkpoint file or folder in any format :mod:`i2v.sam_formats`
            reads; None leaves the weights randomly initialised (seeded with ``seed`` when
            given).
    """
    if model_type is not None and model_type not in SAM_ARCHS:
        raise CheckpointError(f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_ARCHS)}.")
    if checkpoint is None:
        if model_type is None:
            raise CheckpointError("no SAM model type and no SAM checkpoint to infer it from; pass one of them.")
        if seed is not None:
            torch.manual_seed(seed)
        sam = build_sam_arch(SAM_ARCHS[model_type])
        return LoadedSam(sam, model_type, state_dict_sha256(sam.state_dict()), None)
    weights = read_sam_weights(checkpoint)
    state_dict = weights.state_dict
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise CheckpointError(
            f"{str(checkpoint)!r} holds NaN or infinite weights ({', '.join(bad[:3])}"
            f"{' and others' if len(bad) > 3 else ''}): the file is damaged or came from a diverged "
            "fine-tune. Use the official checkpoint (or the last good one of your fine-tune)."
        )
    found_type, found = infer_model_type(state_dict)
    if found_type is None:
        raise CheckpointError(
            f"{str(checkpoint)!r} ({weights.format}) holds {found}; sam-i2v knows the SAM types "
            f"{', '.join(sorted(SAM_ARCHS))}. Pass a checkpoint of one of them."
        )
    if model_type is not None and found_type != model_type:
        raise CheckpointError(
            f"{str(checkpoint)!r} holds {found}, but the config expects a {model_type} SAM. "
            f"Pass a {model_type} checkpoint, or config='{found_type}' (or no config: the type is "
            "inferred from the checkpoint)."
        )
    description = f"{weights.format}, {found}" + "".join(f"; {n}" for n in weights.notes)
    logger.debug("SAM checkpoint %s: %s", checkpoint, description)
    if seed is not None:
        torch.manual_seed(seed)
    sam = build_sam_arch(SAM_ARCHS[found_type])
    try:
        result = sam.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise CheckpointError(f"{str(checkpoint)!r} does not match the {found_type} architecture: {exc}") from exc
    problems: List[str] = []
    missing = [k for k in result.missing_keys if not k.startswith(_OPTIONAL_PREFIXES)]
    if missing:
        problems.append(f"missing keys {missing[:5]}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {result.unexpected_keys[:5]}")
    if problems:
        raise CheckpointError(
            f"{str(checkpoint)!r} ({weights.format}) does not match the {found_type} architecture: "
            + "; ".join(problems)
        )
    return LoadedSam(
        sam, found_type, files_sha256(weights.files), str(checkpoint), weights.format, weights.notes, description
    )


SAM_BUILDERS: Dict[str, Callable[[], Sam]] = {name: partial(build_sam_arch, arch) for name, arch in SAM_ARCHS.items()}
