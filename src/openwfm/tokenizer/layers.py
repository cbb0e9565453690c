"""Causal building blocks of the Cosmos tokenizers (Cosmos paper, sec. 4.1, "Architecture").

Every layer is causal in time: the output at frame t depends on input frames <= t only. Convolutions pad
time on the past side by replicating frame 0, normalization works per frame, temporal attention is
masked, and the hybrid down/upsampling keeps the first frame on its own, so 1 + k·2 frames <-> 1 + k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class CausalConv3d(nn.Conv3d):
    """3D convolution padded in time by dilation·(k_t - 1) + (1 - stride_t) copies of frame 0 (past side
    only) and with ``padding`` zeros on each side of H and W."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int] = 3,
                 stride: int | tuple[int, int, int] = 1, dilation: int | tuple[int, int, int] = 1,
                 padding: int = 0):
        kernel_size, stride, dilation = _triple(kernel_size), _triple(stride), _triple(dilation)
        if kernel_size[1] % 2 == 0 or kernel_size[2] % 2 == 0:
            raise ValueError(f"spatial kernel sizes must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                         padding=(0, padding, padding))
        self.time_pad = max(0, dilation[0] * (kernel_size[0] - 1) + (1 - stride[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1), x], dim=2)
        return super().forward(x)


def pointwise(in_channels: int, out_channels: int) -> CausalConv3d:
    """1x1x1 convolution (projections, skips, quant / post-quant convs)."""
    return CausalConv3d(in_channels, out_channels, kernel_size=1)


class FrameNorm(nn.GroupNorm):
    """GroupNorm with one group over (C, H, W) of each frame separately, so statistics never mix frames."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(num_groups=1, num_channels=channels, eps=eps, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = super().forward(x.transpose(1, 2).flatten(0, 1))  # (B·T, C, H, W)
        return y.unflatten(0, (b, -1)).transpose(1, 2)


class SpaceTimeConv(nn.Module):
    """Factorized 3x3x3 convolution: (1, 3, 3) over space, then causal (3, 1, 1) over time."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.spatial = CausalConv3d(in_channels, out_channels, kernel_size=(1, 3, 3), padding=1)
        self.temporal = CausalConv3d(out_channels, out_channels, kernel_size=(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))


class ResBlock(nn.Module):
    """Factorized residual block: norm, SiLU, space-time conv, norm, SiLU, dropout, space-time conv, plus
    a 1x1x1 skip projection when the width changes. ``checkpointing`` recomputes it in backward."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = FrameNorm(in_channels)
        self.conv1 = SpaceTimeConv(in_channels, out_channels)
        self.norm2 = FrameNorm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = SpaceTimeConv(out_channels, out_channels)
        self.skip = pointwise(in_channels, out_channels) if in_channels != out_channels else None
        self.checkpointing = False

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (x if self.skip is None else self.skip(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class Attention(nn.Module):
    """Single-head self-attention with a residual: over the H·W positions of each frame (``axis="space"``)
    or, causally masked, over the frames of each position (``axis="time"``)."""

    def __init__(self, channels: int, axis: str, dropout: float = 0.0):
        super().__init__()
        if axis not in ("space", "time"):
            raise ValueError(f"axis must be 'space' or 'time', got {axis!r}")
        self.axis = axis
        self.norm = FrameNorm(channels)
        self.q = pointwise(channels, channels)
        self.k = pointwise(channels, channels)
        self.v = pointwise(channels, channels)
        self.out = pointwise(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x)
        if self.axis == "space":  # (B, C, T, H, W) -> (B·T, 1 head, H·W, C)
            def fold(z): return z.permute(0, 2, 3, 4, 1).reshape(b * t, 1, h * w, c)
            o = F.scaled_dot_product_attention(fold(self.q(y)), fold(self.k(y)), fold(self.v(y)))
            o = o.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        else:  # (B, C, T, H, W) -> (B·H·W, 1 head, T, C)
            def fold(z): return z.permute(0, 3, 4, 2, 1).reshape(b * h * w, 1, t, c)
            o = F.scaled_dot_product_attention(fold(self.q(y)), fold(self.k(y)), fold(self.v(y)), is_causal=True)
            o = o.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x + self.dropout(self.out(o))


class HybridDownsample(nn.Module):
    """Halve H, W (stride-2 (1,3,3) conv + 2x2 average pool) and/or the frames after the first (causal
    stride-2 (3,1,1) conv + pairwise average, frame 0 duplicated in front), then a 1x1x1 projection."""

    def __init__(self, channels: int, spatial: bool, temporal: bool):
        super().__init__()
        if not (spatial or temporal):
            raise ValueError("HybridDownsample needs spatial or temporal downsampling")
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2)) if spatial else None
        self.temporal = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None
        self.proj = pointwise(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial is not None:
            x = F.pad(x, (0, 1, 0, 1))  # right/bottom, so the 3x3 stride-2 conv lands on 2x2 cells
            x = self.spatial(x) + F.avg_pool3d(x, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        if self.temporal is not None:
            x = torch.cat([x[:, :, :1], x], dim=2)  # 1 + 2k frames -> 2 + 2k: frame 0 pairs with itself
            x = self.temporal(x) + F.avg_pool3d(x, kernel_size=(2, 1, 1), stride=(2, 1, 1))
        return self.proj(x)


class HybridUpsample(nn.Module):
    """Inverse of ``HybridDownsample``: repeat frames (1 + k -> 1 + 2k) and/or pixels (nearest 2x), each
    followed by a residual conv, then a 1x1x1 projection."""

    def __init__(self, channels: int, spatial: bool, temporal: bool):
        super().__init__()
        if not (spatial or temporal):
            raise ValueError("HybridUpsample needs spatial or temporal upsampling")
        self.temporal = CausalConv3d(channels, channels, kernel_size=(3, 1, 1)) if temporal else None
        self.spatial = CausalConv3d(channels, channels, kernel_size=(1, 3, 3), padding=1) if spatial else None
        self.proj = pointwise(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal is not None:
            if x.shape[2] > 1:  # a single (image) frame stays one frame
                x = x.repeat_interleave(2, dim=2)[:, :, 1:]
            x = x + self.temporal(x)
        if self.spatial is not None:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
            x = x + self.spatial(x)
        return self.proj(x)
