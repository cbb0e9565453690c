"""Motion filter (Cosmos paper sec. 3.2): dense optical flow on low-resolution frames.

Frames are sampled at ``fps`` (default 4 per second), scaled to ``size`` pixels on the long side, and
Farneback flow is computed between neighbours. Per pair, a least-squares fit of
``flow(x, y) = (tx - r*y + s*x, ty + r*x + s*y)`` about the frame center gives the camera's translation
(tx, ty), rotation r and scale s; the rest is object motion. Scores:
- ``motion``: mean flow magnitude in pixels per sampled pair, relative to the frame diagonal;
- ``shake``: mean change of the camera translation between consecutive pairs (fraction of the diagonal):
  ~0 for a still camera or a steady pan, large for a hand-held jitter;
- ``camera``: ``static``, ``pan``, ``tilt`` or ``zoom`` — the dominant camera motion.
Clips below ``min_motion`` (static) or above ``max_shake`` (shaky) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class MotionConfig:
    fps: float = 4.0  # frames per second the flow is computed at
    size: int = 96  # long side of the frames the flow sees
    min_motion: float = 0.001  # below: static (fraction of the frame diagonal per sampled pair)
    max_shake: float = 0.015  # above: shaky
    camera_threshold: float = 0.004  # camera translation / zoom below this is "static"


def _gray(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    s = size / max(h, w)
    small = cv2.resize(frame, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def camera_fit(flow: np.ndarray) -> tuple[float, float, float, float]:
    """(tx, ty, rotation, scale) of the similarity motion that best explains ``flow`` (H, W, 2)."""
    h, w = flow.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xx - (w - 1) / 2).ravel(), (yy - (h - 1) / 2).ravel()
    u, v = flow[..., 0].ravel(), flow[..., 1].ravel()
    one, zero = np.ones_like(x), np.zeros_like(x)
    a = np.concatenate([np.stack([one, zero, -y, x], 1), np.stack([zero, one, x, y], 1)])
    sol, *_ = np.linalg.lstsq(a, np.concatenate([u, v]), rcond=None)
    return tuple(float(s) for s in sol)  # type: ignore[return-value]


def motion_scores(frames: np.ndarray, fps: float, cfg: MotionConfig | None = None) -> dict:
    """Scores of a clip (uint8 (T, H, W, 3) at ``fps``); see the module docstring."""
    cfg = cfg or MotionConfig()
    step = max(1, round(fps / cfg.fps))
    picks = frames[::step]
    if len(picks) < 2:
        picks = frames[[0, -1]] if len(frames) > 1 else frames[[0, 0]]
    grays = [_gray(f, cfg.size) for f in picks]
    diag = float(np.hypot(*grays[0].shape))
    mags, cams = [], []
    for a, b in zip(grays[:-1], grays[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()) / diag)
        tx, ty, _, s = camera_fit(flow)
        cams.append((tx / diag, ty / diag, s * 0.5))  # scale -> edge displacement as a fraction of the diagonal
    cams_a = np.asarray(cams)
    motion = float(np.mean(mags))
    t = cams_a[:, :2]
    # jitter: how much the camera translation changes from one pair to the next (a steady pan: ~0)
    shake = float(np.linalg.norm(np.diff(t, axis=0), axis=1).mean()) if len(t) >= 3 else 0.0
    mean = np.abs(cams_a.mean(axis=0))
    if mean.max() < cfg.camera_threshold:
        camera = "static"
    else:
        camera = ("pan", "tilt", "zoom")[int(np.argmax(mean))]
    return {"motion": motion, "shake": shake, "camera": camera,
            "camera_tx": float(cams_a[:, 0].mean()), "camera_ty": float(cams_a[:, 1].mean()),
            "camera_zoom": float(cams_a[:, 2].mean())}


def motion_decision(scores: dict, cfg: MotionConfig | None = None) -> str | None:
    """Why a clip is dropped (None: kept)."""
    cfg = cfg or MotionConfig()
    if scores["motion"] < cfg.min_motion:
        return f"static: motion {scores['motion']:.4f} < {cfg.min_motion}"
    if scores["shake"] > cfg.max_shake:
        return f"shaky: shake {scores['shake']:.4f} > {cfg.max_shake}"
    return None
