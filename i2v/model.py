"""SamI2V: a frozen segment_anything SAM with the adapters that make it a video model.

The class holds a ``Sam`` and calls its parts directly (``Sam.forward`` runs under no_grad, so
training could not use it). Per frame:

    encode_images  frozen image encoder                        (B, 3, S, S) → (B, C, h, w)
    prepare_frame  temporal upgrader + memory keys + descriptor → FrameFeatures
    read_memory    objects' remembered masks → their read-out on this frame (Readout)
    decode         SAM prompt encoder + SAM mask decoder + presence head → DecodeOutput
    make_memory    the frame's keys + each object's mask → one MemoryEntry per object

Memory reaches the decoder only as prompts (:mod:`i2v.adapters.memory_prompt`, assembled by
:mod:`i2v.tracking_ops`), never as extra tokens. Untrained adapters are zero-initialised, so on
a prompted frame the output equals ``segment_anything.SamPredictor``'s.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn

from i2v.adapters.lora import inject_lora, lora_parameters
from i2v.adapters.memory_prompt import READOUT_STATS, PresenceHead, appearance_stats
from i2v.adapters.memory_readout import MemoryReadout, Readout, ReadoutMemory
from i2v.adapters.temporal_upgrader import TemporalUpgrader
from i2v.config import ModelConfig
from i2v.errors import I2VError
from i2v.memory_bank import MemoryEntry
from i2v.preprocess import make_transform, normalise

# Adapter values set by calibration after training (:mod:`i2v.train.calibration`), not by
# gradient: saved and loaded with the adapters, never given to the optimiser. An adapter saved
# before one existed loads with it at its initial value (the calibration off).
CALIBRATED = ("presence_head.min_similarity",)


@dataclass
class FrameFeatures:
    """One frame, ready for decoding.

    Attributes:
        embedding: (1, C, h, w) upgraded image embedding.
        pooled: (1, p*p, C) pooled frozen embedding, kept for later frames' upgrader window.
        keys: (M, C) unit-norm memory keys of the frozen embedding (M = read-out grid cells).
        descriptor: (C,) pooled embedding for memory relevance scoring.
    """

    embedding: torch.Tensor
    pooled: torch.Tensor
    keys: torch.Tensor
    descriptor: torch.Tensor


@dataclass
class ObjectPrompts:
    """Prompts of N objects that share one structure, in the model's input coordinates.

    Attributes:
        point_coords: (N, P, 2) pixel coordinates after SAM's resize, or None.
        point_labels: (N, P) 1 positive, 0 negative, 2/3 box corners, -1 padding; or None.
        boxes: (N, 4) XYXY after SAM's resize, or None.
        mask_inputs: (N, 1, 4h, 4w) mask logits (SAM's low-resolution mask prompt), or None.
    """

    point_coords: Optional[torch.Tensor] = None
    point_labels: Optional[torch.Tensor] = None
    boxes: Optional[torch.Tensor] = None
    mask_inputs: Optional[torch.Tensor] = None


@dataclass
class DecodeOutput:
    """Decoder output for N objects.

    Attributes:
        low_res_logits: (N, 1, 4h, 4w) the chosen mask's logits.
        iou: (N,) its predicted IoU.
        presence_logits: (N,) object-presence logits (> 0: present).
        all_low_res_logits: (N, K, 4h, 4w) every candidate mask (K = 3 with multimask, else 1).
        all_iou: (N, K) their predicted IoUs.
    """

    low_res_logits: torch.Tensor
    iou: torch.Tensor
    presence_logits: torch.Tensor
    all_low_res_logits: torch.Tensor
    all_iou: torch.Tensor


class SamI2V(nn.Module):
    """Frozen SAM + temporal upgrader + memory encoder + memory-as-prompt + presence head.

    Args:
        sam: a segment_anything ``Sam`` (its weights are frozen here).
        config: the adapters' configuration.
        sam_sha256: hash of the SAM checkpoint, recorded when adapters are saved.
    """

    def __init__(self, sam: Sam, config: ModelConfig, sam_sha256: str) -> None:
        super().__init__()
        self.config = config
        self.sam_sha256 = sam_sha256
        self.sam = sam
        self.sam.requires_grad_(False)
        self.sam.eval()
        c = sam.prompt_encoder.embed_dim
        self.upgrader = TemporalUpgrader(c, config.upgrader)
        self.memory_readout = MemoryReadout(c, sam.prompt_encoder.image_embedding_size, config.memory_readout)
        self.presence_head = PresenceHead(c, config.memory_prompt.presence_bias)
        if not config.upgrader.enabled:  # a switched-off module neither trains nor is saved
            self.upgrader.requires_grad_(False)
        self.lora_modules: List[str] = []
        if config.lora.enabled:
            self.lora_modules = inject_lora(self.sam, config.lora)
            for p in lora_parameters(self.sam).values():
                p.requires_grad_(True)
        self.transform = make_transform(config.preprocess, sam.image_encoder.img_size)

    def train(self, mode: bool = True) -> "SamI2V":
        """Adapters follow ``mode``; the frozen SAM stays in eval mode."""
        super().train(mode)
        self.sam.eval()
        return self

    # -- sizes ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.sam.pixel_mean.device

    @property
    def image_size(self) -> int:
        """Side of SAM's square input (1024 for the official models)."""
        return int(self.sam.image_encoder.img_size)

    @property
    def embedding_size(self) -> Tuple[int, int]:
        """(h, w) of SAM's image embedding."""
        h, w = self.sam.prompt_encoder.image_embedding_size
        return int(h), int(w)

    @property
    def low_res_size(self) -> Tuple[int, int]:
        """(4h, 4w): size of the decoder's mask logits and of SAM's mask prompt."""
        h, w = self.embedding_size
        return 4 * h, 4 * w

    def adapter_parameters(self) -> Dict[str, nn.Parameter]:
        """The adapters' weights by name: what training changes and ``save_pretrained`` writes.

        Found by module membership (the memory read-out, the presence head, the upgrader when it
        is enabled, LoRA on SAM), not by ``requires_grad``, so ``model.requires_grad_(False)``
        before inference changes neither what is saved nor what is loaded.
        """
        out: Dict[str, nn.Parameter] = {}
        modules: List[Tuple[str, nn.Module]] = [
            ("memory_readout", self.memory_readout),
            ("presence_head", self.presence_head),
        ]
        if self.config.upgrader.enabled:
            modules.append(("upgrader", self.upgrader))
        for prefix, module in modules:
            for name, param in module.named_parameters():
                if name.startswith("key_residual.") and not self.config.memory_readout.learn_keys:
                    continue  # the keys' residual is switched off: it stays zero
                out[f"{prefix}.{name}"] = param
        out.update({f"sam.{name}": param for name, param in lora_parameters(self.sam).items()})
        return out

    def set_adapters_trainable(self, trainable: bool = True) -> "SamI2V":
        """Switch gradients of the adapters on or off (calibrated values stay without: they are
        set by :mod:`i2v.train.calibration`, not by gradient); the frozen SAM stays frozen."""
        for name, param in self.adapter_parameters().items():
            param.requires_grad_(trainable and name not in CALIBRATED)
        return self

    def trainable_parameters(self) -> List[nn.Parameter]:
        """The adapters' weights that training changes by gradient (:meth:`adapter_parameters`
        less the calibrated ones), in a fixed order."""
        return [p for name, p in self.adapter_parameters().items() if name not in CALIBRATED]

    # -- per-frame steps -----------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The configured preprocessing of one RGB frame (SAM's own by default; see
        :mod:`i2v.preprocess`).

        Args:
            image: (H, W, 3) uint8 RGB.
        Returns:
            (1, 3, S, S) normalised, padded input and the (h', w') size before padding.
        """
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return normalise(self.config.preprocess, self.sam, x), (int(resized.shape[0]), int(resized.shape[1]))

    @property
    def encoder_dtype(self) -> torch.dtype:
        """Precision the image encoder runs in (float32 unless built with ``dtype=``)."""
        return self.sam.image_encoder.neck[0].weight.dtype

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen SAM image encoder: (B, 3, S, S) preprocessed → (B, C, h, w) float32.

        The encoder runs in :attr:`encoder_dtype` (or under the caller's ``torch.autocast``);
        its output is returned in float32, the precision everything after it runs in.
        """
        return self.sam.image_encoder(images.to(self.encoder_dtype)).float()

    def prepare_frame(self, raw: torch.Tensor, past: Optional[torch.Tensor] = None) -> FrameFeatures:
        """Upgrade one frame's embedding and derive what memory reading needs.

        Args:
            raw: (1, C, h, w) frozen encoder output.
            past: (1, W', p*p, C) pooled tokens of previous frames (most recent first).
        """
        return FrameFeatures(
            embedding=self.upgrader(raw, past),
            pooled=self.upgrader.pool(raw),
            keys=self.memory_readout.keys(raw),
            descriptor=raw.mean(dim=(0, 2, 3)),
        )

    def read_memory(self, frame: FrameFeatures, memory: ReadoutMemory) -> Readout:
        """N objects' read-out on this frame (shapes in :class:`ReadoutMemory`, :class:`Readout`)."""
        return self.memory_readout(frame.keys, memory)

    def _encode_prompts(self, prompts: ObjectPrompts, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        points = None
        if prompts.point_coords is not None:
            points = (prompts.point_coords, prompts.point_labels)
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=prompts.boxes, masks=prompts.mask_inputs)
        if sparse.shape[0] != n:  # no prompt at all: SAM's encoder assumes a batch of one
            sparse = sparse.expand(n, -1, -1)
            dense = dense.expand(n, -1, -1, -1)
        return sparse, dense

    def decode(
        self,
        frame: FrameFeatures,
        prompts: ObjectPrompts,
        num_objects: int,
        multimask: bool = False,
        all_candidates: bool = False,
        readout_stats: Optional[torch.Tensor] = None,
        prototypes: Optional[torch.Tensor] = None,
    ) -> DecodeOutput:
        """Segment ``num_objects`` objects on one frame with SAM's own prompt encoder and decoder.

        Args:
            frame: the frame's features.
            prompts: user prompts, mask priors and/or memory's prompts of the objects.
            num_objects: N.
            multimask: predict 3 candidates and keep the one with the highest predicted IoU
                (SAM's answer to an ambiguous single click).
            all_candidates: return all four of SAM's masks in ``all_low_res_logits`` (its
                single-mask output first, then the three multimask candidates; the decoder
                computes them all in any case) and choose the single-mask output; overrides
                ``multimask``.
            readout_stats: (N, READOUT_STATS) what memory says of each object (see
                :func:`readout_stats`), or None: no memory was read.
            prototypes: (N, C) each object's remembered appearance
                (:func:`~i2v.adapters.memory_prompt.object_appearance`; zeros where it has none),
                compared by the presence head with the chosen mask; or None.
        """
        sparse, dense = self._encode_prompts(prompts, num_objects)
        inputs = dict(
            image_embeddings=frame.embedding,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        with _capture_iou_token(self.sam.mask_decoder) as captured:
            if all_candidates:  # MaskDecoder.forward only slices what predict_masks returns
                all_logits, all_iou = self.sam.mask_decoder.predict_masks(**inputs)
            else:
                all_logits, all_iou = self.sam.mask_decoder(**inputs, multimask_output=multimask)
        if readout_stats is None:
            readout_stats = no_readout_stats(num_objects, all_iou.device)
        best = torch.zeros_like(all_iou[:, 0], dtype=torch.long) if all_candidates else all_iou.argmax(dim=1)
        rows = torch.arange(num_objects, device=all_iou.device)
        chosen = all_logits[rows, best][:, None]
        appearance = appearance_stats(frame.keys, self.memory_readout.pool_masks(chosen), prototypes)
        return DecodeOutput(
            low_res_logits=chosen,
            iou=all_iou[rows, best],
            presence_logits=self.presence_head(captured.token, readout_stats, appearance),
            all_low_res_logits=all_logits,
            all_iou=all_iou,
        )

    def make_memory(
        self,
        frame: FrameFeatures,
        frame_idx: int,
        mask_logits: torch.Tensor,
        iou: torch.Tensor,
        presence_logits: torch.Tensor,
        prompted: bool,
    ) -> List[MemoryEntry]:
        """Memory entries of N objects on this frame.

        Args:
            mask_logits: (N, 1, 4h, 4w) the masks to remember.
            iou, presence_logits: (N,) decoder outputs for those masks.
        """
        values = self.memory_readout.pool_masks(mask_logits)  # (N, M)
        descriptor = frame.descriptor.detach().float().cpu()  # relevance scoring runs on the CPU
        ious = iou.detach().float().cpu().tolist()
        presence = presence_logits.detach().float().sigmoid().cpu().tolist()
        return [
            MemoryEntry(frame_idx, frame.keys, values[i], descriptor, ious[i], presence[i], prompted)
            for i in range(mask_logits.shape[0])
        ]


def no_readout_stats(n: int, device: torch.device) -> torch.Tensor:
    """(N, READOUT_STATS) statistics of objects that read no memory (a prompted frame, or an
    object without entries): no evidence either way."""
    stats = torch.zeros(n, READOUT_STATS, device=device)
    stats[:, 0] = 1.0  # peak
    stats[:, 2] = 1.0  # agreement with the previous output
    return stats


def readout_stats(readout: Readout, agreement: torch.Tensor) -> torch.Tensor:
    """(N, READOUT_STATS): the read-out's peak and mass, its agreement (IoU) with the previous
    output, and 1 for "memory was read"."""
    return torch.stack([readout.peak, readout.mass, agreement.to(readout.peak), torch.ones_like(readout.peak)], dim=1)


class _IouTokenCapture:
    """Holds the IoU token captured during one decoder call."""

    def __init__(self) -> None:
        self.captured: Optional[torch.Tensor] = None

    @property
    def token(self) -> torch.Tensor:
        if self.captured is None:
            raise I2VError(
                "the presence head found no IoU token: segment_anything's MaskDecoder no longer calls "
                "iou_prediction_head with the IoU token as its input; this segment_anything version is not supported."
            )
        return self.captured


@contextlib.contextmanager
def _capture_iou_token(decoder: nn.Module) -> Iterator[_IouTokenCapture]:
    """SAM's decoder does not return its IoU token; read it from the input of the IoU head,
    through a hook that lives for one decoder call (no fork of SAM's code, reentrant)."""
    capture = _IouTokenCapture()

    def hook(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        capture.captured = inputs[0]

    head = decoder.iou_prediction_head
    if not isinstance(head, nn.Module):
        raise TypeError(
            "segment_anything's MaskDecoder has no iou_prediction_head module; this version of segment_anything is not "
            "supported (install segment-anything 1.0)."
        )
    handle = head.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
