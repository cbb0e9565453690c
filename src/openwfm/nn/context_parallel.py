"""Context parallelism: attention over a token sequence sharded along its length.

Tokens ``(B, heads, L, D)`` are split into contiguous chunks along ``L``, one per rank of a
context-parallel process group: rank ``r`` of ``cp`` holds positions ``[r*L/cp, (r+1)*L/cp)``.
Two ways for local queries to attend over the whole sequence:

- ``context_parallel_attention``: all-gather K and V, then SDPA of the local queries against the global
  keys (the all-gather scheme of Llama 3, Dubey et al. 2024, §3.3.2). K/V memory is O(L) per rank;
  the default for training.
- ``ring_attention``: K/V blocks travel around the ring and the per-block results are merged with their
  log-sum-exp (Liu et al. 2023, "Ring Attention with Blockwise Transformers"; the online softmax of
  FlashAttention). K/V memory is O(L/cp) per rank; exact backward by recomputation.

Chunks are contiguous, so with ``causal=True`` the last rank does the most work (no load balancing).
Gradient convention (the trainer's): every rank's loss is the mean over its own tokens and DDP/FSDP2
average gradients over all ranks, so each backward returns this rank's *share*: the shares summed over
ranks make the gradient of the summed losses. Hence the all-gathers' backward is a sum over ranks then
the local slice, and ``shard_sequence``'s backward is the local chunk's gradient with zeros elsewhere.

``group=None`` (or a group of one rank) means no parallelism: nothing calls ``torch.distributed``, so
every function also works without ``init_process_group``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def _world(group: dist.ProcessGroup | None) -> tuple[int, int]:
    """(world size, rank) of a context-parallel group; (1, 0) for no group."""
    if group is None:
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


def _local_slice(x: Tensor, dim: int, world: int, rank: int) -> Tensor:
    """This rank's contiguous chunk of ``x`` along ``dim``."""
    n = x.shape[dim]
    if n % world:
        raise ValueError(
            f"sequence length {n} (dim {dim}) is not divisible by the context-parallel size {world}; "
            f"pad the sequence to a multiple of {world} or change the number of ranks"
        )
    return x.narrow(dim, rank * (n // world), n // world).contiguous()


def _all_gather(x: Tensor, dim: int, group: dist.ProcessGroup, world: int) -> Tensor:
    """Concatenate every rank's ``x`` along ``dim`` in rank order (all_gather works on gloo and NCCL)."""
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x, group=group)
    return torch.cat(parts, dim=dim)


class _Shard(torch.autograd.Function):
    """Forward keeps this rank's chunk; backward puts the chunk's gradient in place, zeros elsewhere
    (this rank's share of the replicated input's gradient; see the gradient convention above)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, group: dist.ProcessGroup) -> Tensor:
        ctx.dim, ctx.group, ctx.n = dim, group, x.shape[dim]
        return _local_slice(x, dim, *_world(group))

    @staticmethod
    def backward(ctx, grad: Tensor):
        world, rank = _world(ctx.group)
        shape = list(grad.shape)
        shape[ctx.dim] = ctx.n
        full = grad.new_zeros(shape)
        full.narrow(ctx.dim, rank * (ctx.n // world), ctx.n // world).copy_(grad)
        return full, None, None


class _Gather(torch.autograd.Function):
    """Forward all-gathers the chunks; backward sums the full gradient over ranks (all_reduce) and keeps
    this rank's slice, as for K/V below."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, group: dist.ProcessGroup) -> Tensor:
        ctx.dim, ctx.group = dim, group
        return _all_gather(x, dim, group, _world(group)[0])

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _sum_slice(grad, ctx.dim, ctx.group), None, None


def _sum_slice(grad: Tensor, dim: int, group: dist.ProcessGroup) -> Tensor:
    """This rank's slice of the gradient summed over ranks (a reduce-scatter from what gloo supports)."""
    g = grad.clone(memory_format=torch.contiguous_format)  # all_reduce is in place
    dist.all_reduce(g, group=group)
    return _local_slice(g, dim, *_world(group))


class _AllGatherKV(torch.autograd.Function):
    """Forward all-gathers K and V along ``dim``; backward returns, for the local chunk, the sum over
    ranks of the gradient each rank computed for it (all_reduce of the full gradient, then the local
    slice: a reduce-scatter built from what gloo supports)."""

    @staticmethod
    def forward(ctx, k: Tensor, v: Tensor, dim: int, group: dist.ProcessGroup):
        ctx.dim, ctx.group = dim, group
        world = _world(group)[0]
        return _all_gather(k, dim, group, world), _all_gather(v, dim, group, world)

    @staticmethod
    def backward(ctx, dk: Tensor, dv: Tensor):
        return _sum_slice(dk, ctx.dim, ctx.group), _sum_slice(dv, ctx.dim, ctx.group), None, None


def shard_sequence(x: Tensor, dim: int, group: dist.ProcessGroup | None) -> Tensor:
    """This rank's contiguous chunk of the full sequence ``x`` along ``dim`` (differentiable).

    ``x`` must be the same on every rank and its length divisible by the group size (ValueError).
    """
    world, rank = _world(group)
    if world == 1:
        return x
    return _Shard.apply(x, dim, group)


def gather_sequence(x: Tensor, dim: int, group: dist.ProcessGroup | None) -> Tensor:
    """The full sequence from every rank's chunk ``x`` along ``dim`` (differentiable; the inverse of
    ``shard_sequence``)."""
    if _world(group)[0] == 1:
        return x
    return _Gather.apply(x, dim, group)


def causal_mask(q_len: int, k_len: int, offset: int = 0, device: torch.device | None = None) -> Tensor:
    """Boolean ``(q_len, k_len)`` mask, True where the query at global position ``offset + i`` may attend
    key ``j`` (``j <= offset + i``); SDPA's convention (True = attend)."""
    i = torch.arange(q_len, device=device).unsqueeze(1) + offset
    j = torch.arange(k_len, device=device).unsqueeze(0)
    return j <= i


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> None:
    """Shapes (B, H, L, D) with H a multiple of the K/V heads (grouped-query attention)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be (B, heads, L, D); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape[1] != v.shape[1] or q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} must be a multiple of key/value heads {k.shape[1]}, {v.shape[1]}")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal attention needs equal local query and key lengths; got {q.shape[2]}, {k.shape[2]}")


def _repeat_kv(x: Tensor, heads: int) -> Tensor:
    """Repeat K/V heads to ``heads`` query heads (GQA: query head h uses K/V head h // group)."""
    if x.shape[1] == heads:
        return x
    return x.repeat_interleave(heads // x.shape[1], dim=1)


def context_parallel_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    group: dist.ProcessGroup | None = None,
    causal: bool = False,
    attn_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Attention of this rank's query chunk against the whole sequence, by all-gathering K and V.

    ``q`` ``(B, H, L/cp, D)``, ``k``/``v`` ``(B, H_kv, L/cp, D)`` are this rank's chunks; returns this
    rank's chunk of the output. ``attn_mask`` (bool or additive) must broadcast to
    ``(B, H, L/cp, L)``: local queries against global keys. ``causal`` uses the global position of the
    local queries (``rank * L/cp``). Gradients reach the local K/V chunks exactly.
    """
    _check_qkv(q, k, v, causal)
    world, rank = _world(group)
    if world > 1:
        k, v = _AllGatherKV.apply(k, v, 2, group)
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    if causal and (world > 1 or attn_mask is not None):
        mask = causal_mask(q.shape[2], k.shape[2], rank * q.shape[2], q.device)
        if attn_mask is None:
            attn_mask = mask
        elif attn_mask.dtype == torch.bool:
            attn_mask = attn_mask & mask
        else:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
        causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal, scale=scale)


def _ring_pass(tensors: list[Tensor], group, world: int, rank: int, tag: int):
    """Send contiguous ``tensors`` to the next rank of the ring and receive the previous rank's.

    Returns (requests, received); the sent tensors must stay alive until the requests are waited on.
    """
    nxt = dist.get_global_rank(group, (rank + 1) % world)
    prv = dist.get_global_rank(group, (rank - 1) % world)
    received = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t, nxt, group, tag + i) for i, t in enumerate(tensors)]
    ops += [dist.P2POp(dist.irecv, r, prv, group, tag + i) for i, r in enumerate(received)]
    return dist.batch_isend_irecv(ops), received


def _block_probs(q: Tensor, k: Tensor, scale: float, diagonal: bool, lse: Tensor | None = None):
    """fp32 scores of q against one K block (causal within the block when ``diagonal``); returns
    (scores, lse) or, given the final ``lse``, the attention probabilities."""
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    if diagonal:
        s = s.masked_fill(~causal_mask(s.shape[-2], s.shape[-1], 0, s.device), float("-inf"))
    if lse is None:
        return s, torch.logsumexp(s, dim=-1, keepdim=True)
    return torch.exp(s - lse)


class _RingAttention(torch.autograd.Function):
    """Ring attention in fp32. Forward: step ``s`` attends to the K/V block of rank ``rank - s`` while
    the next block is in flight, merging per-block outputs by log-sum-exp. Backward recomputes the
    probabilities from the saved LSE (FlashAttention's backward): dq stays local, dk/dv accumulators
    travel with their K/V block around the ring and a last pass returns them to their owners."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, group, causal: bool, scale: float) -> Tensor:
        world, rank = _world(group)
        heads = q.shape[1]
        qf, kf, vf = q.float(), k.float().contiguous(), v.float().contiguous()
        out = lse = None
        for step in range(world):
            src = (rank - step) % world
            if step + 1 < world:
                reqs, incoming = _ring_pass([kf, vf], group, world, rank, tag=0)
            if not (causal and src > rank):  # blocks after this rank's queries are fully masked
                s, block_lse = _block_probs(qf, _repeat_kv(kf, heads), scale, causal and src == rank)
                block_out = torch.matmul(torch.exp(s - block_lse), _repeat_kv(vf, heads))
                if out is None:  # step 0 is this rank's own block, never skipped
                    out, lse = block_out, block_lse
                else:
                    new_lse = torch.logaddexp(lse, block_lse)
                    out = out * torch.exp(lse - new_lse) + block_out * torch.exp(block_lse - new_lse)
                    lse = new_lse
            if step + 1 < world:
                for r in reqs:
                    r.wait()
                kf, vf = incoming
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.causal, ctx.scale = group, causal, scale
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        group, causal, scale = ctx.group, ctx.causal, ctx.scale
        world, rank = _world(group)
        heads, kv_heads = q.shape[1], k.shape[1]
        qf, kf, vf, do = q.float(), k.float().contiguous(), v.float().contiguous(), dout.float()
        delta = (do * out).sum(dim=-1, keepdim=True)  # rowsum(dO * O) = rowsum(P * dP)
        dq = torch.zeros_like(qf)
        dk, dv = torch.zeros_like(kf), torch.zeros_like(vf)  # gradients of the block now held
        for step in range(world):
            src = (rank - step) % world
            if step + 1 < world:
                kv_reqs, kv_next = _ring_pass([kf, vf], group, world, rank, tag=0)
            if not (causal and src > rank):
                k_rep, v_rep = _repeat_kv(kf, heads), _repeat_kv(vf, heads)
                p = _block_probs(qf, k_rep, scale, causal and src == rank, lse)
                ds = p * (torch.matmul(do, v_rep.transpose(-2, -1)) - delta)
                dq += torch.matmul(ds, k_rep) * scale
                dk_rep = torch.matmul(ds.transpose(-2, -1), qf) * scale
                dv_rep = torch.matmul(p.transpose(-2, -1), do)
                dk += dk_rep.unflatten(1, (kv_heads, heads // kv_heads)).sum(2)
                dv += dv_rep.unflatten(1, (kv_heads, heads // kv_heads)).sum(2)
            if world > 1:  # hand the accumulators on with their block; after the last step they are home
                reqs, grads = _ring_pass([dk, dv], group, world, rank, tag=2)
                for r in reqs:
                    r.wait()
                dk, dv = grads
            if step + 1 < world:
                for r in kv_reqs:
                    r.wait()
                kf, vf = kv_next
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


def ring_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    group: dist.ProcessGroup | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Ring attention of this rank's query chunk against the whole sequence (differentiable).

    Same inputs and result as ``context_parallel_attention`` (without ``attn_mask``), but K/V blocks are
    passed around the ring with ``isend``/``irecv`` instead of all-gathered, so no rank holds the full
    K/V. Computed in fp32 with explicit matmul/softmax; the output has ``q``'s dtype.
    """
    _check_qkv(q, k, v, causal)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _RingAttention.apply(q, k, v, group, causal, scale)
