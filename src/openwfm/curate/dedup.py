"""Clip embeddings and semantic deduplication (Cosmos paper sec. 3.4).

``clip_embedding``: ImageNet features (EfficientNet-Lite0 head, global-average-pooled) of a few frames,
averaged and L2-normalized — pluggable (any ``frames -> vector`` callable). ``dedup``: k-means on the
embeddings (k ~ sqrt(n)), then inside each cluster, pairs closer than ``threshold`` in cosine similarity
are near-duplicates and only the copy with the best quality key survives; every removal names the clip
it duplicates.
"""

from __future__ import annotations

import numpy as np
import torch


def clip_embedding(frames: np.ndarray, num_frames: int = 4, size: int = 224) -> np.ndarray:
    """A unit vector (1280,) for uint8 (T, H, W, 3) frames."""
    from openwfm.features.efficientnet import embed
    from openwfm.video.transforms import to_tensor

    idx = np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)
    x = to_tensor(frames[idx]).movedim(1, 0)  # (T, 3, H, W) in [-1, 1]
    with torch.no_grad():
        e = embed(x, size=size).mean(0)
    return torch.nn.functional.normalize(e, dim=0).numpy()


def kmeans(x: np.ndarray, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Cluster labels of the rows of ``x`` (k-means++ initialization, Lloyd iterations)."""
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min(((x[:, None] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
        centers.append(x[rng.choice(n, p=d / d.sum())] if d.sum() > 0 else x[rng.integers(n)])
    c = np.asarray(centers)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        labels = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.asarray([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return labels


def dedup(ids: list[str], emb: np.ndarray, quality: list[float], threshold: float = 0.95, seed: int = 0
          ) -> dict[str, str]:
    """{removed id: id of the kept near-duplicate}. Higher ``quality`` wins; ties keep the smaller id."""
    if len(ids) < 2:
        return {}
    labels = kmeans(emb, int(np.ceil(np.sqrt(len(ids)))), seed=seed)
    removed: dict[str, str] = {}
    for c in np.unique(labels):
        members = sorted(np.flatnonzero(labels == c), key=lambda i: (-quality[i], ids[i]))
        kept: list[int] = []
        for i in members:
            twin = next((j for j in kept if float(emb[i] @ emb[j]) >= threshold), None)
            if twin is None:
                kept.append(i)
            else:
                removed[ids[i]] = ids[twin]
    return removed
