"""Rate-distortion of the trained tokenizers, with H.264 on the same clips as the reference.

Rate is bits per pixel (bpp; raw RGB is 24) and the compression ratio 24 / bpp:
- continuous tokenizer: its latent stored at 16 bits (fp16), then uniformly quantized to 8, 6 and 4 bits
  per value (uniformly over each channel's range in the clip: 2 numbers per channel of side information, not
  counted); one tokenizer, several points of the curve. (Until 2026-12-07 the range was +-4 latent std from
  the tokenizer's config; a shortcut tokenizer's config holds one std shared by its PCA-like channels, which
  clipped its first channel, so the range is now measured per channel; cv4x8x8-s moves by <= 0.16 dB);
- discrete tokenizer: log2(codebook) = 15.97 bits per token (no entropy coding);
- H.264 (libx264, yuv420p, medium preset): the whole mp4 file, header included, at several CRFs.
Distortion is PSNR / SSIM of the reconstruction in RGB. Clips are 17 frames of held-out video. The last
column compares each tokenizer point to H.264 at the same rate (PSNR interpolated over H.264's CRF curve).

    python benchmarks/rate_distortion.py                       # shipped tokenizers, held-out sim + real
    python benchmarks/rate_distortion.py -c runs/tok --videos a.mp4 b.mp4
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from openwfm.evaluate.metrics import psnr, ssim
from openwfm.tokenizer import api
from openwfm.evaluate.tokenizer import clip_of, clip_starts
from openwfm.tokenizer.fsq import indices_to_codes
from openwfm.tokenizer.pretrained import shipped
from openwfm.video import read_video, write_video
from openwfm.video.transforms import from_tensor, to_tensor

CRFS = (12, 20, 28, 36, 44, 51)


def quantize(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform ``bits``-bit quantization of each channel of (B, C, T, H, W) over its range (16: fp16 storage)."""
    if bits == 16:
        return z.half().float()
    lo = z.amin(dim=(0, 2, 3, 4), keepdim=True)
    step = (z.amax(dim=(0, 2, 3, 4), keepdim=True) - lo).clamp_min(1e-8) / (2 ** bits - 1)
    q = torch.round((z - lo) / step).clamp(0, 2 ** bits - 1)
    return q * step + lo


def h264_points(x: torch.Tensor, fps: float = 12.0) -> list[tuple[float, float, float]]:
    """(bpp, PSNR, SSIM) of H.264 at each CRF for one clip (1, 3, T, H, W)."""
    frames = from_tensor(x[0])
    t, h, w = frames.shape[:3]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for crf in CRFS:
            path = write_video(Path(tmp) / f"{crf}.mp4", frames, fps, crf=crf)
            y = to_tensor(read_video(path).frames)[None]
            out.append((path.stat().st_size * 8 / (t * h * w), float(psnr(x, y)[0]), float(ssim(x, y)[0])))
    return out


def tokenizer_points(model, x: torch.Tensor, name: str) -> list[tuple[str, float, float, float]]:
    """(label, bpp, PSNR, SSIM) of one tokenizer (labelled ``name``) on one clip."""
    cfg, pixels = model.cfg, x.shape[2] * x.shape[3] * x.shape[4]
    z = api.encode(model, x)
    if cfg.discrete:
        y = api.decode(model, z).clamp(-1, 1)
        bpp = z.numel() * math.log2(cfg.codebook_size) / pixels
        return [(f"{name} ({cfg.kind}) FSQ indices", bpp, float(psnr(x, y)[0]), float(ssim(x, y)[0]))]
    points = []
    for bits in (16, 8, 6, 4):
        y = api.decode(model, quantize(z, bits)).clamp(-1, 1)
        points.append((f"{name} ({cfg.kind}) latent @ {bits} bit", z.numel() * bits / pixels, float(psnr(x, y)[0]),
                       float(ssim(x, y)[0])))
    return points


def interp_psnr(curve: list[tuple[float, float]], bpp: float) -> float:
    """H.264 PSNR at ``bpp`` (linear in log bpp between CRF points; clamped at the ends)."""
    curve = sorted(curve)
    xs, ys = np.log([c[0] for c in curve]), [c[1] for c in curve]
    return float(np.interp(math.log(bpp), xs, ys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--checkpoint", action="append", help="tokenizer run/checkpoint/shipped name "
                    "(repeatable; default: every shipped tokenizer)")
    ap.add_argument("--videos", nargs="+", type=Path, required=True, help="held-out videos (or directories)")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128, help="short side")
    ap.add_argument("--clips", type=int, default=2, help="clips per video")
    args = ap.parse_args()
    torch.manual_seed(0)
    names = args.checkpoint or shipped()
    models = [api.load_tokenizer(n) for n in names]
    files = [f for p in args.videos for f in (sorted(p.rglob("*.mp4")) if p.is_dir() else [p])]
    rows: dict[str, list[tuple[float, float, float]]] = {}
    h264: list[list[tuple[float, float, float]]] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for f in files:
            for start in clip_starts(f, args.frames, args.clips):
                x = clip_of(f, models[0], args.frames, args.size, start)
                h264.append(h264_points(x))
                for name, m in zip(names, models):
                    for label, bpp, p, s in tokenizer_points(m, x, Path(str(name)).name):
                        rows.setdefault(label, []).append((bpp, p, s))
    n = len(h264)
    curve = [(float(np.mean([c[i][0] for c in h264])), float(np.mean([c[i][1] for c in h264]))) for i in range(len(CRFS))]
    print(f"{n} clips of {args.frames} frames from {len(files)} videos, short side {args.size} "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print(f"| method | bpp | compression | PSNR dB | SSIM | H.264 PSNR at this bpp | ours - H.264 dB |")
    print("|---|---|---|---|---|---|---|")
    for label, pts in rows.items():
        bpp, p, s = (float(np.mean([q[i] for q in pts])) for i in range(3))
        ref = interp_psnr(curve, bpp)
        print(f"| {label} | {bpp:.3f} | {24 / bpp:.0f}x | {p:.2f} | {s:.4f} | {ref:.2f} | {p - ref:+.2f} |")
    for i, crf in enumerate(CRFS):
        bpp, p, s = (float(np.mean([c[i][k] for c in h264])) for k in range(3))
        print(f"| H.264 crf {crf} | {bpp:.3f} | {24 / bpp:.0f}x | {p:.2f} | {s:.4f} | | |")


if __name__ == "__main__":
    main()
