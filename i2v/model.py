"""SamI2V: a frozen segment_anything SAM with the adapters that make it a video model.

The class holds a ``Sam`` and calls its parts directly (``Sam.forward`` runs under no_grad, so
training could not use it). Per frame:

    encode_images  frozen image encoder                        (B, 3, S, S) → (B, C, h, w)
    prepare_frame  temporal upgrader + memory keys + descriptor → FrameFeatures
    decode         SAM prompt encoder + memory-as-prompt + SAM mask decoder → DecodeOutput
    make_memory    memory encoder → one MemoryEntry per object

Untrained adapters are zero-initialised and an empty memory adds no token, so on a prompted
first frame the output equals ``segment_anything.SamPredictor``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn

from i2v.adapters.lora import inject_lora, lora_parameters
from i2v.adapters.memory_encoder import MemoryEncoder
from i2v.adapters.memory_prompt import MemoryAsPrompt, PresenceHead
from i2v.adapters.temporal_upgrader import TemporalUpgrader
from i2v.config import ModelConfig
from i2v.memory_bank import MemoryBatch, MemoryEntry


@dataclass
class FrameFeatures:
    """One frame, ready for decoding.

    Attributes:
        embedding: (1, C, h, w) upgraded image embedding.
        pooled: (1, p*p, C) pooled frozen embedding, kept for later frames' upgrader window.
        key_map: (1, Dk, h, w) keys for reading memory.
        descriptor: (C,) pooled embedding for memory relevance scoring.
    """

    embedding: torch.Tensor
    pooled: torch.Tensor
    key_map: torch.Tensor
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
        self.memory_encoder = MemoryEncoder(c, config.memory_encoder)
        self.memory_prompt = MemoryAsPrompt(c, config.memory_encoder, config.memory_prompt)
        self.presence_head = PresenceHead(c, config.memory_prompt.presence_bias)
        self.lora_modules: List[str] = []
        if config.lora.enabled:
            self.lora_modules = inject_lora(self.sam, config.lora)
            for p in lora_parameters(self.sam).values():
                p.requires_grad_(True)
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        # SAM's decoder does not return its IoU token; the presence head reads it from the
        # input of the IoU head, captured here without forking SAM's code.
        self._iou_token: Optional[torch.Tensor] = None
        sam.mask_decoder.iou_prediction_head.register_forward_hook(self._capture_iou_token)

    def _capture_iou_token(self, module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._iou_token = inputs[0]

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
        return tuple(self.sam.prompt_encoder.image_embedding_size)  # type: ignore[return-value]

    @property
    def low_res_size(self) -> Tuple[int, int]:
        """(4h, 4w): size of the decoder's mask logits and of SAM's mask prompt."""
        h, w = self.embedding_size
        return 4 * h, 4 * w

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- per-frame steps -----------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """SAM's own preprocessing of one RGB frame.

        Args:
            image: (H, W, 3) uint8 RGB.
        Returns:
            (1, 3, S, S) normalised, padded input and the (h', w') size before padding.
        """
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.sam.preprocess(x), (int(resized.shape[0]), int(resized.shape[1]))

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen SAM image encoder: (B, 3, S, S) preprocessed → (B, C, h, w)."""
        return self.sam.image_encoder(images)

    def prepare_frame(self, raw: torch.Tensor, past: Optional[torch.Tensor] = None) -> FrameFeatures:
        """Upgrade one frame's embedding and derive what memory reading needs.

        Args:
            raw: (1, C, h, w) frozen encoder output.
            past: (1, W', p*p, C) pooled tokens of previous frames (most recent first).
        """
        embedding = self.upgrader(raw, past)
        return FrameFeatures(
            embedding=embedding,
            pooled=self.upgrader.pool(raw),
            key_map=self.memory_encoder.key_map(embedding),
            descriptor=raw.mean(dim=(0, 2, 3)),
        )

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
        memory: Optional[MemoryBatch],
        num_objects: int,
        multimask: bool = False,
        all_candidates: bool = False,
    ) -> DecodeOutput:
        """Segment ``num_objects`` objects on one frame.

        Args:
            frame: the frame's features.
            prompts: user prompts and/or mask priors of the objects.
            memory: their selected memory, or None (then no token is added: plain SAM).
            num_objects: N.
            multimask: predict 3 candidates and keep the one with the highest predicted IoU
                (SAM's answer to an ambiguous single click).
            all_candidates: return all four of SAM's masks in ``all_low_res_logits`` (its
                single-mask output first, then the three multimask candidates; the decoder
                computes them all in any case) and choose the single-mask output; overrides
                ``multimask``.
        """
        sparse, dense = self._encode_prompts(prompts, num_objects)
        summary = frame.embedding.new_zeros(num_objects, sparse.shape[-1])
        if memory is not None:
            mp = self.memory_prompt(frame.embedding, frame.key_map, memory.keys, memory.values, memory.padding)
            sparse = torch.cat([sparse, mp.sparse.to(sparse.dtype)], dim=1)
            if mp.dense is not None:
                dense = dense + mp.dense.to(dense.dtype)
            summary = mp.summary
        inputs = dict(
            image_embeddings=frame.embedding,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        if all_candidates:  # MaskDecoder.forward only slices what predict_masks returns
            all_logits, all_iou = self.sam.mask_decoder.predict_masks(**inputs)
        else:
            all_logits, all_iou = self.sam.mask_decoder(**inputs, multimask_output=multimask)
        iou_token = self._iou_token
        self._iou_token = None
        best = torch.zeros_like(all_iou[:, 0], dtype=torch.long) if all_candidates else all_iou.argmax(dim=1)
        rows = torch.arange(num_objects, device=all_iou.device)
        return DecodeOutput(
            low_res_logits=all_logits[rows, best][:, None],
            iou=all_iou[rows, best],
            presence_logits=self.presence_head(iou_token, summary.to(iou_token.dtype)),
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
        enc = self.memory_encoder(frame.embedding, frame.key_map, mask_logits)
        descriptor = frame.descriptor.detach().float().cpu()  # relevance scoring runs on the CPU
        ious = iou.detach().float().cpu().tolist()
        presence = presence_logits.detach().float().sigmoid().cpu().tolist()
        return [
            MemoryEntry(frame_idx, enc.keys[i], enc.values[i], descriptor, ious[i], presence[i], prompted)
            for i in range(mask_logits.shape[0])
        ]
