"""Next-token distributions and generation with a KV cache (Cosmos paper sec. 5.2: top-p 0.8, T 1).

``token_probs`` turns logits into the distribution actually sampled from: temperature, then top-k (the k
most likely), then top-p (nucleus, Holtzman et al. 2020: the smallest set of most likely tokens whose
mass reaches p). ``temperature = 0`` is greedy. ``generate`` prefills the prompt once, then feeds one
token at a time through the cache; a seeded ``torch.Generator`` makes it reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from openwfm.autoregressive.model import ARTransformer, KVCache


@dataclass
class SamplingConfig:
    temperature: float = 1.0  # 0: greedy
    top_p: float = 0.8  # 1: off
    top_k: int = 0  # 0: off
    seed: int = 0


def top_p_mask(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Bool mask (same shape) of the smallest set of most likely entries whose mass is >= p (at least one)."""
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass of the strictly more likely entries
    keep_sorted = before < p
    keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def token_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The distribution (float32, rows sum to 1) sampled from; a one-hot argmax when greedy."""
    logits = logits.float()
    if cfg.temperature <= 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / cfg.temperature
    if cfg.top_k > 0:
        kth = logits.topk(min(cfg.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if cfg.top_p < 1:
        probs = probs * top_p_mask(probs, cfg.top_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (..., vocab) logits."""
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    probs = token_probs(logits, cfg)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat.cpu(), 1, generator=generator).view(probs.shape[:-1]).to(logits.device)


@torch.no_grad()
def generate(model: ARTransformer, prompt: torch.Tensor, num_new: int, cfg: SamplingConfig | None = None,
             context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
             shape: tuple[int, int, int] | None = None, use_cache: bool = True,
             actions: torch.Tensor | None = None, callback=None) -> torch.Tensor:
    """(B, P + num_new) tokens: ``prompt`` (B, P) continued (``callback(done)`` after each new token). ``use_cache=False`` recomputes the whole
    sequence for every token (the reference the cache is checked and benchmarked against). ``actions``
    (B, T, action_dim): an action-conditioned model's actions per latent frame."""
    cfg = cfg or SamplingConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    seq = prompt
    cache = KVCache(model.cfg, prompt.shape[0], prompt.shape[1] + num_new, prompt.device,
                    next(model.parameters()).dtype) if use_cache else None
    step_in = prompt
    for _ in range(num_new):
        logits = model(step_in if use_cache else seq, cache, context, context_mask, shape, last_only=True,
                       actions=actions)[:, -1]
        nxt = sample(logits, cfg, gen)[:, None]
        seq = torch.cat([seq, nxt], 1)
        step_in = nxt
        if callback is not None:
            callback(seq.shape[1] - prompt.shape[1])
    return seq
