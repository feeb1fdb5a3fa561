"""Recognise the SAM checkpoint a user holds and bring it to segment_anything's names.

Formats read (file or folder, no conversion step by the user):

- official ``segment_anything`` state dicts (``.pth``; ``.safetensors``), MobileSAM / TinySAM
  (same layout, TinyViT encoder keys), MedSAM (a vit_b SAM);
- Hugging Face ``transformers`` ``SamModel``: a ``save_pretrained`` folder (``config.json`` +
  ``model.safetensors``, sharded safetensors, or ``pytorch_model.bin``) or its weight file,
  renamed by :data:`HF_KEY_RULES`;
- wrapped state dicts: ``{"model": ...}``, ``{"state_dict": ...}`` (Lightning), keys prefixed
  with ``module.`` (DDP), ``model.`` or ``sam.``;
- SAM-HQ: its HQ-only decoder tensors are dropped with a warning; what remains is SAM.

Pickled files are read with ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import torch

from i2v.errors import CheckpointError

PathLike = Union[str, Path]

# Hugging Face SamModel name → segment_anything name, applied in order (first match wins).
# The MLP heads (proj_in / layers.i / proj_out) are renumbered apart, in _rename_hf_mlp.
HF_KEY_RULES: Tuple[Tuple[str, str], ...] = (
    (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^vision_encoder\.pos_embed$", "image_encoder.pos_embed"),
    (r"^vision_encoder\.layers\.(\d+)\.layer_norm1\.", r"image_encoder.blocks.\1.norm1."),
    (r"^vision_encoder\.layers\.(\d+)\.layer_norm2\.", r"image_encoder.blocks.\1.norm2."),
    (r"^vision_encoder\.layers\.(\d+)\.(attn|mlp)\.", r"image_encoder.blocks.\1.\2."),
    (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"^shared_image_embedding\.positional_embedding$", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (
        r"^prompt_encoder\.shared_embedding\.positional_embedding$",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    ),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"^prompt_encoder\.point_embed\.(\d+)\.", r"prompt_encoder.point_embeddings.\1."),
    (r"^prompt_encoder\.(not_a_point_embed|no_mask_embed)\.", r"prompt_encoder.\1."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.layer_norm(\d)\.", r"mask_decoder.transformer.layers.\1.norm\2."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    (
        r"^mask_decoder\.transformer\.(layers\.\d+\.(?:self_attn|cross_attn_token_to_image|cross_attn_image_to_token|mlp)|final_attn_token_to_image)\.",
        r"mask_decoder.transformer.\1.",
    ),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    (r"^mask_decoder\.(iou_token|mask_tokens)\.", r"mask_decoder.\1."),
    (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.", r"mask_decoder.\1."),
)
_HF_MLP = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(proj_in|proj_out|layers\.(\d+))\.(.+)$"
)

# SAM-HQ's additions to the mask decoder; without them the model is the original SAM.
HQ_PREFIXES = (
    "mask_decoder.hf_token.",
    "mask_decoder.hf_mlp.",
    "mask_decoder.compress_vit_feat.",
    "mask_decoder.embedding_encoder.",
    "mask_decoder.embedding_maskfeature.",
)
_WRAPPER_KEYS = ("model", "state_dict", "module", "model_state_dict")
_PREFIXES = ("module.", "model.", "sam.", "_orig_mod.")
_SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass
class SamWeights:
    """A SAM state dict in segment_anything's names, and where it came from.

    Attributes:
        state_dict: the tensors, keyed as ``segment_anything.modeling.Sam`` names them.
        format: what was recognised, e.g. "segment_anything state dict".
        files: the weight files read (their SHA-256 identifies the checkpoint).
        notes: what was changed on the way (prefixes stripped, tensors dropped).
    """

    state_dict: Dict[str, torch.Tensor]
    format: str
    files: List[Path]
    notes: List[str] = field(default_factory=list)


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file, read in chunks (SAM vit_h is 2.4 GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def files_sha256(files: Sequence[Path]) -> str:
    """The checkpoint's identity: the file's SHA-256, or for several files (a sharded folder)
    the SHA-256 of their names and hashes."""
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON header ("{")."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def _read_file(path: Path) -> object:
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{str(path)!r} was refused: it contains Python objects beyond tensors, and loading "
            "it could run arbitrary code. Official SAM checkpoints are plain state dicts; "
            "re-save yours with torch.save(model.state_dict(), path)."
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on damaged or foreign files
        raise CheckpointError(
            f"{str(path)!r} could not be read as a PyTorch checkpoint (truncated or corrupt download?): {exc}"
        ) from exc


def _is_sam_like(d: Mapping) -> bool:
    return any(
        isinstance(k, str)
        and (k.startswith(_SAM_PARTS) or k.startswith(("vision_encoder.", "shared_image_embedding.")))
        for k in d
    )


def _unwrap(obj: object, path: Path, notes: List[str]) -> Dict[str, torch.Tensor]:
    """Open wrapper dicts and strip wrapper prefixes until SAM's own names appear."""
    for _ in range(4):  # wrappers nest (e.g. {"state_dict": {"model.module.…"}})
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is not None and not _is_sam_like(obj):
            notes.append(f"read the state dict under {next(k for k in _WRAPPER_KEYS if obj.get(k) is inner)!r}")
            obj = inner
            continue
        prefix = next((p for p in _PREFIXES if obj and all(isinstance(k, str) and k.startswith(p) for k in obj)), None)
        if prefix is None and not _is_sam_like(obj):  # e.g. Lightning: "model." on most keys, other modules beside
            prefix = next(
                (p for p in _PREFIXES if any(isinstance(k, str) and k.startswith(p + "image_encoder.") for k in obj)),
                None,
            )
            if prefix is not None:
                obj = {k: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix)}
        if prefix is None:
            break
        notes.append(f"stripped the {prefix!r} prefix")
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__
        if isinstance(obj, Mapping):
            found = f"a dict with keys {', '.join(map(str, list(obj)[:5]))}" if obj else "an empty dict"
        raise CheckpointError(
            f"{str(path)!r} is not a SAM checkpoint: expected a state dict of tensors (as in "
            f"sam_vit_b_01ec64.pth, optionally under 'model' or 'state_dict'), found {found}."
        )
    return dict(obj)


