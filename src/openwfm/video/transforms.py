"""Frame-array transforms and the tensor convention.

IO boundaries use ``uint8 (T, H, W, 3)``; models use float ``(B, C, T, H, W)`` in ``[-1, 1]``
(design.md section 3). Resizing uses OpenCV per frame: area averaging to shrink, bicubic to grow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported on first use: video IO alone should not pay for it
    import torch


def _check(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    return frames


def resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize every frame to ``size = (H, W)``."""
    frames = _check(frames)
    h, w = size
    if (h, w) == frames.shape[1:3]:
        return frames
    shrink = h * w < frames.shape[1] * frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def resize_short_side(frames: np.ndarray, short: int) -> np.ndarray:
    """Resize so that the shorter side is ``short``, keeping the aspect ratio."""
    h, w = _check(frames).shape[1:3]
    scale = short / min(h, w)
    return resize(frames, (max(1, round(h * scale)), max(1, round(w * scale))))


def center_crop(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the central ``size = (H, W)`` window; the window must fit."""
    frames = _check(frames)
    h, w = size
    H, W = frames.shape[1:3]
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} is larger than the frames {H}x{W}; pad first")
    top, left = (H - h) // 2, (W - w) // 2
    return frames[:, top:top + h, left:left + w]


def pad(frames: np.ndarray, size: tuple[int, int], mode: str = "constant", value: int = 0) -> np.ndarray:
    """Pad symmetrically to ``size = (H, W)``; ``mode`` is ``constant``, ``edge`` or ``reflect``."""
    frames = _check(frames)
    H, W = frames.shape[1:3]
    h, w = size
    if h < H or w < W:
        raise ValueError(f"pad target {h}x{w} is smaller than the frames {H}x{W}; crop first")
    top, left = (h - H) // 2, (w - W) // 2
    widths = ((0, 0), (top, h - H - top), (left, w - W - left), (0, 0))
    if mode == "constant":
        return np.pad(frames, widths, mode="constant", constant_values=value)
    if mode in ("edge", "reflect"):
        return np.pad(frames, widths, mode=mode)
    raise ValueError(f"unknown pad mode '{mode}': use constant, edge or reflect")


def pad_to_multiple(frames: np.ndarray, multiple: int, mode: str = "edge") -> np.ndarray:
    """Pad H and W up to the next multiple (e.g. 2 for yuv420p, 8 or 16 for tokenizers)."""
    H, W = _check(frames).shape[1:3]
    return pad(frames, (-(-H // multiple) * multiple, -(-W // multiple) * multiple), mode=mode)


def to_tensor(frames: np.ndarray) -> "torch.Tensor":
    """``uint8 (T, H, W, 3)`` -> float32 ``(3, T, H, W)`` in ``[-1, 1]``; a leading batch axis is kept."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) or (B, T, H, W, 3), got {frames.dtype} {frames.shape}")
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -4).contiguous()  # channels before time


def from_tensor(x: "torch.Tensor") -> np.ndarray:
    """float ``(3, T, H, W)`` or ``(B, 3, T, H, W)`` in ``[-1, 1]`` -> ``uint8 (..., T, H, W, 3)``; clamps."""
    if x.ndim not in (4, 5) or x.shape[-4] != 3:
        raise ValueError(f"expected (3, T, H, W) or (B, 3, T, H, W), got {tuple(x.shape)}")
    import torch

    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.movedim(-4, -1).cpu().numpy()
