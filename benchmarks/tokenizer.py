"""Tokenizer encode + decode wall time: openwfm's Cosmos tokenizer vs diffusers' AutoencoderKLCosmos, same run.

    python benchmarks/tokenizer.py [--presets CV8x8x8,CV4x8x8,tiny-CV8x8x8] [--size 128] [--frames 17]
                                   [--repeats 5] [--threads N]

For each preset, diffusers' model is built with random weights from the matching config
(``config_to_diffusers``) and the very same weights are loaded into ours (``from_diffusers``). Both encode
the same clip (1 x 3 x frames x size x size, uniform in [-1, 1], fp32, ``torch.no_grad``) and decode their
own latent. After one warm-up call each, the two models alternate for ``--repeats`` rounds (who goes first
swaps every round, so drift on a shared machine hits both alike); the table shows medians. The outputs
must agree: max |ours - diffusers| <= 1e-4 for the latent and for the reconstruction.

    python benchmarks/tokenizer.py --memory [--presets small-CV8x8x8] [--frames 121] [--height 720]
                                   [--width 1280] [--max-memory 4GiB]

Memory mode: each preset (random init, seeded) round-trips a synthetic uint8 clip (moving squares on a
gradient) in its own process through ``api.plan_for`` / ``encode_frames`` / ``decode_frames``, as
``wfm tokenizer roundtrip`` does; the table gives the plan chosen for the budget, the estimated and the
measured peak RSS of the whole process, the seconds, and beside them what an untiled, unchunked round trip
would need (the estimate: it would not fit to be measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from openwfm.config import get_preset
from openwfm.tokenizer import Tokenizer, TokenizerConfig, config_to_diffusers, from_diffusers, num_params

TOLERANCE = 1e-4


def build(preset: str, seed: int):
    from diffusers import AutoencoderKLCosmos

    cfg = get_preset(TokenizerConfig, preset)
    torch.manual_seed(seed)
    ref = AutoencoderKLCosmos(**config_to_diffusers(cfg)).eval()
    ours = Tokenizer(cfg).eval()
    ours.load_state_dict(from_diffusers(ref.state_dict()), strict=True)
    return cfg, ours, ref


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cache_mib(model: torch.nn.Module) -> float:
    """Memory held by our inference-only weight caches (kernels derived from the weights, kept between calls)."""
    def size(v) -> int:
        if isinstance(v, torch.Tensor):
            return v.numel() * v.element_size()
        return sum(size(u) for u in v) if isinstance(v, (tuple, list)) else 0
    return sum(size(hit[1:]) for m in model.modules() for hit in getattr(m, "_weight_cache", {}).values()) / 2 ** 20


def bench(preset: str, frames: int, size: int, repeats: int, seed: int) -> dict:
    cfg, ours, ref = build(preset, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, cfg.in_channels, frames, size, size, generator=g) * 2 - 1

    def run_ours():
        z = ours.encode(x)
        return z, ours.decode(z)

    def run_ref():
        z = ref.encode(x).latent_dist.mode()
        return z, ref.decode(z).sample

    with torch.no_grad():
        _, (z_ours, y_ours) = timed(run_ours)  # warm-up (also builds our weight caches)
        _, (z_ref, y_ref) = timed(run_ref)
        t_ours, t_ref = [], []
        for r in range(repeats):
            order = ((t_ours, run_ours), (t_ref, run_ref)) if r % 2 == 0 else ((t_ref, run_ref), (t_ours, run_ours))
            for times, fn in order:
                times.append(timed(fn)[0])
    return dict(preset=cfg.kind if not preset.startswith("tiny") else preset, params=num_params(ours),
                shape=f"{frames}x{size}x{size}", latent="x".join(map(str, z_ours.shape[2:])),
                ours=statistics.median(t_ours), ref=statistics.median(t_ref),
                spread_ours=(min(t_ours), max(t_ours)), spread_ref=(min(t_ref), max(t_ref)),
                dz=(z_ours - z_ref).abs().max().item(), dy=(y_ours - y_ref).abs().max().item(),
                cache=cache_mib(ours))


def memory_one(preset: str, frames: int, height: int, width: int, max_memory: str, seed: int) -> dict:
    """One round trip under a budget, in this process (run in a fresh one: ru_maxrss is the process peak)."""
    import resource

    import numpy as np

    from openwfm.tokenizer import api
    from openwfm.tokenizer.memory import estimate

    cfg = get_preset(TokenizerConfig, preset)
    torch.manual_seed(seed)
    model = Tokenizer(cfg).eval()
    yy, xx = np.mgrid[:height, :width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):  # a gradient background and a square moving across it
        clip[i, ..., 0], clip[i, ..., 1], clip[i, ..., 2] = xx * 255 // width, yy * 255 // height, 128
        y0, x0 = height // 3, (i * 7) % max(1, width - 64)
        clip[i, y0:y0 + 64, x0:x0 + 64] = (230, 40, 40)
    f, kept = api.prepare_frames(clip, model)
    t0 = time.perf_counter()
    plan = api.plan_for(model, f, max_memory)
    planned = time.perf_counter() - t0
    rec = api.decode_frames(model, api.encode_frames(model, f, plan), plan)
    seconds = time.perf_counter() - t0
    s, t = cfg.spatial_compression, cfg.temporal_compression
    whole = max(estimate(cfg, "encode", (1, 3, len(f), f.shape[1], f.shape[2])),
                estimate(cfg, "decode", (1, cfg.latent_channels, 1 + (len(f) - 1) // t, f.shape[1] // s, f.shape[2] // s)))
    return dict(preset=preset, params=num_params(model), shape=f"{kept}x{height}x{width}", plan=plan.describe(),
                estimate=plan.peak_bytes, peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                seconds=seconds, plan_seconds=planned, untiled=whole, frames_out=len(rec))


def memory_main(args) -> None:
    import json
    import subprocess
    import sys

    from openwfm.memory import parse_memory

    rows = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        cmd = [sys.executable, __file__, "--memory-one", preset, "--frames", str(args.frames), "--height",
               str(args.height), "--width", str(args.width), "--max-memory", args.max_memory,
               "--threads", str(args.threads), "--seed", str(args.seed)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    budget = parse_memory(args.max_memory)
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; round trip of a synthetic clip, random-init weights, budget {args.max_memory}")
    print("| preset | params | clip TxHxW | plan | estimated peak GiB | measured peak RSS GiB | within budget | "
          "seconds (plan) | untiled would need GiB |")
    print("|---|---:|---|---|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['params'] / 1e6:.1f}M | {r['shape']} | {r['plan']} | {r['estimate'] / 2 ** 30:.2f} | "
              f"{r['peak'] / 2 ** 30:.2f} | {'yes' if r['peak'] <= budget else 'NO'} | {r['seconds']:.0f} "
              f"({r['plan_seconds']:.1f}) | {r['untiled'] / 2 ** 30:.1f} |")
    if any(r["peak"] > budget for r in rows):
        raise SystemExit("a round trip went over its memory budget")


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="CV8x8x8,CV4x8x8,tiny-CV8x8x8",
                    help="comma-separated continuous presets (diffusers has no FSQ bottleneck)")
    ap.add_argument("--size", type=int, default=128, help="height = width of the clip")
    ap.add_argument("--frames", type=int, default=17, help="1 + k·t frames (17 suits 4x and 8x in time)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per model after one warm-up")
    ap.add_argument("--threads", type=int, default=cores, help="torch threads (default: available cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory", action="store_true", help="memory mode: peak RSS of a budgeted round trip")
    ap.add_argument("--memory-one", default="", help=argparse.SUPPRESS)
    ap.add_argument("--height", type=int, default=720, help="memory mode: clip height")
    ap.add_argument("--width", type=int, default=1280, help="memory mode: clip width")
    ap.add_argument("--max-memory", default="4GiB", help="memory mode: the budget")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_one:
        import json

        print(json.dumps(memory_one(args.memory_one, args.frames, args.height, args.width, args.max_memory, args.seed)))
        return
    if args.memory:
        return memory_main(args)

    import diffusers

    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [bench(p.strip(), args.frames, args.size, args.repeats, args.seed)
            for p in args.presets.split(",") if p.strip()]
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads of {cores} cores, "
          f"torch {torch.__version__}, diffusers {diffusers.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"encode + decode, fp32, no_grad, median of {args.repeats}; load avg {load0:.2f} -> {load1:.2f}")
    print("| preset | params | input TxHxW | latent | ours s | diffusers s | speed-up | max abs diff latent | "
          "max abs diff video |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['params'] / 1e6:.1f}M | {r['shape']} | {r['latent']} | {r['ours']:.3f} | "
              f"{r['ref']:.3f} | {r['ref'] / r['ours']:.2f}x | {r['dz']:.1e} | {r['dy']:.1e} |")
    for r in rows:
        print(f"# {r['preset']}: ours {r['spread_ours'][0]:.3f}..{r['spread_ours'][1]:.3f} s, diffusers "
              f"{r['spread_ref'][0]:.3f}..{r['spread_ref'][1]:.3f} s; our inference weight caches "
              f"{r['cache']:.0f} MiB")
    bad = [r["preset"] for r in rows if max(r["dz"], r["dy"]) > TOLERANCE]
    if bad:
        raise SystemExit(f"outputs differ from diffusers by more than {TOLERANCE}: {', '.join(bad)}")


if __name__ == "__main__":
    main()
