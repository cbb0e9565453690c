"""Clip embeddings and semantic deduplication (Cosmos paper sec. 3.4).

``clip_embedding``: ImageNet features (EfficientNet-Lite0 head, global-average-pooled) of a few frames,
averaged and L2-normalized — pluggable (any ``frames -> vector`` callable). ``dedup``: pairs closer than
``threshold`` in cosine similarity are near-duplicates, and only the copy with the best quality key
survives; every removal names the clip it duplicates. The pairs come from faiss (Meta's similarity
search library): every pair compared up to 50,000 clips, an inverted-file index over k-means cells above
(the paper deduplicates ~100 M clips with k-means cells and within-cell search).
"""

from __future__ import annotations

from typing import Callable

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


EXACT_UP_TO = 50_000  # up to this many clips every pair is compared (faiss's flat index: exact)
BLOCK = 65536  # queries per range search (bounded result buffers; one task each on Ray)


def search_block(index, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
    """The rows of ``index`` at inner product >= ``threshold`` from each query (one array per query)."""
    lims, _, found = index.range_search(np.ascontiguousarray(queries, dtype=np.float32), threshold)
    return [found[lims[i]:lims[i + 1]] for i in range(len(lims) - 1)]


def near_pairs(emb: np.ndarray, threshold: float, seed: int = 0, nprobe: int = 16,
               search: Callable | None = None) -> list[np.ndarray]:
    """For each row of ``emb`` (unit vectors), the other rows with cosine similarity >= ``threshold``.

    Up to ``EXACT_UP_TO`` rows every pair is compared (exact); above, faiss k-means (sqrt(n)... 4 sqrt(n)
    cells) and an inverted-file range search over the ``nprobe`` nearest cells — near-duplicates sit in
    the same or a neighbouring cell, so few are missed (``benchmarks/dedup.py`` measures the recall).
    ``search(index, x, threshold)`` runs the range search over all rows (e.g. spread over a Ray cluster:
    ``curate/ray_engine.py``); default: here, ``BLOCK`` queries at a time."""
    import faiss

    x = np.ascontiguousarray(emb, dtype=np.float32)
    n, d = x.shape
    if n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        index.cp.seed, index.cp.niter = seed, 10
        index.train(x[rng.choice(n, size=min(n, 40 * nlist), replace=False)])
        index.nprobe = nprobe
    index.add(x)
    if search is not None:
        out = search(index, x, threshold)
    else:
        out = [nb for a in range(0, n, BLOCK) for nb in search_block(index, x[a:a + BLOCK], threshold)]
    return [nb[nb != i] for i, nb in enumerate(out)]


def dedup(ids: list[str], emb: np.ndarray, quality: list[float], threshold: float = 0.95, seed: int = 0,
          search: Callable | None = None) -> dict[str, str]:
    """{removed id: id of the kept near-duplicate}: clips in order of ``quality`` (higher first; ties: the
    smaller id) are kept unless one already kept is at cosine similarity >= ``threshold``. Exact up to
    ``EXACT_UP_TO`` clips (every pair compared); above, the pairs come from an inverted-file search."""
    if len(ids) < 2:
        return {}
    neighbours = near_pairs(np.asarray(emb), threshold, seed, search=search)
    order = sorted(range(len(ids)), key=lambda i: (-quality[i], ids[i]))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    kept = np.zeros(len(ids), dtype=bool)
    removed: dict[str, str] = {}
    for i in order:
        nb = neighbours[i]
        twins = nb[kept[nb]]
        if len(twins):  # the best-ranked kept twin (what a scan in quality order meets first)
            removed[ids[i]] = ids[int(twins[np.argmin(rank[twins])])]
        else:
            kept[i] = True
    return removed