def _rename_hf_mlp(keys: Sequence[str]) -> Dict[str, str]:
    """HF MLP heads name their layers proj_in, layers.0.., proj_out; SAM numbers them 0..L-1."""
    middle: Dict[str, int] = {}
    for k in keys:
        m = _HF_MLP.match(k)
        if m and m.group(3) is not None:
            middle[m.group(1)] = max(middle.get(m.group(1), 0), int(m.group(3)) + 1)
    out = {}
    for k in keys:
        m = _HF_MLP.match(k)
        if not m:
            continue
        head, part, idx, rest = m.groups()
        last = middle.get(head, 0) + 1
        i = 0 if part == "proj_in" else last if part == "proj_out" else int(idx) + 1
        out[k] = f"{head}.layers.{i}.{rest}"
    return out


def hf_to_sam(state_dict: Mapping[str, torch.Tensor], where: str) -> Dict[str, torch.Tensor]:
    """Rename a Hugging Face ``SamModel`` state dict to segment_anything's names.

    Every key must match a rule; a key that none matches is an error naming it, so a layout
    this map does not know is never half-loaded.
    """
    mlp = _rename_hf_mlp(list(state_dict))
    rules = [(re.compile(p), r) for p, r in HF_KEY_RULES]
    out: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        new = mlp.get(key)
        if new is None:
            new = next((rx.sub(r, key) for rx, r in rules if rx.match(key)), None)
        if new is None:
            unknown.append(key)
            continue
        if new in out and not torch.equal(out[new], value):  # the tied positional embedding
            raise CheckpointError(f"{where}: {key} and another tensor both map to {new} but differ.")
        out[new] = value
    if unknown:
        raise CheckpointError(
            f"{where} looks like a Hugging Face SamModel, but {len(unknown)} tensor(s) are not part of "
            f"SAM: {', '.join(unknown[:5])}. Pass the weights of a plain SamModel (merge LoRA with "
            "merge_and_unload() and save_pretrained the result)."
        )
    return out


