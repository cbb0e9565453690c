"""The Cosmos diffusion transformer (Cosmos paper sec. 5.1, Fig. 7): the network F of EDM's denoiser.

Latent video (B, C, T, H, W) [+ condition-mask channel] + padding-mask channel -> 3D patches (1, 2, 2) ->
linear embedding -> N blocks -> AdaLN -> linear -> unpatchify. Every block:

    x += pos_emb                                            (learnable, axis-factorized, RMS-normalized)
    x += gate1 * SelfAttn(AdaLN1(x))                        (QK RMSNorm per head, 3D RoPE)
    x += gate2 * CrossAttn(AdaLN2(x), text)                 (QK RMSNorm per head)
    x += gate3 * MLP(AdaLN3(x))                             (GELU, ratio 4, no biases)

AdaLN-LoRA: the timestep embedding gives a shared (shift, scale, gate) for all blocks through a 2-layer
MLP; each AdaLN adds its own rank-r projection of the (RMS-normalized) sinusoidal embedding. The noise
input is EDM's c_noise (``WorldModel.denoise`` runs it through ``edm.precondition``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from openwfm.diffusion.rope import apply_rope, rope_angles
from openwfm.nn.context_parallel import context_parallel_attention, gather_sequence, shard_sequence


@dataclass
class DiTConfig:
    in_channels: int = 16  # latent channels (the condition-mask channel is extra, see condition_mask)
    out_channels: int = 16
    model_channels: int = 4096
    num_blocks: int = 28
    num_heads: int = 32
    mlp_ratio: float = 4.0
    crossattn_emb_channels: int = 1024  # text embedding width
    adaln_lora_dim: int = 256
    patch_spatial: int = 2
    patch_temporal: int = 1
    max_size: tuple[int, int, int] = (128, 240, 240)  # latent (T, H, W) the position embedding covers
    rope_extrapolation: tuple[float, float, float] = (2.0, 1.0, 1.0)  # NTK length scale for (t, h, w)
    base_fps: float = 24.0
    pos_emb_learnable: bool = True
    concat_padding_mask: bool = True
    condition_mask: bool = False  # Video2World: one more input channel marking the conditioning frames
    extra_channels: int = 0  # conditioning features concatenated to the input (the AR diffusion decoder's tokens)
    action_dim: int = 0  # robot post-training: an action vector per sample (B, A) or per latent frame (B, T, A),
    # MLP-embedded into the timestep embedding (per frame: that frame's tokens get their own modulation)
    qk_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.model_channels // self.num_heads

    def validate(self) -> None:
        from openwfm.config import ConfigError

        if self.model_channels % self.num_heads:
            raise ConfigError(f"dit: model_channels {self.model_channels} must be a multiple of num_heads "
                              f"{self.num_heads}")
        if self.head_dim < 6 or self.head_dim % 2:
            raise ConfigError(f"dit: head dim {self.head_dim} must be even and >= 6 (3D RoPE splits it in t/h/w)")
        if min(self.max_size) < 1 or self.patch_spatial < 1 or self.patch_temporal < 1:
            raise ConfigError("dit: max_size and patch sizes must be >= 1")


def timestep_features(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos | sin] of c_noise * 10000^(-i / (dim/2)), i < dim/2 (the transformer's sinusoid)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
    a = c_noise.float()[..., None] * freqs
    return torch.cat([a.cos(), a.sin()], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(var + self.eps)).to(self.weight.dtype) * self.weight


class AdaLNLoRA(nn.Module):
    """LayerNorm (no affine) modulated by shift/scale(/gate) = shared + up(down(silu(t_emb)))."""

    def __init__(self, dim: int, rank: int, n_out: int):
        super().__init__()
        self.n_out = n_out
        self.lora_down = nn.Linear(dim, rank, bias=False)
        self.lora_up = nn.Linear(rank, n_out * dim, bias=False)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, shared: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mod = self.lora_up(self.lora_down(F.silu(t_emb))) + shared[..., : self.n_out * x.shape[-1]]
        parts = mod.chunk(self.n_out, dim=-1)
        shift, scale = parts[0], parts[1]
        h = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale) + shift
        return (h, *parts[2:])


class Attention(nn.Module):
    """Multi-head attention with per-head QK RMSNorm; RoPE on self-attention queries and keys."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(context_dim or dim, dim, bias=False)
        self.v = nn.Linear(context_dim or dim, dim, bias=False)
        self.q_norm = RMSNorm(dim // heads, eps)
        self.k_norm = RMSNorm(dim // heads, eps)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, rope=None,
                mask: torch.Tensor | None = None, cp_group=None) -> torch.Tensor:
        ctx = x if context is None else context

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, S, D)

        q, k, v = self.q_norm(heads(self.q(x))), self.k_norm(heads(self.k(ctx))), heads(self.v(ctx))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if context is None and cp_group is not None:  # self-attention over the whole sharded sequence
            y = context_parallel_attention(q, k, v, group=cp_group)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d, r = cfg.model_channels, cfg.adaln_lora_dim
        self.adaln_self = AdaLNLoRA(d, r, 3)
        self.self_attn = Attention(d, cfg.num_heads, eps=cfg.qk_norm_eps)
        self.adaln_cross = AdaLNLoRA(d, r, 3)
        self.cross_attn = Attention(d, cfg.num_heads, cfg.crossattn_emb_channels, eps=cfg.qk_norm_eps)
        self.adaln_mlp = AdaLNLoRA(d, r, 3)
        hidden = int(d * cfg.mlp_ratio)
        self.fc1 = nn.Linear(d, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d, bias=False)

    def forward(self, x, t_emb, shared, text, rope, pos_emb=None, text_mask=None, cp_group=None):
        if pos_emb is not None:
            x = x + pos_emb
        h, gate = self.adaln_self(x, t_emb, shared)
        x = x + gate * self.self_attn(h, rope=rope, cp_group=cp_group)
        h, gate = self.adaln_cross(x, t_emb, shared)
        x = x + gate * self.cross_attn(h, text, mask=text_mask)
        h, gate = self.adaln_mlp(x, t_emb, shared)
        return x + gate * self.fc2(F.gelu(self.fc1(h)))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d, p, pt = cfg.model_channels, cfg.patch_spatial, cfg.patch_temporal
        c_in = cfg.in_channels + int(cfg.condition_mask) + int(cfg.concat_padding_mask) + cfg.extra_channels
        self.x_embedder = nn.Linear(c_in * pt * p * p, d, bias=False)
        self.t_fc1 = nn.Linear(d, d, bias=False)  # shared AdaLN modulation: sinusoid -> silu MLP -> 3d
        self.t_fc2 = nn.Linear(d, 3 * d, bias=False)
        self.t_norm = RMSNorm(d)
        if cfg.action_dim:  # zero-initialized output: the action-conditioned model starts as the base model
            self.action_embed = nn.Sequential(nn.Linear(cfg.action_dim, d), nn.SiLU(), nn.Linear(d, d))
            nn.init.zeros_(self.action_embed[2].weight)
            nn.init.zeros_(self.action_embed[2].bias)
        if cfg.pos_emb_learnable:
            t, h, w = cfg.max_size[0] // pt, cfg.max_size[1] // p, cfg.max_size[2] // p
            self.pos_t, self.pos_h, self.pos_w = (nn.Parameter(torch.zeros(n, d)) for n in (t, h, w))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_blocks))
        self.final_adaln = AdaLNLoRA(d, cfg.adaln_lora_dim, 2)
        self.final_proj = nn.Linear(d, pt * p * p * cfg.out_channels, bias=False)

    # --------------------------------------------------------------------------------------- pieces
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, T'H'W', C*pt*p*p), tokens t-major, features (C, pt, p, p)."""
        b, c, t, h, w = x.shape
        p, pt = self.cfg.patch_spatial, self.cfg.patch_temporal
        x = x.reshape(b, c, t // pt, pt, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // pt) * (h // p) * (w // p), -1)

    def unpatchify(self, y: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
        """(B, S, p*p*pt*C) with features ordered (p_h, p_w, p_t, C) -> (B, C, T, H, W)."""
        p, pt = self.cfg.patch_spatial, self.cfg.patch_temporal
        b = y.shape[0]
        y = y.reshape(b, t // pt, h // p, w // p, p, p, pt, -1)
        return y.permute(0, 7, 1, 6, 2, 4, 3, 5).reshape(b, -1, t, h, w)

    def position_embedding(self, t: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, t*h*w, d): pos_t[i] + pos_h[j] + pos_w[k], each token's vector RMS-normalized."""
        if t > self.pos_t.shape[0] or h > self.pos_h.shape[0] or w > self.pos_w.shape[0]:
            raise ValueError(f"a latent of {t}x{h}x{w} patches exceeds the position embedding's max_size "
                             f"{tuple(self.cfg.max_size)} (in latent pixels)")
        e = self.pos_t[:t, None, None] + self.pos_h[None, :h, None] + self.pos_w[None, None, :w]
        e = e.reshape(1, t * h * w, -1)
        rms = torch.linalg.vector_norm(e, dim=-1, keepdim=True, dtype=torch.float32) / math.sqrt(e.shape[-1])
        return (e / (rms + 1e-6)).to(dtype)

    # -------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor | None = None, fps: float | None = None,
                padding_mask: torch.Tensor | None = None, condition_mask: torch.Tensor | None = None,
                t_offset: int = 0, cp_group=None, extra: torch.Tensor | None = None,
                action: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T, H, W); c_noise (B,); text (B, L, crossattn_emb_channels); text_mask (B, L) bool,
        True where a token counts (None: all; Cosmos zeroes padded embeddings instead); padding_mask
        (B, 1, H_px, W_px) or (B, 1, H, W), 1 on padding (None: no padding); condition_mask (B, 1, T, H, W);
        extra (B, extra_channels, T, H, W) conditioning features; action (B, action_dim): its embedding is
        added to the timestep embedding, so it reaches the shared modulation and every AdaLN-LoRA term.
        ``cp_group``: context parallelism; every rank passes the same inputs, keeps 1/cp of the tokens
        through the blocks, and gets the whole output back (each rank's gradient covers its own tokens:
        see ``local_mask``)."""
        cfg = self.cfg
        b, _, t, h, w = x.shape
        p, pt = cfg.patch_spatial, cfg.patch_temporal
        if t % pt or h % p or w % p:
            raise ValueError(f"latent {t}x{h}x{w} is not a multiple of the patch ({pt}, {p}, {p})")
        parts = [x]
        if cfg.condition_mask:
            if condition_mask is None:
                raise ValueError("this DiT takes a condition_mask channel (Video2World); pass zeros for none")
            parts.append(condition_mask.to(x.dtype))
        if cfg.concat_padding_mask:
            pm = torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device) if padding_mask is None else \
                F.interpolate(padding_mask.to(x.dtype), size=(h, w), mode="nearest")
            parts.append(pm[:, :, None].expand(b, -1, t, -1, -1))  # a (1, 1, H, W) mask serves the batch
        if cfg.extra_channels:
            if extra is None or extra.shape[1] != cfg.extra_channels or extra.shape[2:] != x.shape[2:]:
                raise ValueError(f"this DiT takes {cfg.extra_channels} extra input channels shaped like x "
                                 f"{tuple(x.shape[2:])}; got {None if extra is None else tuple(extra.shape)}")
            parts.append(extra.to(x.dtype))
        tokens = self.x_embedder(self.patchify(torch.cat(parts, dim=1)))
        tt, th, tw = t // pt, h // p, w // p

        emb = timestep_features(c_noise, cfg.model_channels).to(tokens.dtype)  # (B, d)
        emb = emb[:, None]  # (B, 1, d): one modulation for every token
        if cfg.action_dim:
            if action is None or action.shape not in ((b, cfg.action_dim), (b, tt, cfg.action_dim)):
                raise ValueError(f"this DiT is action-conditioned: pass action ({b}, {cfg.action_dim}) or per latent "
                                 f"frame ({b}, {tt}, {cfg.action_dim}), got {None if action is None else tuple(action.shape)}")
            a = self.action_embed(action.to(tokens.dtype))
            # per frame: (B, T, d) -> each frame's tokens (t-major order) get their frame's embedding
            emb = emb + (a[:, None] if a.ndim == 2 else a.repeat_interleave(th * tw, dim=1))
        shared = self.t_fc2(F.silu(self.t_fc1(emb)))
        t_emb = self.t_norm(emb)
        rope = rope_angles(tt, th, tw, cfg.head_dim, fps, cfg.base_fps, cfg.rope_extrapolation, t_offset,
                           tokens.device)
        pos = self.position_embedding(tt, th, tw, tokens.dtype) if cfg.pos_emb_learnable else None
        mask = None if text_mask is None else text_mask[:, None, None, :].bool()
        if cp_group is not None:
            lo, hi = _chunk(tokens.shape[1], cp_group)
            tokens, rope = shard_sequence(tokens, 1, cp_group), (rope[0][lo:hi], rope[1][lo:hi])
            pos = shard_sequence(pos, 1, cp_group) if pos is not None else None
            if t_emb.shape[1] > 1:  # per-token modulation follows the tokens
                t_emb, shared = shard_sequence(t_emb, 1, cp_group), shard_sequence(shared, 1, cp_group)
        for block in self.blocks:
            tokens = block(tokens, t_emb, shared, text, rope, pos, mask, cp_group)
        h_out, = self.final_adaln(tokens, t_emb, shared)
        out = self.final_proj(h_out)
        if cp_group is not None:
            out = gather_sequence(out, 1, cp_group)
        return self.unpatchify(out, t, h, w)

    def local_mask(self, x: torch.Tensor, cp_group) -> torch.Tensor:
        """(1, 1, T, H, W) mask of the latent elements whose tokens this context-parallel rank computes;
        a loss averaged over them (and then over ranks, as the trainer does) is the whole loss."""
        _, _, t, h, w = x.shape
        p, pt = self.cfg.patch_spatial, self.cfg.patch_temporal
        n = (t // pt) * (h // p) * (w // p)
        lo, hi = _chunk(n, cp_group)
        tok = torch.zeros(1, n, pt * p * p, dtype=x.dtype, device=x.device)
        tok[:, lo:hi] = 1
        return self.unpatchify(tok, t, h, w)


def _chunk(n: int, group) -> tuple[int, int]:
    import torch.distributed as dist

    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if n % world:
        raise ValueError(f"{n} tokens are not divisible by the context-parallel size {world}; change the "
                         "latent size or dist.context_parallel")
    return rank * n // world, (rank + 1) * n // world


def repatch_state(state: dict[str, torch.Tensor], cfg: DiTConfig, patch: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """A warm start for the same DiT with a finer spatial patch ``patch`` (dividing ``cfg.patch_spatial``):
    the blocks are copied; the patch embedding is summed over each f x f group of sub-patches (f = old / new),
    so a token embeds as the old token of a patch repeating it; the output projection is averaged over them;
    the h / w position tables repeat each entry f times. With no blocks between them, the new network's output
    on an input constant over each old patch is the old output's mean over that patch (tested); with blocks it
    is a starting point (attention sees f^2 tokens, and RoPE positions f times as far apart). ``prefix``: the
    DiT's key prefix in ``state`` (``"net."`` in a WorldModel's)."""
    old = cfg.patch_spatial
    if patch < 1 or old % patch:
        raise ValueError(f"repatch: the new patch {patch} must divide the old one {old}")
    f, pt, d = old // patch, cfg.patch_temporal, cfg.model_channels
    out = dict(state)
    w = state[prefix + "x_embedder.weight"]  # (d, c_in * pt * old * old), features (c, pt, p_h, p_w)
    out[prefix + "x_embedder.weight"] = w.reshape(d, -1, pt, f, patch, f, patch).sum(dim=(3, 5)).reshape(d, -1)
    p = state[prefix + "final_proj.weight"]  # (old * old * pt * C, d), rows (p_h, p_w, p_t, C)
    out[prefix + "final_proj.weight"] = p.reshape(f, patch, f, patch, pt, -1, d).mean(dim=(0, 2)).reshape(-1, d)
    for axis, size in (("h", cfg.max_size[1]), ("w", cfg.max_size[2])):
        if prefix + f"pos_{axis}" in state:
            table = state[prefix + f"pos_{axis}"].repeat_interleave(f, dim=0)[: size // patch]
            pad = size // patch - len(table)  # max_size not a multiple of the old patch: repeat the last row
            out[prefix + f"pos_{axis}"] = torch.cat([table, table[-1:].expand(pad, -1)]) if pad else table
    return out


# ---------------------------------------------------------------------------------------------- presets
def _preset(blocks: int, width: int, heads: int) -> DiTConfig:
    return DiTConfig(num_blocks=blocks, model_channels=width, num_heads=heads)


def _tiny() -> DiTConfig:
    """CPU tests and the tiny model trained here: 4 blocks of width 96 (head dim 24: RoPE t/h/w 8/8/8)."""
    return DiTConfig(model_channels=96, num_blocks=4, num_heads=4, crossattn_emb_channels=384, adaln_lora_dim=16,
                     max_size=(32, 64, 64), rope_extrapolation=(1.0, 1.0, 1.0))


def _register() -> None:
    from openwfm.config import register_preset

    register_preset(DiTConfig, "cosmos-1.0-7b")(lambda: _preset(28, 4096, 32))  # 7.24 B parameters
    register_preset(DiTConfig, "cosmos-1.0-14b")(lambda: _preset(36, 5120, 40))  # 14.27 B parameters
    register_preset(DiTConfig, "tiny")(_tiny)


_register()
