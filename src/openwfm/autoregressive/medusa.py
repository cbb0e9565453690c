"""Medusa heads and speculative decoding (Cai et al. 2024; Cosmos paper sec. 5.2: 7 heads of one layer).

Head k (k = 1..K) reads the base model's final hidden state h_t and guesses the token k + 1 positions
ahead (the base itself predicts t + 1): ``logits_k = output(h + SiLU(W_k h))`` with the base's output
projection shared and W_k zero-initialized, so every head starts as a copy of the base prediction. The
heads train on a frozen base (``freeze_base``) or jointly with it; head k's loss is weighted ``decay^k``.

``medusa_generate`` keeps one *pending* token — already chosen by the base distribution but not yet run
through the model — and the hidden state that chose it. Each round the heads draft K tokens after the
pending one, and one forward pass over [pending, d_1 .. d_K] gives the base's distribution after each.
Drafts are accepted left to right while the base agrees:

- greedy: d_i is accepted iff it equals the base's argmax after the accepted prefix. The next pending
  token is the base's argmax after the last accepted draft, so the output is exactly greedy decoding.
- sampling: d_i ~ q_i (head i's distribution, same temperature / top-k / top-p) is accepted with
  probability min(1, p(d_i) / q_i(d_i)); on the first rejection the next pending token is drawn from
  the residual max(0, p - q_i) / Z, and when all are accepted from p after the last draft. This is the
  speculative-sampling rule (Leviathan et al. 2023; Chen et al. 2023): every emitted token is distributed
  exactly as the base model's p given the tokens before it. q_i depends only on the state before the
  round, never on the drafts it checks, which is what the argument needs.

The cache is rolled back over rejected drafts by setting its length. One round emits 1 + (accepted) tokens
for one forward pass of K + 1 tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openwfm.autoregressive.model import ARTransformer, KVCache
from openwfm.autoregressive.sampling import SamplingConfig, token_probs


class MedusaHeads(nn.Module):
    def __init__(self, dim: int, num_heads: int = 7):
        super().__init__()
        self.num_heads = num_heads
        self.res = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(num_heads))
        for lin in self.res:
            nn.init.zeros_(lin.weight)

    def forward(self, h: torch.Tensor, output: nn.Module, num: int | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """(K, ..., vocab) logits of the first ``num`` (default all K) heads for hidden states h (..., dim);
        the heads' layers run as one fused matmul (Cosmos' concatenated heads), then one vocabulary projection
        — onto the vocabulary ``rows`` only when given ((K, ..., len(rows)) logits over those tokens)."""
        res = self.res[:num]
        w = torch.cat([lin.weight for lin in res])  # (k * dim, dim)
        r = F.silu(F.linear(h, w)).unflatten(-1, (len(res), h.shape[-1])).movedim(-2, 0)  # (k, ..., dim)
        return output(h + r) if rows is None else F.linear(h + r, output.weight[rows])


def medusa_loss(heads: MedusaHeads, hidden: torch.Tensor, output: nn.Module, tokens: torch.Tensor,
                decay: float = 0.8, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Head k at position t predicts ``tokens[:, t + k + 1]``; hidden (B, n, dim) are the states after
    ``tokens[:, :n]``. Loss sum_k decay^k CE_k over ``positions`` (default: all; a subset keeps the K
    vocabulary-wide projections affordable); also each head's top-1 accuracy."""
    n = hidden.shape[1]
    pos = torch.arange(n, device=hidden.device) if positions is None else positions.to(hidden.device)
    logits = heads(hidden[:, pos], output)
    total, stats = hidden.new_zeros(()), {}
    for k in range(1, heads.num_heads + 1):
        valid = pos + k + 1 < tokens.shape[1]
        if not valid.any():
            break
        lk, target = logits[k - 1][:, valid].float(), tokens[:, pos[valid] + k + 1]
        total = total + decay ** k * F.cross_entropy(lk.flatten(0, 1), target.flatten())
        stats[f"medusa{k}_acc"] = float((lk.argmax(-1) == target).float().mean())
    return total, stats


