"""Aspect-ratio buckets: a few frame shapes of about the same area, so that every sample trains near its
own aspect ratio and the samples of a batch share one shape.

A bucket is named ``"W:H"`` (width to height, e.g. ``"16:9"`` is landscape). A sample goes to the bucket
nearest its aspect ratio, is resized to fit inside the bucket's frame and reflection-padded to fill it;
a mask marks the real pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DEFAULT_BUCKETS = ("1:1", "3:4", "4:3", "9:16", "16:9")
ASPECT_WEIGHT = 4.0  # how much more a log aspect error costs than a log area error


def parse_bucket(name: str) -> tuple[int, int]:
    """``"16:9"`` -> ``(16, 9)`` = (width, height) ratio."""
    try:
        w, h = (int(x) for x in name.split(":"))
    except ValueError:
        raise ValueError(f"bucket '{name}': expected 'W:H' with positive integers, e.g. '16:9'") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"bucket '{name}': width and height ratios must be positive")
    return w, h


def bucket_size(resolution: int, name: str, multiple: int = 16) -> tuple[int, int]:
    """``(h, w)`` of bucket ``name``: multiples of ``multiple`` with ``h * w`` close to ``resolution ** 2``.

    Rule: the ideal frame is ``h = resolution / sqrt(r)``, ``w = resolution * sqrt(r)`` for ``r = W / H``.
    Each side is rounded down and up to a multiple; of the four pairs the one with the least
    ``ASPECT_WEIGHT * |log aspect error| + |log area error|`` wins (ties keep the smaller frame).
    E.g. resolution 256: 1:1 -> 256x256, 4:3 -> 224x304, 16:9 -> 192x336 (h x w). Below about
    ``4 * multiple`` the choice is coarse (at 32 with multiple 16, 4:3 and 16:9 are both 32x48).
    """
    if resolution <= 0 or multiple <= 0:
        raise ValueError(f"resolution and multiple must be positive, got {resolution} and {multiple}")
    bw, bh = parse_bucket(name)
    r = bw / bh
    ideal_h, ideal_w = resolution / math.sqrt(r), resolution * math.sqrt(r)

    def around(x: float) -> list[int]:
        lo = max(multiple, math.floor(x / multiple) * multiple)
        return sorted({lo, max(multiple, math.ceil(x / multiple) * multiple)})

    def cost(hw: tuple[int, int]) -> tuple[float, int]:
        h, w = hw
        err = ASPECT_WEIGHT * abs(math.log(w / h / r)) + abs(math.log(h * w / resolution ** 2))
        return round(err, 9), h * w

    return min(((h, w) for h in around(ideal_h) for w in around(ideal_w)), key=cost)


def bucket_sizes(resolution: int, buckets=DEFAULT_BUCKETS, multiple: int = 16) -> dict[str, tuple[int, int]]:
    """``{name: (h, w)}`` for every bucket; see ``bucket_size`` for the rounding rule."""
    return {name: bucket_size(resolution, name, multiple) for name in buckets}


def nearest_bucket(width: int, height: int, buckets=DEFAULT_BUCKETS) -> str:
    """The bucket whose aspect ratio is nearest ``width / height`` in log space (first one on ties)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if not buckets:
        raise ValueError("no buckets to choose from")
    a = math.log(width / height)

    def dist(name: str) -> float:
        bw, bh = parse_bucket(name)
        return abs(math.log(bw / bh) - a)

    return min(buckets, key=dist)


def fit_to_bucket(frames: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``uint8 (T, H, W, 3)`` frames, keeping their aspect ratio, to fit inside ``size = (h, w)``,
    center them, and fill the rest by reflection (``reflect``: the edge pixel is not repeated; pads wider
    than the content reflect again). Returns the frames ``(T, h, w, 3)`` and a bool mask ``(h, w)``
    that is True on real pixels. Shrinking uses area averaging, growing bilinear interpolation."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    h, w = size
    H, W = frames.shape[1:3]
    scale = min(h / H, w / W)
    nh, nw = min(h, max(1, round(H * scale))), min(w, max(1, round(W * scale)))
    if (nh, nw) != (H, W):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (nw, nh), interpolation=interp) for f in frames])
    top, left = (h - nh) // 2, (w - nw) // 2
    if (nh, nw) != (h, w):
        frames = np.pad(frames, ((0, 0), (top, h - nh - top), (left, w - nw - left), (0, 0)), mode="reflect")
    mask = np.zeros((h, w), dtype=bool)
    mask[top:top + nh, left:left + nw] = True
    return np.ascontiguousarray(frames), mask
