"""Autoregressive decoding speed, one run: no cache vs KV cache, then KV cache vs KV cache + Medusa.

    python benchmarks/ar_decode.py [--run runs/ar-tiny] [--tokens /work/data/ar-tokens] [--new 256]

Part 1 (KV cache): random-init models (speed does not depend on weights; the tiny preset 2 x 64 and a
small 8 x 256) continue a
``--context``-token prompt by ``--new`` tokens, greedy, recomputing the whole sequence per token (only the
last position projected to the vocabulary) vs feeding one token at a time through the cache; the outputs
must be equal. Part 2 (Medusa): the trained model of ``--run`` (with Medusa heads) continues the first
latent frame of held-out token clips to the full clip, greedy, with and without speculative decoding
(heads drafting over the whole vocabulary, and over the tokens already in the sequence); the outputs
must be equal; the acceptance rate (accepted drafts / drafted) and tokens per forward pass are printed
with the speed-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from openwfm.autoregressive.medusa import medusa_generate
from openwfm.autoregressive.model import ARConfig, ARTransformer
from openwfm.autoregressive.sampling import SamplingConfig, generate
from openwfm.config import get_preset

GREEDY = SamplingConfig(temperature=0)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def part_cache(context: int, new: int, dim: int, layers: int) -> None:
    torch.manual_seed(0)
    cfg = get_preset(ARConfig, "tiny")
    cfg.latent_shape = (8, 16, 16)  # 2048 positions
    cfg.dim, cfg.n_layers, cfg.n_heads, cfg.ffn_hidden_size = dim, layers, dim // 16, 4 * dim
    model = ARTransformer(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, context))
    shape = cfg.latent_shape
    generate(model, prompt[:, :64], 4, GREEDY, shape=shape)  # warm-up
    ref, t_full = timed(lambda: generate(model, prompt, new, GREEDY, shape=shape, use_cache=False))
    out, t_cache = timed(lambda: generate(model, prompt, new, GREEDY, shape=shape))
    print(f"[cache] {layers} x {dim} model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, "
          f"vocab 64,000), context {context} -> {context + new} tokens")
    print(f"  no cache : {new / t_full:8.1f} tokens/s")
    print(f"  KV cache : {new / t_cache:8.1f} tokens/s   speed-up {t_full / t_cache:.1f}x   "
          f"identical output: {torch.equal(ref, out)}")


def part_medusa(run: str, tokens: str, clips: int, draft: int | None) -> None:
    from openwfm.data import load_index
    from openwfm.diffusion.latents import LatentDataset
    from openwfm.hub import load_ar_model

    model, cfg = load_ar_model(run)
    if model.medusa is None:
        raise SystemExit(f"{run} has no Medusa heads (train with --preset tiny-medusa)")
    ds = LatentDataset([e for e in load_index(tokens) if e.kind == "latent"])
    picks = [ds[i]["tokens"] for i in range(len(ds) - 1, -1, -max(1, len(ds) // clips))][:clips]
    t_base = n_new = 0.0
    t_fast = {"all": 0.0, "context": 0.0}
    same = {"all": True, "context": True}
    stats = {v: {"rounds": 0, "drafted": 0, "accepted": 0} for v in t_fast}
    for grid in picks:
        seq = model.sequence(grid[None])
        first = int(cfg.model.bov_token) + grid.shape[1] * grid.shape[2]  # <bov> and the first latent frame
        prompt, new = seq[:, :first], seq.shape[1] - first
        shape = tuple(grid.shape)
        base, tb = timed(lambda: generate(model.net, prompt, new, GREEDY, shape=shape))
        t_base, n_new = t_base + tb, n_new + new
        for vocab in ("all", "context"):
            (fast, st), tf = timed(lambda: medusa_generate(model.net, model.medusa, prompt, new, GREEDY, shape=shape,
                                                           num_draft=draft, draft_vocab=vocab))
            same[vocab] &= torch.equal(base, fast)
            t_fast[vocab] += tf
            for k in st.keys() & stats[vocab].keys():
                stats[vocab][k] += st[k]
    k = model.medusa.num_heads if draft is None else draft
    print(f"[medusa] {run}: {len(picks)} held-out clips, {int(n_new)} generated tokens, {k} draft heads")
    print(f"  KV cache                      : {n_new / t_base:8.1f} tokens/s")
    for vocab, label in (("all", "whole vocabulary"), ("context", "context vocabulary")):
        st = stats[vocab]
        print(f"  + Medusa, drafts over {label:18s}: {n_new / t_fast[vocab]:8.1f} tokens/s   speed-up "
              f"{t_base / t_fast[vocab]:.2f}x   identical greedy output: {same[vocab]}   acceptance "
              f"{st['accepted'] / max(1, st['drafted']):.2f}, "
              f"{(st['accepted'] + st['rounds']) / max(1, st['rounds']):.2f} tokens per forward pass")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--context", type=int, default=768)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--run", default="")
    ap.add_argument("--tokens", default="")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--draft", type=int, default=None, help="drafts per round (default: every head)")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')})")
    for dim, layers in ((64, 2), (256, 8)):  # the tiny preset, and a small model whose layers outweigh the vocab
        part_cache(args.context, args.new, dim, layers)
    if args.run:
        part_medusa(args.run, args.tokens, args.clips, args.draft)


if __name__ == "__main__":
    main()
