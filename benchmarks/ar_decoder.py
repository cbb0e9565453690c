"""Diffusion decoder vs the DV tokenizer's own decoder, one run: which turns tokens into better pixels?

    python benchmarks/ar_decoder.py --decoder runs/ar-decoder --shards HELDOUT_SHARDS [--clips 8] [--steps 15]

Held-out clips (``--frames`` frames at ``--size``) are tokenized by the decoder run's DV tokenizer; the
tokens are decoded (1) by the DV tokenizer's decoder and (2) by the diffusion decoder (CV latents sampled
with ``--steps`` 2AB steps and guidance ``--guidance``, then the CV tokenizer's decoder). PSNR / SSIM
against the original frames; the CV tokenizer's own round trip (encode + decode, no tokens) is the
ceiling the diffusion decoder can reach.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from openwfm.autoregressive.decoder import decode_tokens
from openwfm.data import load_index
from openwfm.data.buckets import fit_to_bucket
from openwfm.data.shards import decode_video, read_sample
from openwfm.diffusion.codec import LatentCodec
from openwfm.evaluate.metrics import psnr, ssim
from openwfm.hub import load_decoder
from openwfm.text.encoder import make_text_encoder
from openwfm.tokenizer.api import load_tokenizer
from openwfm.video.transforms import from_tensor, to_tensor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--guidance", type=float, default=1.8)
    args = ap.parse_args()
    model, cfg = load_decoder(args.decoder)
    dv = load_tokenizer(cfg.dv_tokenizer)
    codec = LatentCodec(cfg.tokenizer, cfg.edm.sigma_data)
    text = make_text_encoder(cfg.text).encode([""])[0]
    index = load_index(args.shards)
    picks = [index[i] for i in np.linspace(0, len(index) - 1, min(args.clips, len(index))).round().astype(int)]
    rows = {"DV decoder": [], "diffusion decoder": [], "CV round trip (ceiling)": []}
    t_dv = t_diff = 0.0
    for k, e in enumerate(picks):
        raw = read_sample(e, [e.media])[e.media]
        frames = fit_to_bucket(decode_video(raw, 0, args.frames, 1, e.where), (args.size, args.size))[0]
        x = to_tensor(frames)[None]
        with torch.no_grad():
            tokens = dv.encode(x)[0]
            t = time.perf_counter()
            by_dv = from_tensor(dv.decode(tokens).clamp(-1, 1)[0])
            t_dv += time.perf_counter() - t
            t = time.perf_counter()
            by_diff = decode_tokens(model, codec, tokens, text, torch.zeros_like(text), steps=args.steps,
                                    guidance=args.guidance, seed=k)
            t_diff += time.perf_counter() - t
            ceiling = from_tensor(codec.decode(codec.encode(x)).clamp(-1, 1)[0])
        for name, out in zip(rows, (by_dv, by_diff, ceiling)):
            rows[name].append((float(psnr(out, frames).mean()), float(ssim(out, frames).mean())))
    print(f"{platform.machine()}, torch {torch.__version__}; {len(picks)} held-out clips of {args.frames} frames at "
          f"{args.size}px; decoder {args.decoder} ({args.steps} steps, guidance {args.guidance})")
    for name, vals in rows.items():
        p, s = np.mean(vals, 0)
        print(f"  {name:<26} PSNR {p:6.2f} dB   SSIM {s:.3f}")
    print(f"  time per clip: DV decoder {t_dv / len(picks):.2f} s, diffusion decoder {t_diff / len(picks):.2f} s")


if __name__ == "__main__":
    main()
