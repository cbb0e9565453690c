"""3D rotary position embedding of the Cosmos DiT (Cosmos paper sec. 5.1; Su et al. 2021).

A head of D channels is split into time, height and width parts: h and w get D // 6 * 2 channels each
(42 of 128), t the rest (44). Each part rotates its channel pairs by angle position * theta^(-2i/d) with
theta = 10000 scaled for NTK-aware extrapolation (theta * s^(d / (d - 2)) for a length scale s). Temporal
positions are frame indices times base_fps / fps, so clips of other frame rates keep their time axis.
Pairs are (i, i + D/2) ("rotate half"), with the angles laid out as [t | h | w] in each half.
"""

from __future__ import annotations

import torch


def _freqs(dim: int, scale: float) -> torch.Tensor:
    theta = 10000.0 * scale ** (dim / (dim - 2)) if dim > 2 else 10000.0
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim)


def head_split(head_dim: int) -> tuple[int, int, int]:
    """(t, h, w) channels of a head: 44/42/42 for 128."""
    d_h = head_dim // 6 * 2
    return head_dim - 2 * d_h, d_h, d_h


def rope_angles(t: int, h: int, w: int, head_dim: int, fps: float | None = None, base_fps: float = 24.0,
                scale: tuple[float, float, float] = (1.0, 1.0, 1.0), t_offset: int = 0,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (t*h*w, head_dim) in float32, for tokens ordered t-major then h then w.
    ``fps=None`` (images) uses raw frame indices; ``t_offset`` shifts the frame positions (for a
    sequence that continues another one)."""
    d_t, d_h, d_w = head_split(head_dim)
    pos_t = torch.arange(t_offset, t_offset + t, dtype=torch.float64)
    if fps is not None:
        pos_t = pos_t / fps * base_fps
    a_t = torch.outer(pos_t, _freqs(d_t, scale[0]))[:, None, None].expand(t, h, w, -1)
    a_h = torch.outer(torch.arange(h, dtype=torch.float64), _freqs(d_h, scale[1]))[None, :, None].expand(t, h, w, -1)
    a_w = torch.outer(torch.arange(w, dtype=torch.float64), _freqs(d_w, scale[2]))[None, None].expand(t, h, w, -1)
    angles = torch.cat([a_t, a_h, a_w] * 2, dim=-1).reshape(t * h * w, head_dim)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, S, D) queries or keys by (S, D) angles; computed in float32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)
