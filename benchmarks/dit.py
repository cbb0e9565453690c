"""DiT forward time: openwfm's DiT vs diffusers' CosmosTransformer3DModel, same config, weights and input.

    python benchmarks/dit.py [--width 512] [--blocks 4] [--latent 5x16x16] [--repeats 5] [--device cpu|cuda]
                             [--dtype fp32|bf16]

diffusers' model is built with random weights (every parameter redrawn, so no path is zero) and the same
tensors are loaded into ours (``from_diffusers``). Both run the same noisy latent, c_noise and 64 text
tokens under ``torch.no_grad`` with their padding-mask channel. After a warm-up call each, the two
alternate for ``--repeats`` rounds (who goes first swaps each round); medians are shown. Outputs must
agree (max |diff| <= 1e-4 in fp32).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import types

import torch
import torch.nn.functional as F

from openwfm.diffusion.convert import config_from_diffusers, diffusers_config, from_diffusers
from openwfm.diffusion.dit import DiT, DiTConfig


def _diffusers_without_torchvision():
    import diffusers.models.transformers.transformer_cosmos as tc

    # diffusers resizes the padding mask with torchvision (no CPU wheel here): the same nearest resize
    tc.transforms = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=lambda t, size, interpolation=None: F.interpolate(t, size=size, mode="nearest")),
        InterpolationMode=types.SimpleNamespace(NEAREST=None))
    return tc.CosmosTransformer3DModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--latent", default="5x16x16", help="T'xH'xW' latent frames and size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    t, h, w = (int(v) for v in args.latent.split("x"))
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16

    torch.manual_seed(0)
    cfg = DiTConfig(model_channels=args.width, num_heads=args.heads, num_blocks=args.blocks, max_size=(64, 128, 128))
    ref = _diffusers_without_torchvision()(**diffusers_config(cfg)).eval()
    for p in ref.parameters():
        p.data.normal_(0, 0.02)
    ours = DiT(config_from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(from_diffusers(ref.state_dict()), strict=True)
    ref, ours = ref.to(args.device, dtype), ours.to(args.device, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, t, h, w, generator=g).to(args.device, dtype)
    c = torch.tensor([0.3], device=args.device)
    text = torch.randn(1, 64, cfg.crossattn_emb_channels, generator=g).to(args.device, dtype)
    pm = torch.zeros(1, 1, h, w, device=args.device, dtype=dtype)

    def run_ref():
        return ref(x, c, text, fps=24, padding_mask=pm, return_dict=False)[0]

    def run_ours():
        return ours(x, c, text, fps=24.0, padding_mask=pm)

    def timed(fn):
        if args.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    with torch.no_grad():
        _, a = timed(run_ref)
        _, b = timed(run_ours)
        diff = (a.float() - b.float()).abs().max().item()
        times = {"ours": [], "diffusers": []}
        for r in range(args.repeats):
            order = [("ours", run_ours), ("diffusers", run_ref)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                times[name].append(timed(fn)[0])
    ours_s, ref_s = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"DiT width {args.width}, {args.blocks} blocks, {n_params / 1e6:.1f} M params; latent 16x{t}x{h}x{w} "
          f"({t * h * w // 4} tokens), {args.dtype} on {args.device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads)")
    print(f"| model | forward ms (median of {args.repeats}) |\n|---|---|")
    print(f"| diffusers CosmosTransformer3DModel | {ref_s * 1e3:.1f} |\n| openwfm DiT | {ours_s * 1e3:.1f} |")
    print(f"speed-up ours vs diffusers: {ref_s / ours_s:.2f}x; max |diff| = {diff:.2e}")
    if args.dtype == "fp32" and diff > 1e-4:
        raise SystemExit(f"outputs differ by {diff:.2e} > 1e-4")


if __name__ == "__main__":
    main()
