"""3D Haar wavelet patcher and its exact inverse (Cosmos paper, sec. 4.1, "Architecture").

One level filters the video along T, then H, then W with the low-pass [1/sqrt2, 1/sqrt2] and the
high-pass [1/sqrt2, -1/sqrt2] at stride 2, giving 8 sub-bands stacked on the channel axis, band-major:
``lll, llh, lhl, lhh, hll, hlh, hhl, hhh`` (letters in T, H, W order), each band holding all C input
channels. As in NVIDIA's released code every level is rescaled by 1/sqrt8, so the ``lll`` band is the
mean of each 2x2x2 block.

``haar_patch`` runs log2(patch_size) levels after repeating the first frame ``patch_size`` times, so a
causal clip of 1 + k·p frames becomes 1 + k frames and a single image becomes one frame;
``haar_unpatch`` inverts the levels and drops the p - 1 extra copies of the first frame.
"""

from __future__ import annotations

import math

import torch

_R2 = 1.0 / math.sqrt(2.0)  # the filter taps
_RESCALE = 1.0 / math.sqrt(8.0)  # per-level rescale of the released code


def _analysis(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Low and high band of ``x`` along ``dim`` (even length) at stride 2."""
    a, b = x.unflatten(dim, (-1, 2)).unbind(dim + 1)
    return (a + b) * _R2, (a - b) * _R2


def _synthesis(low: torch.Tensor, high: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of ``_analysis``: interleave the two reconstructed samples along ``dim``."""
    a, b = (low + high) * _R2, (low - high) * _R2
    return torch.stack([a, b], dim=dim + 1).flatten(dim, dim + 1)


def haar_dwt3d(x: torch.Tensor) -> torch.Tensor:
    """One level: (B, C, T, H, W) with even T, H, W -> (B, 8C, T/2, H/2, W/2)."""
    if x.ndim != 5 or any(n % 2 for n in x.shape[2:]):
        raise ValueError(f"haar_dwt3d needs (B, C, T, H, W) with even T, H, W, got {tuple(x.shape)}")
    bands = []
    for xt in _analysis(x, 2):
        for xth in _analysis(xt, 3):
            bands.extend(_analysis(xth, 4))
    return torch.cat(bands, dim=1) * _RESCALE


def haar_idwt3d(y: torch.Tensor) -> torch.Tensor:
    """Inverse of ``haar_dwt3d``: (B, 8C, T, H, W) -> (B, C, 2T, 2H, 2W)."""
    if y.ndim != 5 or y.shape[1] % 8:
        raise ValueError(f"haar_idwt3d needs (B, 8C, T, H, W), got {tuple(y.shape)}")
    b = (y / _RESCALE).chunk(8, dim=1)
    w_merged = [_synthesis(b[i], b[i + 1], 4) for i in range(0, 8, 2)]  # ll, lh, hl, hh
    h_merged = [_synthesis(w_merged[i], w_merged[i + 1], 3) for i in range(0, 4, 2)]  # l, h
    return _synthesis(h_merged[0], h_merged[1], 2)


def _levels(patch_size: int) -> int:
    levels = int(math.log2(patch_size)) if patch_size >= 1 else -1
    if levels < 0 or 2 ** levels != patch_size:
        raise ValueError(f"patch_size must be a power of 2, got {patch_size}")
    return levels


def haar_patch(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C·p³, (T + p - 1)/p, H/p, W/p), the first frame repeated p times first."""
    levels = _levels(patch_size)
    if levels == 0:
        return x
    x = torch.cat([x[:, :, :1].expand(-1, -1, patch_size - 1, -1, -1), x], dim=2)
    for _ in range(levels):
        x = haar_dwt3d(x)
    return x


def haar_unpatch(y: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of ``haar_patch``: (B, C·p³, T', H', W') -> (B, C, p·T' - p + 1, p·H', p·W')."""
    levels = _levels(patch_size)
    for _ in range(levels):
        y = haar_idwt3d(y)
    return y[:, :, patch_size - 1:]
