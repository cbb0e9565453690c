"""Reconstruction quality of a tokenizer on video files: PSNR, SSIM, perceptual distance per clip, and
FD-EffNet (Fréchet distance of EfficientNet-Lite0 video features; not FVD — pass ``i3d`` for FVD)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from openwfm.evaluate.metrics import I3DFeatures, fd_effnet, fvd, perceptual_distance, psnr, ssim
from openwfm.tokenizer import api
from openwfm.tokenizer.model import Tokenizer


def clip_of(path: str | os.PathLike, model: Tokenizer, num_frames: int, size: int, start: int = 0) -> torch.Tensor:
    """``num_frames`` frames of a video from frame ``start``, short side resized to ``size`` and center-cropped to a
    multiple of the spatial compression, as (1, 3, T, H, W) in [-1, 1] with T padded to 1 + k*t."""
    from openwfm.video import read_video
    from openwfm.video.transforms import center_crop, resize_short_side

    frames = read_video(path, start, start + num_frames).frames
    if size:
        frames = resize_short_side(frames, size)
        s = model.cfg.spatial_compression
        frames = center_crop(frames, (frames.shape[1] // s * s, frames.shape[2] // s * s))
    return api.prepare(frames, model)[0]


def clip_starts(path: str | os.PathLike, num_frames: int, clips: int) -> list[int]:
    """Starts of up to ``clips`` consecutive, non-overlapping ``num_frames``-frame clips of a video (at least
    the first clip, even when the video is shorter: it is then padded)."""
    from openwfm.video import probe

    whole = max(1, probe(path).num_frames // num_frames)
    return [i * num_frames for i in range(min(clips, whole))]


def evaluate(model: Tokenizer, videos: list[Path], num_frames: int = 17, size: int = 128,
             i3d: str | None = None, progress=None, clips: int = 1) -> dict:
    """Per-clip metrics (up to ``clips`` consecutive clips per video) and the set-level distribution
    distance."""
    rows, real, fake = [], [], []
    for path, start in [(p, s) for p in videos for s in clip_starts(p, num_frames, clips)]:
        x = clip_of(path, model, num_frames, size, start)
        t0 = time.perf_counter()
        x_hat = api.decode(model, api.encode(model, x)).clamp(-1, 1)
        dt = time.perf_counter() - t0
        rows.append({"video": str(path), "start": start, "frames": x.shape[2], "size": f"{x.shape[3]}x{x.shape[4]}",
                     "psnr": float(psnr(x, x_hat)[0]), "ssim": float(ssim(x, x_hat)[0]),
                     "perceptual": float(perceptual_distance(x, x_hat)[0]), "seconds": dt})
        real.append(x[0])
        fake.append(x_hat[0])
        if progress is not None:
            progress(path)
    summary = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr", "ssim", "perceptual")}
    summary["clips"] = len(rows)
    if len(rows) >= 2:  # a distribution distance needs a set; clips of one size only
        shapes = {tuple(v.shape) for v in real}
        if len(shapes) == 1:
            summary["fd_effnet"] = fd_effnet(torch.stack(real), torch.stack(fake))
            if i3d:
                summary["fvd"] = fvd(torch.stack(real), torch.stack(fake), I3DFeatures(i3d))
    return {"tokenizer": model.cfg.kind, "rows": rows, "summary": summary}
