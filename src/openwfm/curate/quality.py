"""Visual-quality scores (Cosmos paper sec. 3.2), measured on a few frames of a clip:

- ``sharpness``: variance of the Laplacian of the gray frame at 256 px (blurry footage scores low);
- ``exposure``: mean luminance in [0, 1] and the fraction of clipped pixels (< 2/255 or > 253/255);
- ``noise``: Immerkaer's (1996) estimate of Gaussian noise std in gray levels, on a native-resolution
  center crop (scaling down would average the noise away) — high for grainy footage.
Each score is the minimum (sharpness) or maximum (clipping, noise) over the sampled frames: a clip is as
good as its worst frame, as in the paper's min over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class QualityConfig:
    frames: int = 4  # frames sampled evenly from the clip
    size: int = 256  # long side the measures run at
    min_sharpness: float = 40.0
    max_clipped: float = 0.4  # fraction of pixels at black or white
    min_brightness: float = 0.06
    max_brightness: float = 0.94
    max_noise: float = 12.0


def _gray(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(1.0, size / max(h, w))
    if s < 1:
        frame = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkaer's fast noise variance estimation: sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M|."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return 0.0
    r = cv2.filter2D(gray.astype(np.float32), -1, _IMMERKAER)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).sum() / (6 * (w - 2) * (h - 2)))


def frame_quality(frame: np.ndarray, size: int = 256) -> dict:
    g = _gray(frame, size)
    sharp = float(cv2.Laplacian(g, cv2.CV_32F).var())
    h, w = frame.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    native = cv2.cvtColor(np.ascontiguousarray(frame[y:y + size, x:x + size]), cv2.COLOR_RGB2GRAY)
    clipped = float(((g < 2) | (g > 253)).mean())
    return {"sharpness": sharp, "brightness": float(g.mean() / 255), "clipped": clipped,
            "noise": noise_sigma(native)}


def quality_scores(frames: np.ndarray, cfg: QualityConfig | None = None) -> dict:
    cfg = cfg or QualityConfig()
    idx = np.linspace(0, len(frames) - 1, min(cfg.frames, len(frames))).round().astype(int)
    per = [frame_quality(frames[i], cfg.size) for i in idx]
    return {"sharpness": min(p["sharpness"] for p in per), "brightness": float(np.mean([p["brightness"] for p in per])),
            "clipped": max(p["clipped"] for p in per), "noise": max(p["noise"] for p in per)}


def quality_decision(scores: dict, cfg: QualityConfig | None = None) -> str | None:
    """Why a clip is dropped for its looks (None: kept)."""
    cfg = cfg or QualityConfig()
    if not cfg.min_brightness <= scores["brightness"] <= cfg.max_brightness:
        return f"badly exposed: brightness {scores['brightness']:.2f}"
    if scores["clipped"] > cfg.max_clipped:
        return f"badly exposed: {scores['clipped']:.0%} of pixels clipped"
    if scores["sharpness"] < cfg.min_sharpness:
        return f"blurry: sharpness {scores['sharpness']:.1f} < {cfg.min_sharpness:g}"
    if scores["noise"] > cfg.max_noise:
        return f"noisy: noise {scores['noise']:.1f} > {cfg.max_noise:g}"
    return None
