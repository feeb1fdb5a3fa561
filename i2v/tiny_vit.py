"""TinyViT-5M, the image encoder of MobileSAM and TinySAM (SAM type ``vit_t``).

Written for this package so that no extra dependency is needed; parameter names and shapes
follow MobileSAM's ``tiny_vit_sam.py`` exactly, so its checkpoints (and TinySAM's) load with
strict keys. Data flow for a 1024 px input:

    patch_embed   two stride-2 conv+BN                 (B, 3, 1024, 1024) → (B, 64, 256, 256)
    layers[0]     MBConv blocks, then patch merging    → (B, 128*128, 128) tokens
    layers[1..3]  windowed attention + depthwise conv  → (B, 64*64, 320)
    neck          as SAM's: 1x1 conv, LN, 3x3 conv, LN → (B, 256, 64, 64)

The classification head (``norm_head``, ``head``) is unused, as in MobileSAM, but kept so its
checkpoints load strictly.
"""

from __future__ import annotations

import itertools
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn


class ConvBN(nn.Sequential):
    """Bias-free convolution followed by batch norm (keys ``c`` and ``bn``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(cout)
        nn.init.constant_(bn.weight, bn_weight)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """(B, 3, S, S) → (B, dim, S/4, S/4)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(3, dim // 2, 3, 2, 1), nn.GELU(), ConvBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project; (B, C, H, W) in and out."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = ConvBN(hidden, dim, bn_weight=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) or (B, H*W, C) tokens → (B, H'*W', C') tokens (H' = H / stride)."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.transpose(1, 2).reshape(x.shape[0], -1, self.resolution, self.resolution)
        x = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention within a window, with a learned bias per head and relative offset."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict = {}
        idxs = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets)) for a in points for b in points]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.attention_bias_idxs: torch.Tensor
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (B, N, C), N = window * window."""
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim).split(self.head_dim, dim=3)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, N, d)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + bias
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention, a 3x3 depthwise conv, an MLP; (B, H*W, C) in and out."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = w = self.resolution
        s = self.window
        if h == s:
            y = self.attn(x)
        else:
            y = x.view(b, h, w, c)
            pad = (s - h % s) % s  # pad right and bottom up to whole windows
            y = F.pad(y, (0, 0, 0, pad, 0, pad))
            nw = (h + pad) // s
            y = y.view(b, nw, s, nw, s, c).transpose(2, 3).reshape(b * nw * nw, s * s, c)
            y = self.attn(y)
            y = y.view(b, nw, nw, s, s, c).transpose(2, 3).reshape(b, h + pad, w + pad, c)
            y = y[:, :h, :w].reshape(b, n, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """A stage's blocks followed by an optional patch merging (key ``downsample``)."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: "PatchMerging | None") -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT image encoder with SAM's neck: (B, 3, S, S) → (B, out_chans, S/16, S/16).

    Args:
        img_size: side of the square input (1024 for MobileSAM).
        embed_dims, depths, num_heads, window_sizes: per stage (stage 0 is convolutional, so
            its heads and window are unused).
        out_chans: channels of the embedding (SAM's prompt dimension).
    """

    def __init__(
        self,
        img_size: int = 1024,
        embed_dims: Tuple[int, ...] = (64, 128, 160, 320),
        depths: Tuple[int, ...] = (2, 2, 6, 2),
        num_heads: Tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: Tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        out_chans: int = 256,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if img_size % 16:
            raise ValueError(f"TinyViT needs an input side divisible by 16, got {img_size}.")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(embed_dims[0])
        # Resolutions: S/4 for stage 0, then halved by each merge except the last (stride 1),
        # so the final stages run at S/16, SAM's embedding size.
        res = img_size // 4
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            last = i == len(embed_dims) - 1
            stride = 1 if i == len(embed_dims) - 2 else 2
            down = None if last else PatchMerging(res, dim, embed_dims[i + 1], stride)
            if i == 0:
                blocks: list = [MBConv(dim, mbconv_expand_ratio) for _ in range(depths[i])]
            else:
                blocks = [TinyViTBlock(dim, res, num_heads[i], window_sizes[i], mlp_ratio) for _ in range(depths[i])]
            self.layers.append(Stage(blocks, down))
            if not last:
                res //= stride
        self.embedding_size = res
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed → (B, out_chans, S/16, S/16)."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.embedding_size, self.embedding_size, c).permute(0, 3, 1, 2)
        return self.neck(x)
