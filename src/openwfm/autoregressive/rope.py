"""3D rotary positions of the autoregressive WFM, with YaRN-style frequency scaling (Cosmos paper sec. 5.2).

Tokens are a (T, H, W) grid flattened t-major. A head of D channels splits into t / h / w parts (44 / 42 /
42 of 128, as in the DiT: ``diffusion.rope.head_split``); each part rotates channel pairs (i, i + D/2) by
``position * f_i`` with ``f_i = theta^(-2i/d)`` (theta 500,000 in Cosmos' AR models).

YaRN (Peng et al. 2023), in the per-frequency form Cosmos and Llama 3.1 use, extends an axis trained on L
positions to ``scale`` x L: frequencies whose wavelength is short against L (more than ``beta_fast``
turns over L) are kept, those with fewer than ``beta_slow`` turns are divided by ``scale``
(interpolation), and a linear ramp blends the ones in between:

    m = clamp((f - 2 pi beta_slow / L) / (2 pi (beta_fast - beta_slow) / L), 0, 1);  f <- f ((1 - m) / scale + m)

With ``scale = 1`` the frequencies are unchanged (plain RoPE). Each axis uses its own trained length L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from openwfm.diffusion.rope import head_split


@dataclass
class YarnConfig:
    scale: float = 1.0  # context extension factor (1: plain RoPE)
    beta_fast: float = 4.0
    beta_slow: float = 1.0
    original_shape: tuple[int, int, int] = (0, 0, 0)  # trained (T, H, W); 0 = the model's latent_shape
    axes: tuple[bool, bool, bool] = (True, False, False)  # which axes are extended (Cosmos: time)


def rope_freqs(dim: int, theta: float, length: int = 0, yarn: YarnConfig | None = None) -> torch.Tensor:
    """(dim // 2,) float64 frequencies of one axis, YaRN-scaled when ``yarn.scale != 1``."""
    f = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim)
    if yarn is None or yarn.scale == 1 or length <= 0:
        return f
    lo, hi = 2 * math.pi * yarn.beta_slow / length, 2 * math.pi * yarn.beta_fast / length
    m = ((f - lo) / (hi - lo)).clamp(0, 1)
    return f * ((1 - m) / yarn.scale + m)


def rope_table(shape: tuple[int, int, int], head_dim: int, theta: float, yarn: YarnConfig | None = None,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (T*H*W, head_dim) float32, for the grid ``shape`` flattened t-major."""
    dims = head_split(head_dim)
    trained = yarn.original_shape if yarn is not None and any(yarn.original_shape) else shape
    angles = []
    for axis, (n, d) in enumerate(zip(shape, dims)):
        extend = yarn if yarn is not None and yarn.axes[axis] else None
        a = torch.outer(torch.arange(n, dtype=torch.float64), rope_freqs(d, theta, trained[axis], extend))
        view = [1, 1, 1, d // 2]
        view[axis] = n
        angles.append(a.reshape(view).expand(*shape, d // 2))
    full = torch.cat(angles * 2, dim=-1).reshape(-1, head_dim)
    return full.cos().float().to(device), full.sin().float().to(device)