@torch.no_grad()
def medusa_generate(model: ARTransformer, heads: MedusaHeads, prompt: torch.Tensor, num_new: int,
                    cfg: SamplingConfig | None = None, context: torch.Tensor | None = None,
                    context_mask: torch.Tensor | None = None, shape: tuple[int, int, int] | None = None,
                    num_draft: int | None = None, actions: torch.Tensor | None = None,
                    callback=None, draft_vocab: str = "context") -> tuple[torch.Tensor, dict]:
    """(B, P + num_new) tokens and statistics (rounds, mean accepted drafts per round, acceptance rate);
    ``callback(done)`` after each round with the new tokens so far (one row).
    Rows of a batch are decoded one after another (their accepted lengths differ).

    ``draft_vocab="context"`` (default): the heads draft only among the tokens already in the sequence
    (a video's tokens repeat across space and time), so drafting projects onto a few hundred vocabulary
    rows instead of all of them — on a CPU the K vocabulary-wide head projections cost more than the drafts
    save. Verification is unchanged (the base model's full distribution), so greedy output stays exactly
    greedy and sampling keeps the base distribution (a draft law that is zero outside the context is still
    a law). ``"all"``: the heads' full distributions."""
    if draft_vocab not in ("context", "all"):
        raise ValueError(f"draft_vocab must be 'context' or 'all', got '{draft_vocab}'")
    cfg = cfg or SamplingConfig()
    if prompt.shape[0] > 1:
        rows = [medusa_generate(model, heads, prompt[i:i + 1], num_new, cfg,
                                None if context is None else context[i:i + 1],
                                None if context_mask is None else context_mask[i:i + 1], shape, num_draft,
                                None if actions is None else actions[i:i + 1], None, draft_vocab)
                for i in range(prompt.shape[0])]
        stats = {k: sum(r[1][k] for r in rows) for k in ("rounds", "drafted", "accepted")}
        return torch.cat([r[0] for r in rows]), _rates(stats)
    k_max = heads.num_heads if num_draft is None else min(num_draft, heads.num_heads)
    gen = torch.Generator().manual_seed(cfg.seed)
    greedy = cfg.temperature <= 0
    total = prompt.shape[1] + num_new
    cache = KVCache(model.cfg, 1, total + k_max + 1, prompt.device, next(model.parameters()).dtype)
    logits, hidden = model(prompt, cache, context, context_mask, shape, return_hidden=True, last_only=True,
                           actions=actions)
    pending = int(logits[0, -1].argmax()) if greedy else _draw(token_probs(logits[0, -1], cfg), gen)
    h = hidden[0, -1]
    out = prompt[0].tolist() + [pending]
    stats = {"rounds": 0, "drafted": 0, "accepted": 0}
    vocab = model.output.weight.shape[0]
    seen = torch.zeros(vocab, dtype=torch.bool, device=prompt.device)
    rows = None
    while len(out) < total:
        k = min(k_max, total - len(out))  # drafts beyond the requested length are never needed
        if draft_vocab == "context":
            new_rows = torch.tensor([t for t in out[-k_max - 1:] if t < vocab] if rows is not None else
                                    [t for t in out if t < vocab], dtype=torch.long, device=prompt.device)
            if rows is None or not bool(seen[new_rows].all()):
                seen[new_rows] = True
                rows = seen.nonzero()[:, 0]
        head_logits = heads(h, model.output, k, rows)  # (k, vocab or len(rows))
        if greedy:
            drafts = head_logits.argmax(-1)
        else:
            q = token_probs(head_logits, cfg)
            drafts = torch.multinomial(q.cpu(), 1, generator=gen)[:, 0].to(q.device)
        if rows is not None:  # back to vocabulary indices (and the draft law over the whole vocabulary)
            drafts = rows[drafts]
            if not greedy:
                q = torch.zeros(k, vocab, device=q.device).index_copy_(1, rows, q)
        step = torch.cat([torch.tensor([pending], device=prompt.device), drafts])[None]
        start = cache.length
        logits, hidden = model(step, cache, context, context_mask, shape, return_hidden=True, actions=actions)
        if greedy:  # the longest prefix of drafts equal to the base's argmax; then the base's next token
            base = logits[0].argmax(-1)
            agree = (base[:k] == drafts).int()
            accepted = int(agree.cumprod(0).sum())
            nxt = int(base[accepted])
        else:
            p = token_probs(logits[0], cfg)  # (k + 1, vocab): the base's distribution after each input
            accepted, nxt = 0, None
            for i in range(k):
                d = int(drafts[i])
                if torch.rand((), generator=gen).item() >= min(1.0, float(p[i, d] / q[i, d])):
                    resid = (p[i] - q[i]).clamp_min(0)
                    nxt = _draw(resid / resid.sum() if resid.sum() > 0 else p[i], gen)
                    break
                accepted += 1
            if nxt is None:
                nxt = _draw(p[accepted], gen)
        out += drafts[:accepted].tolist() + [nxt]
        pending, h = nxt, hidden[0, accepted]
        cache.length = start + 1 + accepted  # drop the rejected drafts' keys and values
        stats["rounds"] += 1
        if callback is not None:
            callback(min(len(out), total) - prompt.shape[1])
        stats["drafted"] += k
        stats["accepted"] += accepted
    return torch.tensor([out[:total]], device=prompt.device), _rates(stats)


def _draw(probs: torch.Tensor, gen: torch.Generator) -> int:
    return int(torch.multinomial(probs.float().cpu(), 1, generator=gen))


def _rates(stats: dict) -> dict:
    r = max(1, stats["rounds"])
    return {**stats, "accepted_per_round": stats["accepted"] / r,
            "acceptance_rate": stats["accepted"] / max(1, stats["drafted"])}
