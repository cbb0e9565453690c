"""Context parallelism: 2 gloo ranks give the same outputs and gradients as one process with SDPA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from dist_helpers import run_ranks

from openwfm.nn.context_parallel import (
    causal_mask,
    context_parallel_attention,
    gather_sequence,
    ring_attention,
    shard_sequence,
)

WORLD = 2
B, H, L, D = 2, 4, 16, 8
ATTENTION = {"allgather": context_parallel_attention, "ring": ring_attention}
# (method, kv heads, causal)
CASES = [(m, kvh, c) for m in ATTENTION for kvh in (H, 2) for c in (False, True)]


def _inputs(kv_heads: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, D, generator=g)
    k = torch.randn(B, kv_heads, L, D, generator=g)
    v = torch.randn(B, kv_heads, L, D, generator=g)
    w = torch.randn(B, H, L, D, generator=g)  # loss = sum(out * w)
    return q, k, v, w


def _reference(q, k, v, w, causal: bool, scale: float | None = None):
    """Outputs and gradients of q, k, v from SDPA on the full sequence in one process."""
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=causal, scale=scale
    )
    (out * w).sum().backward()
    return [out.detach(), q.grad, k.grad, v.grad]


def _worker(rank: int, world: int, tmp: Path) -> dict:
    """One rank: every attention case, the shard/gather round trip and the divisibility error."""
    group = dist.group.WORLD
    results = {}
    for method, kvh, causal in CASES:
        q, k, v, w = _inputs(kvh)
        local = [shard_sequence(t, 2, group).requires_grad_() for t in (q, k, v)]
        out = ATTENTION[method](*local, group=group, causal=causal)
        (out * shard_sequence(w, 2, group)).sum().backward()
        results[(method, kvh, causal)] = [out.detach()] + [t.grad for t in local]

    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, H, L, D, generator=g).requires_grad_()
    wx = torch.randn(B, H, L, D, generator=g)
    chunk = shard_sequence(x, 2, group)
    y = gather_sequence(chunk, 2, group)
    (y * wx).sum().backward()
    results["roundtrip"] = [x.detach(), wx, chunk.detach(), y.detach(), x.grad]
    try:
        shard_sequence(torch.zeros(1, 1, L - 1, 1), 2, group)
    except ValueError as e:
        results["error"] = str(e)
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_worker, tmp_path_factory.mktemp("cp"), WORLD)


@pytest.mark.distributed
@pytest.mark.parametrize("method,kv_heads,causal", CASES)
def test_two_ranks_match_full_sdpa(ranks, method, kv_heads, causal):
    q, k, v, w = _inputs(kv_heads)
    expected = _reference(q, k, v, w, causal)
    got = [torch.cat([r[(method, kv_heads, causal)][i] for r in ranks], dim=2) for i in range(4)]
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.distributed
def test_shard_gather_round_trip(ranks):
    x, wx = ranks[0]["roundtrip"][:2]
    for rank, r in enumerate(ranks):
        _, _, chunk, y, _ = r["roundtrip"]
        torch.testing.assert_close(chunk, x[:, :, rank * L // WORLD : (rank + 1) * L // WORLD], atol=0, rtol=0)
        torch.testing.assert_close(y, x, atol=0, rtol=0)
    # each rank holds its share of d sum(y * wx) / dx; the shares average (as DDP/FSDP do) to the gradient
    torch.testing.assert_close(sum(r["roundtrip"][4] for r in ranks) / WORLD, wx, atol=0, rtol=0)
    assert "not divisible by the context-parallel size 2" in ranks[0]["error"]


@pytest.mark.parametrize("kv_heads", [H, 2])
def test_no_group_is_plain_sdpa(kv_heads):
    q, k, v, w = _inputs(kv_heads, seed=2)
    for causal in (False, True):
        expected = _reference(q, k, v, w, causal, scale=0.3)
        for fn in (context_parallel_attention, ring_attention):
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            out = fn(*leaves, group=None, causal=causal, scale=0.3)
            (out * w).sum().backward()
            for a, b in zip([out.detach()] + [t.grad for t in leaves], expected):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_causal_mask_offset_matches_is_causal():
    q, k, v, _ = _inputs(H, seed=3)
    chunks = 4
    n = L // chunks
    parts = [
        F.scaled_dot_product_attention(q[:, :, i * n : (i + 1) * n], k, v, attn_mask=causal_mask(n, L, i * n))
        for i in range(chunks)
    ]
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-6, rtol=1e-6)
    assert torch.equal(torch.cat([causal_mask(n, L, i * n) for i in range(chunks)]), torch.ones(L, L).tril().bool())


def test_causal_with_attn_mask_combines():
    q, k, v, _ = _inputs(H, seed=4)
    keep = torch.rand(L, L, generator=torch.Generator().manual_seed(5)) > 0.3
    keep |= torch.eye(L, dtype=torch.bool)  # every query keeps at least itself
    both = keep & causal_mask(L, L)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=both)
    torch.testing.assert_close(context_parallel_attention(q, k, v, causal=True, attn_mask=keep), expected)
    additive = torch.zeros(L, L).masked_fill(~keep, float("-inf"))
    torch.testing.assert_close(context_parallel_attention(q, k, v, causal=True, attn_mask=additive), expected)
