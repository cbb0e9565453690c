"""How far is a trained tokenizer from the best *linear* code of the same shape? A PCA of t x s x s x 3
blocks (t frames, s x s pixels) to k channels, fitted on training rollouts, tested on held-out ones, in
one run beside the tokenizer's own round trip on the same held-out clips (17 frames at 64 px).

    python benchmarks/tokenizer_pca.py --train SIM_TRAIN --heldout SIM_HELDOUT -c cv4x4x4-sim32

A tokenizer below the PCA of its shape (t=4, s=4, k=16 for CV4x4x4) is undertrained: a linear encoder and
decoder are inside what it can represent.
"""

from __future__ import annotations

import argparse
import glob
import platform

import numpy as np
import torch

from openwfm.evaluate.physics import load_rollout
from openwfm.tokenizer.api import load_tokenizer
from openwfm.video.transforms import from_tensor, to_tensor


def clips(root: str, per: int) -> list[np.ndarray]:
    out = []
    for scenario in ("falling", "push", "orbit"):
        for p in sorted(glob.glob(f"{root}/{scenario}/*.json"))[:per]:
            out.append(load_rollout(p, 64, 17, need_masks=False).frames)
    return out


def blocks(v: np.ndarray, t: int, s: int) -> np.ndarray:
    """Frames 1..16 of a (17, 64, 64, 3) uint8 clip as rows of t*s*s*3 values in [-1, 1]."""
    x = v[1:].astype(np.float32) / 127.5 - 1 if t > 1 else v.astype(np.float32) / 127.5 - 1
    T, H, W, C = x.shape
    return x.reshape(T // t, t, H // s, s, W // s, s, C).transpose(0, 2, 4, 1, 3, 5, 6).reshape(-1, t * s * s * C)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(4.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("-c", "--checkpoint", default="cv4x4x4-sim32")
    ap.add_argument("--train-per", type=int, default=20)
    ap.add_argument("--heldout-per", type=int, default=6)
    args = ap.parse_args()
    train, test = clips(args.train, args.train_per), clips(args.heldout, args.heldout_per)
    print(f"{platform.machine()}, torch {torch.__version__}; PCA fitted on {len(train)} clips, tested on {len(test)}")
    for t, s, k in [(4, 4, 16), (4, 4, 32), (1, 4, 16), (4, 8, 16)]:
        x = np.concatenate([blocks(v, t, s) for v in train])
        mu = x.mean(0)
        basis = np.linalg.svd(x - mu, full_matrices=False)[2][:k]
        scores = [psnr((blocks(v, t, s) - mu) @ basis.T @ basis + mu, blocks(v, t, s)) for v in test]
        print(f"  PCA t={t} s={s} k={k:<3d} ({t * s * s * 3}->{k})  PSNR {np.mean(scores):6.2f} dB")
    model = load_tokenizer(args.checkpoint)
    with torch.no_grad():
        rt = [psnr(from_tensor(model.decode(model.encode_latent(to_tensor(v)[None])).clamp(-1, 1)[0])
                   .astype(np.float32) / 127.5 - 1, v.astype(np.float32) / 127.5 - 1) for v in test]
    print(f"  tokenizer {args.checkpoint} ({model.cfg.kind}, {model.cfg.latent_channels} ch) PSNR {np.mean(rt):6.2f} dB")


if __name__ == "__main__":
    main()
