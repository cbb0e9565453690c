"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple",
sec. 3), the bottleneck of the discrete Cosmos tokenizers (Cosmos paper, sec. 4.1: levels [8,8,8,5,5,5]
give a 64,000-entry implicit codebook).

Pure functions; the code dimension is the last axis. Each channel i is bounded to L_i values with a
shifted tanh, rounded with a straight-through gradient, and divided by L_i // 2, so codes lie in [-1, 1]
(even L: -1 .. 1 - 2/L; odd L: -1 .. 1). Index = sum_i digit_i · prod_{j<i} L_j with digit_i in
0 .. L_i - 1: indices run over 0 .. prod(L) - 1.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def codebook_size(levels: Sequence[int]) -> int:
    return math.prod(levels)


def _levels(levels: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(levels), dtype=torch.float32, device=like.device)


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer; the gradient passes through unchanged (straight-through estimator)."""
    return z + (z.round() - z).detach()


def fsq_bound(z: torch.Tensor, levels: Sequence[int], eps: float = 1e-3) -> torch.Tensor:
    """Squash each channel into (-L/2 - eps', L/2 + eps') with the half-step offset for even L, so that
    rounding gives exactly L integers: -L//2 .. (L-1)//2."""
    lv = _levels(levels, z)
    half = (lv - 1) * (1 + eps) / 2
    offset = torch.where(lv % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half)
    return torch.tanh(z + shift) * half - offset


def fsq_quantize(z: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Continuous (..., D) -> codes (..., D) in [-1, 1], differentiable through ``round_ste``."""
    half_width = (_levels(levels, z) // 2)
    return round_ste(fsq_bound(z, levels)) / half_width


def codes_to_indices(codes: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Codes (..., D) -> int64 indices (...) in 0 .. prod(levels) - 1."""
    lv = _levels(levels, codes)
    half_width = lv // 2
    digits = (codes.float() * half_width + half_width).round().long()
    basis = torch.cumprod(torch.cat([torch.ones_like(lv[:1]), lv[:-1]]), 0).long()
    return (digits * basis).sum(dim=-1)


def indices_to_codes(indices: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Int indices (...) -> float32 codes (..., D), the exact inverse of ``codes_to_indices``."""
    lv = _levels(levels, indices).long()
    basis = torch.cumprod(torch.cat([torch.ones_like(lv[:1]), lv[:-1]]), 0)
    digits = (indices.long().unsqueeze(-1) // basis) % lv
    half_width = lv // 2
    return (digits - half_width).float() / half_width.float()
