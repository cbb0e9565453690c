"""Near-duplicate removal at corpus scale: ``openwfm.curate.dedup`` on generated clip embeddings.

    python benchmarks/dedup.py --n 1000000 --dim 256 [--dup-frac 0.05] [--threads 2]

Embeddings: ``n / 1000`` cluster centres on the unit sphere; each clip is its centre plus Gaussian noise
(normalized; two clips of one cluster have cosine ~0.5, far below the 0.95 threshold), and a fraction
``--dup-frac`` of them get a planted near-duplicate (the clip plus 10 % noise: cosine ~0.995). Reported:
recall of the planted duplicates (one of each pair removed, naming the other), false removals (a clip
removed as the twin of one that is not its planted pair), time and peak memory. The last line is
``n N dim D seconds S peak_rss_mb M removed R``. Reference: the exact method (every pair compared) gives
recall 1 and no false removals by construction; it is what ``dedup`` runs up to 50,000 clips.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np


def embeddings(n: int, dim: int, dup_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 unit rows and the planted pairs (m, 2) (original, copy), built in blocks."""
    rng = np.random.default_rng(seed)
    m = int(n * dup_frac)
    base = n - m
    centres = rng.standard_normal((max(1, base // 1000), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, dim), np.float32)
    for a in range(0, base, 100_000):
        b = min(base, a + 100_000)
        v = centres[rng.integers(len(centres), size=b - a)] + rng.standard_normal((b - a, dim)).astype(np.float32) / np.sqrt(dim)
        x[a:b] = v / np.linalg.norm(v, axis=1, keepdims=True)
    src = rng.choice(base, size=m, replace=False)
    for a in range(0, m, 100_000):
        s = src[a:a + 100_000]
        v = x[s] + 0.1 * rng.standard_normal((len(s), dim)).astype(np.float32) / np.sqrt(dim)
        x[base + a:base + a + len(s)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return x, np.stack([src, base + np.arange(m)], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--dup-frac", type=float, default=0.05)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import faiss

    from openwfm.curate.dedup import EXACT_UP_TO, dedup

    faiss.omp_set_num_threads(args.threads)
    x, pairs = embeddings(args.n, args.dim, args.dup_frac, args.seed)
    ids = [f"{i:08d}" for i in range(args.n)]
    quality = np.random.default_rng(args.seed + 1).random(args.n).tolist()
    t0 = time.perf_counter()
    removed = dedup(ids, x, quality, args.threshold, args.seed)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    planted = {int(a): int(b) for a, b in pairs} | {int(b): int(a) for a, b in pairs}
    found = sum(1 for a, b in pairs if removed.get(ids[a]) == ids[b] or removed.get(ids[b]) == ids[a])
    false = sum(1 for r, t in removed.items() if planted.get(int(r)) != int(t))
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, faiss {faiss.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; {'exact (every pair)' if args.n <= EXACT_UP_TO else 'inverted file'}")
    print(f"planted pairs {len(pairs)}, recall {found / max(1, len(pairs)):.4f}, false removals {false}")
    print(f"n {args.n} dim {args.dim} seconds {seconds:.1f} peak_rss_mb {peak:.0f} removed {len(removed)}")


if __name__ == "__main__":
    main()
