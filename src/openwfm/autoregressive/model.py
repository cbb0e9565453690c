"""The autoregressive world model: a decoder-only transformer over discrete video tokens (Cosmos paper
sec. 5.2, Fig. 10).

Tokens are a DV tokenizer's FSQ indices of a latent video (T, H, W), flattened t-major. Every block:

    x += abs_pos                                (optional: fixed sin/cos or learnable, axis-factorized)
    x += SelfAttn(RMSNorm(x))                   (grouped-query attention, QK RMSNorm, 3D RoPE [+ YaRN])
    x += CrossAttn(RMSNorm(x), text)            (Video2World models, every ``cross_attn_every`` blocks)
    x += SwiGLU(RMSNorm(x))

then RMSNorm and an untied output projection to the vocabulary. No biases. Video2World models prepend a
``<bov>`` token (id ``vocab_size``: the input table has one more row) that has no grid position (identity
rotation, zero position embedding). ``forward`` takes a ``KVCache`` to generate one (or a few) tokens at
a time; the training loss adds the z-loss ``z_loss * mean(logsumexp(logits)^2)`` (PaLM; 1e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from openwfm.autoregressive.rope import YarnConfig, rope_table
from openwfm.config import ConfigError, register_preset
from openwfm.diffusion.dit import RMSNorm
from openwfm.diffusion.rope import apply_rope, head_split


@dataclass
class ARConfig:
    vocab_size: int = 64000  # FSQ codebook of the DV tokenizer
    n_layers: int = 16
    dim: int = 4096
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    ffn_hidden_size: int = 14336
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    latent_shape: tuple[int, int, int] = (5, 40, 64)  # largest token grid (T, H, W) of a training clip
    yarn: YarnConfig = field(default_factory=YarnConfig)
    abs_pos_emb: str = "none"  # none | sincos | learnable (axis-factorized, concatenated t / h / w)
    cross_attn_every: int = 0  # 0: no text; k: cross-attention in every k-th block (Video2World: 1)
    context_dim: int = 1024  # text embedding width (T5-XXL)
    bov_token: bool = False  # a <bov> token starts every sequence (Video2World)
    action_dim: int = 0  # robot post-training: actions per latent frame, MLP-embedded into its tokens
    z_loss: float = 1e-4

    def validate(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"ar: n_heads {self.n_heads} must be a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim < 6 or self.head_dim % 2:
            raise ConfigError(f"ar: head_dim {self.head_dim} must be even and >= 6 (3D RoPE splits it in t/h/w)")
        if self.abs_pos_emb not in ("none", "sincos", "learnable"):
            raise ConfigError(f"ar: abs_pos_emb must be none, sincos or learnable, got '{self.abs_pos_emb}'")

    @property
    def seq_len(self) -> int:
        t, h, w = self.latent_shape
        return t * h * w + int(self.bov_token)


def _preset(name, **kw):
    register_preset(ARConfig, name)(lambda: ARConfig(**kw))


_12B = dict(n_layers=40, dim=5120, yarn=YarnConfig(2.0, 4.0, 1.0, (3, 40, 64)))
_V2W = dict(cross_attn_every=1, bov_token=True, abs_pos_emb="sincos")
_preset("cosmos-1.0-4b")
_preset("cosmos-1.0-12b", **_12B)
_preset("cosmos-1.0-5b-video2world", **_V2W)
_preset("cosmos-1.0-13b-video2world", **_12B, **_V2W)
_TINY = dict(vocab_size=64000, n_layers=2, dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn_hidden_size=128,
             latent_shape=(5, 16, 16), abs_pos_emb="learnable", rope_theta=10000.0)
_preset("tiny", **_TINY)
_preset("tiny-v2w", **{**_TINY, "cross_attn_every": 1, "bov_token": True, "context_dim": 384})


class KVCache:
    """Keys and values of every layer for ``max_len`` positions; ``length`` of them are filled.
    Setting ``length`` back drops the tail (speculative decoding rolls rejected drafts back this way)."""

    def __init__(self, cfg: ARConfig, batch: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.length, self.max_len = 0, max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new (B, kv, n, D) keys / values after the filled part; all keys / values so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions > max_len {self.max_len}")
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class _Attention(nn.Module):
    """Projections shared by self- and cross-attention: GQA heads, QK RMSNorm per head, no biases."""

    def __init__(self, cfg: ARConfig, kv_dim: int):
        super().__init__()
        self.h, self.kv, self.d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(kv_dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(kv_dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.q_norm, self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps), RMSNorm(cfg.head_dim, cfg.norm_eps)

    def qkv(self, x: torch.Tensor, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, heads, n, D) queries of x and (B, kv_heads, m, D) keys / values of src."""
        b, n, m = x.shape[0], x.shape[1], src.shape[1]
        q = self.q_norm(self.wq(x).view(b, n, self.h, self.d)).transpose(1, 2)
        k = self.k_norm(self.wk(src).view(b, m, self.kv, self.d)).transpose(1, 2)
        return q, k, self.wv(src).view(b, m, self.kv, self.d).transpose(1, 2)

    def out(self, o: torch.Tensor) -> torch.Tensor:
        return self.wo(o.transpose(1, 2).flatten(2))