def _hf_weight_files(folder: Path) -> List[Path]:
    for name in _HF_WEIGHTS:
        p = folder / name
        if not p.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                index = json.loads(p.read_text())
                shards = sorted(set(index["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"{str(p)!r} is not a valid shard index ({exc}).") from exc
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise CheckpointError(f"{str(p)!r} names shards that are missing: {', '.join(missing[:3])}.")
            return [folder / s for s in shards]
        return [p]
    return []


_MERGE_HINT = (
    "load the base SamModel with transformers, apply the adapter with peft, call merge_and_unload(), "
    "save_pretrained the result and pass that folder"
)


def _read_lora_config(folder: Path) -> Dict[str, Any]:
    """A peft folder's adapter_config.json, checked to be a LoRA this module can merge onto a local base."""
    config_path = folder / "adapter_config.json"
    try:
        cfg = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON: {exc}") from exc
    if isinstance(cfg, dict) and cfg.get("library") == "sam-i2v":
        raise CheckpointError(
            f"{str(folder)!r} holds sam-i2v adapters, not a SAM: pass it as checkpoint= (--checkpoint) and the "
            "SAM they were trained on as sam_checkpoint= (--sam-checkpoint)."
        )
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        found = cfg.get("peft_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(
            f"{str(folder)!r} holds a peft adapter of type {found!r}; only LoRA is merged here: {_MERGE_HINT}."
        )
    unsupported = [
        k for k in ("use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "modules_to_save") if cfg.get(k)
    ]
    if cfg.get("bias", "none") != "none":
        unsupported.append("bias")
    if unsupported:
        raise CheckpointError(
            f"{str(folder)!r}: a LoRA with {', '.join(unsupported)} is not merged here: {_MERGE_HINT}."
        )
    base = cfg.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise CheckpointError(
            f"{str(folder)!r} is a peft LoRA whose base model {base!r} is not a folder on this machine (nothing "
            f"is downloaded): {_MERGE_HINT}, or save the base SamModel locally and set base_model_name_or_path."
        )
    return cfg


def _read_lora_folder(folder: Path) -> Tuple[Dict[str, torch.Tensor], List[Path], List[str]]:
    """A peft LoRA folder on a Hugging Face SamModel, merged into its base as peft's
    ``merge_and_unload`` does: W + (B @ A) * lora_alpha / r (/ sqrt(r) with rsLoRA)."""
    cfg = _read_lora_config(folder)
    base = cfg["base_model_name_or_path"]
    adapter = folder / "adapter_model.safetensors"
    if not adapter.is_file():
        adapter = folder / "adapter_model.bin"
    if not adapter.is_file():
        raise CheckpointError(f"{str(folder)!r} has adapter_config.json but no adapter_model.safetensors.")
    base_files = _hf_weight_files(Path(base))
    if not base_files:
        raise CheckpointError(f"the LoRA's base model folder {base!r} holds no model.safetensors or pytorch_model.bin.")
    notes: List[str] = []
    weights: Dict[str, torch.Tensor] = {}
    for f in base_files:
        weights.update(_unwrap(_read_file(f), f, notes))
    lora = _read_file(adapter)
    if not isinstance(lora, Mapping):
        raise CheckpointError(f"{str(adapter)!r} is not a state dict of LoRA tensors.")
    r = float(cfg.get("r", 8))
    scaling = float(cfg.get("lora_alpha", r)) / (r**0.5 if cfg.get("use_rslora") else r)
    prefix = "base_model.model."
    merged = 0
    for key, a in lora.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise CheckpointError(f"{str(adapter)!r} holds {key}, which is not a LoRA A/B matrix: {_MERGE_HINT}.")
            continue
        name = key[len(prefix) : -len(".lora_A.weight")] if key.startswith(prefix) else key[: -len(".lora_A.weight")]
        b = lora.get(key.replace(".lora_A.", ".lora_B."))
        target = weights.get(name + ".weight")
        if b is None or target is None:
            raise CheckpointError(f"{str(adapter)!r}: {key} has no matching lora_B or base weight {name}.weight.")
        weights[name + ".weight"] = (target.float() + (b.float() @ a.float()) * scaling).to(target.dtype)
        merged += 1
    notes.append(f"merged {merged} LoRA matrices (scaling {scaling:g}) into the base model {base}")
    return weights, base_files + [adapter], notes


def _folder_files(folder: Path) -> Tuple[List[Path], str]:
    files = _hf_weight_files(folder)
    if files:
        return files, "Hugging Face SamModel folder"
    singles = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
    )
    if len(singles) == 1:
        return singles, "folder with one checkpoint"
    listing = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
    raise CheckpointError(
        f"SAM checkpoint folder {str(folder)!r} is not a recognised layout: expected a Hugging Face "
        f"save_pretrained folder ({' or '.join(_HF_WEIGHTS[::2])}) or a single .pth/.safetensors file; "
        f"found {listing}."
    )


def read_sam_weights(path: PathLike) -> SamWeights:
    """Read any supported SAM checkpoint (file or folder) into segment_anything's names."""
    p = Path(path)
    if p.is_dir() and (p / "adapter_config.json").is_file() and not _hf_weight_files(p):
        lora_weights, lora_files, lora_notes = _read_lora_folder(p)
        return _finish(p, lora_weights, "peft LoRA on a Hugging Face SamModel (merged)", lora_files, lora_notes)
    if p.is_dir():
        files, fmt = _folder_files(p)
    elif p.is_file():
        files, fmt = [p], ""
    else:
        raise CheckpointError(
            f"SAM checkpoint {str(p)!r} does not exist. Pass the path of a SAM checkpoint file "
            "(e.g. sam_vit_b_01ec64.pth) or of a Hugging Face SamModel folder as sam_checkpoint."
        )
    notes: List[str] = []
    merged: Dict[str, torch.Tensor] = {}
    for f in files:
        merged.update(_unwrap(_read_file(f), f, notes))
    return _finish(p, merged, fmt, files, notes)


def _finish(p: Path, merged: Dict[str, torch.Tensor], fmt: str, files: List[Path], notes: List[str]) -> SamWeights:
    """Refuse unmerged LoRA, rename Hugging Face keys, drop SAM-HQ's extra tensors."""
    lora = [k for k in merged if ".lora_" in k or ".base_layer." in k]
    if lora:
        raise CheckpointError(
            f"{str(p)!r} holds unmerged LoRA tensors ({', '.join(lora[:2])}): merge them into the weights "
            "first (peft: model = model.merge_and_unload(), then save_pretrained or torch.save(model.state_dict())), "
            "and pass the result."
        )
    if any(k.startswith(("vision_encoder.", "shared_image_embedding.")) for k in merged):
        merged = hf_to_sam(merged, repr(str(p)))
        fmt = fmt if fmt.startswith("peft") else "Hugging Face SamModel" + (" folder" if p.is_dir() else " weights")
        notes.append("renamed from Hugging Face SamModel names")
    hq = sorted(k for k in merged if k.startswith(HQ_PREFIXES))
    if hq:
        for k in hq:
            del merged[k]
        msg = (
            f"{str(p)!r} is a SAM-HQ checkpoint: its {len(hq)} HQ-only decoder tensors (hf_token, hf_mlp, "
            "compress_vit_feat, embedding_encoder, embedding_maskfeature) were dropped; what remains, "
            "and what sam-i2v upgrades, is the original SAM's mask (not SAM-HQ's refined one)."
        )
        warnings.warn(msg, stacklevel=3)
        notes.append("dropped SAM-HQ's HQ-only tensors")
        fmt = fmt or "SAM-HQ state dict"
    if not fmt:
        fmt = "segment_anything state dict"
    return SamWeights(merged, fmt, files, notes)