class SelfAttention(_Attention):
    def __init__(self, cfg: ARConfig):
        super().__init__(cfg, cfg.dim)

    def forward(self, x, cos, sin, layer: int, cache: KVCache | None = None) -> torch.Tensor:
        n = x.shape[1]
        q, k, v = self.qkv(x, x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)
        # causal: query i (absolute position past + i) sees keys 0 .. past + i
        mask = None if n == 1 else torch.ones(n, past + n, dtype=torch.bool, device=x.device).tril(past)
        return self.out(F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask,
                                                       enable_gqa=True))


class CrossAttention(_Attention):
    """Queries from the video tokens, keys / values from the text (no rotation)."""

    def __init__(self, cfg: ARConfig):
        super().__init__(cfg, cfg.context_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None):
        q, k, v = self.qkv(x, context)
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        return self.out(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ARConfig, cross: bool):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(cfg.dim, cfg.norm_eps), SelfAttention(cfg)
        self.cross = CrossAttention(cfg) if cross else None
        self.cross_norm = RMSNorm(cfg.dim, cfg.norm_eps) if cross else None
        self.ffn_norm, self.ffn = RMSNorm(cfg.dim, cfg.norm_eps), SwiGLU(cfg.dim, cfg.ffn_hidden_size)

    def forward(self, x, cos, sin, layer, cache=None, context=None, context_mask=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, layer, cache)
        if self.cross is not None:
            if context is None:
                raise ValueError("this model attends to text: pass context (B, L, context_dim)")
            x = x + self.cross(self.cross_norm(x), context, context_mask)
        return x + self.ffn(self.ffn_norm(x))


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """(n, dim) fixed [sin | cos] position features (Vaswani et al.), dim even."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    a = torch.outer(torch.arange(n, dtype=torch.float64), freqs)
    return torch.cat([a.sin(), a.cos()], -1).float()


class AbsPosEmb(nn.Module):
    """Axis-factorized absolute positions concatenated over channels: h and w get dim // 6 * 2 each, t the
    rest; fixed sin/cos or learnable tables covering ``max_shape``."""

    def __init__(self, dim: int, max_shape: tuple[int, int, int], learnable: bool):
        super().__init__()
        dt, dh, dw = head_split(dim)
        tables = [sincos_1d(n, d) for n, d in zip(max_shape, (dt, dh, dw))]
        self.learnable = learnable
        if learnable:
            self.t, self.h, self.w = (nn.Parameter(0.02 * torch.randn(n, d)) for n, d in zip(max_shape, (dt, dh, dw)))
        else:
            for name, tab in zip("thw", tables):
                self.register_buffer(name, tab, persistent=False)

    def forward(self, shape: tuple[int, int, int]) -> torch.Tensor:
        t, h, w = shape
        if t > self.t.shape[0] or h > self.h.shape[0] or w > self.w.shape[0]:
            raise ValueError(f"token grid {shape} exceeds the position table {tuple(x.shape[0] for x in (self.t, self.h, self.w))}")
        parts = [self.t[:t, None, None].expand(t, h, w, -1), self.h[None, :h, None].expand(t, h, w, -1),
                 self.w[None, None, :w].expand(t, h, w, -1)]
        return torch.cat(parts, -1).reshape(t * h * w, -1)


class ARTransformer(nn.Module):
    def __init__(self, cfg: ARConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size + int(cfg.bov_token), cfg.dim)
        k = cfg.cross_attn_every
        self.blocks = nn.ModuleList(Block(cfg, cross=k > 0 and i % k == 0) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.action_embed = None
        if cfg.action_dim:  # zero-initialized output: an action-conditioned model starts as its base
            self.action_embed = nn.Sequential(nn.Linear(cfg.action_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.pos_emb = None
        if cfg.abs_pos_emb != "none":
            ys = cfg.yarn.scale if cfg.yarn.scale > 1 else 1  # room for the extended axes
            max_shape = tuple(math.ceil(n * (ys if ext else 1)) for n, ext in zip(cfg.latent_shape, cfg.yarn.axes))
            self.pos_emb = AbsPosEmb(cfg.dim, max_shape, cfg.abs_pos_emb == "learnable")
        self._rope: dict = {}
        self.apply(self._init)
        if self.action_embed is not None:
            nn.init.zeros_(self.action_embed[2].weight)
            nn.init.zeros_(self.action_embed[2].bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def positions(self, start: int, n: int, shape: tuple[int, int, int], device) -> tuple[torch.Tensor, ...]:
        """(cos, sin, pos) for sequence indices [start, start + n) of a token grid ``shape`` (T, H, W);
        index 0 is <bov> when the model has one (identity rotation, zero position embedding)."""
        shape = tuple(shape)
        key = (shape, str(device))
        if key not in self._rope:
            cos, sin = rope_table(shape, self.cfg.head_dim, self.cfg.rope_theta, self.cfg.yarn, device)
            fixed = self.pos_emb is not None and not self.pos_emb.learnable
            pos = self.pos_emb(shape).to(device) if fixed else None
            if self.cfg.bov_token:
                cos = torch.cat([torch.ones_like(cos[:1]), cos])
                sin = torch.cat([torch.zeros_like(sin[:1]), sin])
            self._rope[key] = (cos, sin, pos)
        cos, sin, pos = self._rope[key]
        if self.pos_emb is not None and pos is None:  # learnable: recomputed for the autograd graph
            pos = self.pos_emb(shape)
        if pos is not None and self.cfg.bov_token:
            pos = torch.cat([torch.zeros_like(pos[:1]), pos])
        if start + n > cos.shape[0]:
            raise ValueError(f"positions {start}..{start + n} exceed the grid {shape} ({cos.shape[0]} tokens)")
        sl = slice(start, start + n)
        return cos[sl], sin[sl], (pos[sl] if pos is not None else None)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, shape: tuple[int, int, int] | None = None,
                return_hidden: bool = False, last_only: bool = False, actions: torch.Tensor | None = None):
        """Logits (B, n, vocab) of the next token after each of ``tokens`` (B, n), which lie on the token
        grid ``shape`` (default: ``latent_shape``); with a cache, ``tokens`` continue the cached sequence.
        ``return_hidden`` also returns the final normalized states; ``last_only`` projects only the last
        position to the vocabulary (all that generation needs). ``actions`` (B, T, action_dim): the actions
        leading into each latent frame, embedded and added to that frame's tokens."""
        start = cache.length if cache is not None else 0
        cos, sin, pos = self.positions(start, tokens.shape[1], shape or self.cfg.latent_shape, tokens.device)
        x = self.tok_embeddings(tokens)
        if self.action_embed is not None:
            if actions is None:
                raise ValueError("this model is action-conditioned: pass actions (B, T, action_dim)")
            hw = shape[1] * shape[2] if shape else self.cfg.latent_shape[1] * self.cfg.latent_shape[2]
            idx = torch.arange(start, start + tokens.shape[1], device=tokens.device) - int(self.cfg.bov_token)
            frame = (idx.clamp_min(0) // hw).clamp_max(actions.shape[1] - 1)
            a = self.action_embed(actions.to(x.dtype))[:, frame]  # (B, n, dim)
            x = x + a * (idx >= 0).to(x.dtype)[None, :, None]  # <bov> gets none
        for i, blk in enumerate(self.blocks):
            if pos is not None:
                x = x + pos.to(x.dtype)
            x = blk(x, cos, sin, i, cache, context, context_mask)
        if cache is not None:
            cache.length += tokens.shape[1]
        h = self.norm(x[:, -1:] if last_only else x)
        logits = self.output(h)
        return (logits, h) if return_hidden else logits


def ar_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 1e-4, ignore_index: int = -100
            ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy + z-loss ``z_loss * mean(logsumexp(logits)^2)`` over the positions with a target."""
    logits = logits.float()
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
    lse = torch.logsumexp(logits, dim=-1)
    valid = targets != ignore_index
    z = (lse[valid] ** 2).mean() if valid.any() else lse.sum() * 0
    return ce + z_loss * z, {"ce": float(ce.detach()), "z": float(z.detach())}


def count_params(cfg: ARConfig) -> int:
    """Parameters of a model built on the meta device (no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in ARTransformer(cfg).parameters())
