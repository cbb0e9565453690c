"""Stand-ins for NVIDIA's released Cosmos tokenizer files, built around a tiny openwfm tokenizer's tensors and
run by diffusers' ``AutoencoderKLCosmos`` code (not openwfm's), so reading them back checks numbers, not only names.

The module tree follows NVIDIA's constructors (github.com/NVIDIA/Cosmos-Tokenizer,
cosmos_tokenizer/modules/layers3d.py: EncoderFactorized / DecoderFactorized, CausalConv3d's .conv3d,
CausalNormalize's .norm, CausalHybridDown/Upsample3d's conv1..conv3; networks/*_video.py: encoder_jit /
decoder_jit), not openwfm's plans, so building one also checks that the two architectures agree.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from openwfm.tokenizer import Tokenizer, TokenizerConfig, indices_to_codes

KERNELS = {"spatial": (1, 3, 3), "temporal": (3, 1, 1), "proj": (1, 1, 1)}


def _holder(**tensors: nn.Parameter) -> nn.Module:
    m = nn.Module()
    for name, t in tensors.items():
        setattr(m, name, t)
    return m


def _conv(ours: nn.Conv3d | None, channels: int = 0, axis: str = "proj") -> nn.Module:
    """CausalConv3d keeps an nn.Conv3d in .conv3d; ``ours=None``: a conv NVIDIA builds but never runs."""
    m = nn.Module()
    m.conv3d = nn.Conv3d(channels, channels, KERNELS[axis]) if ours is None else _holder(weight=ours.weight,
                                                                                         bias=ours.bias)
    return m


def _norm(ours: nn.GroupNorm) -> nn.Module:  # CausalNormalize keeps a GroupNorm in .norm
    m = nn.Module()
    m.norm = _holder(weight=ours.weight, bias=ours.bias)
    return m


def _seq(*mods: nn.Module) -> nn.ModuleList:  # NVIDIA's nn.Sequential (same child names; scriptable here)
    return nn.ModuleList(mods)


def _factorized(ours) -> nn.ModuleList:
    return _seq(_conv(ours.spatial), _conv(ours.temporal))


def _res(ours) -> nn.Module:  # CausalResnetBlockFactorized3d
    m = nn.Module()
    m.norm1, m.conv1, m.norm2, m.conv2 = _norm(ours.norm1), _factorized(ours.conv1), _norm(ours.norm2), \
        _factorized(ours.conv2)
    if ours.skip is not None:
        m.nin_shortcut = _conv(ours.skip)
    return m


def _attn(space, time) -> nn.ModuleList:  # Sequential(CausalAttnBlock, CausalTemporalAttnBlock)
    def block(ours):
        m = nn.Module()
        m.norm, m.q, m.k, m.v, m.proj_out = _norm(ours.norm), _conv(ours.q), _conv(ours.k), _conv(ours.v), \
            _conv(ours.out)
        return m
    return _seq(block(space), block(time))


def _mid(ours) -> nn.Module:
    m = nn.Module()
    m.block_1, m.attn_1, m.block_2 = _res(ours.block1), _attn(ours.space_attn, ours.time_attn), _res(ours.block2)
    return m


def _hybrid(ours, channels: int, order: tuple[str, ...], used: dict[str, bool], **flags: bool) -> nn.Module:
    """CausalHybridDown/Upsample3d: conv1..conv3 always exist; only the used ones hold our tensors."""
    m = nn.Module()
    for i, axis in enumerate(order, 1):
        theirs = None if ours is None else getattr(ours, axis)
        assert (theirs is not None) == used[axis], f"openwfm disagrees with NVIDIA on {axis} resampling"
        setattr(m, f"conv{i}", _conv(theirs, channels, axis))
    for name, value in flags.items():
        setattr(m, name, value)
    return m


def _patcher(p: int, with_size: bool) -> nn.Module:
    m = nn.Module()
    m.register_buffer("wavelets", torch.full((2,), 0.5 ** 0.5), persistent=False)
    m.register_buffer("_arange", torch.arange(2), persistent=False)
    if with_size:
        m.register_buffer("patch_size_buffer", torch.full((1,), p, dtype=torch.int32), persistent=False)
    return m


def _quantizer(levels: list[int]) -> nn.Module:  # FSQuantizer: constants only
    m = nn.Module()
    m.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
    m.register_buffer("_basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0).int(), persistent=False)
    m.register_buffer("implicit_codebook", indices_to_codes(torch.arange(math.prod(levels)), levels),
                      persistent=False)
    return m


def downs(cfg: TokenizerConfig) -> tuple[int, int]:
    log = lambda n: int(math.log2(n))  # noqa: E731
    return log(cfg.spatial_compression) - log(cfg.patch_size), log(cfg.temporal_compression) - log(cfg.patch_size)


def _encoder(tok: Tokenizer) -> nn.Module:
    cfg, enc, n = tok.cfg, tok.encoder, len(tok.cfg.channels_mult)
    n_s, n_t = downs(cfg)
    m = nn.Module()
    m.patcher3d, m.conv_in, m.down = _patcher(cfg.patch_size, True), _factorized(enc.conv_in), nn.ModuleList()
    for i, stage in enumerate(enc.down):
        level = nn.Module()
        level.block = nn.ModuleList(_res(b) for b in stage.blocks)
        level.attn = nn.ModuleList(_attn(s, t) for s, t in zip(stage.space_attn, stage.time_attn))
        if i != n - 1:
            s, t = i < n_s, i < n_t
            level.downsample = _hybrid(stage.resample, cfg.channels * cfg.channels_mult[i],
                                       ("spatial", "temporal", "proj"), dict(spatial=s, temporal=t, proj=s or t),
                                       spatial_down=s, temporal_down=t)
        m.down.append(level)
    m.mid, m.norm_out, m.conv_out = _mid(enc.mid), _norm(enc.norm_out), _factorized(enc.conv_out)
    return m


def _decoder(tok: Tokenizer) -> nn.Module:
    cfg, dec, n = tok.cfg, tok.decoder, len(tok.cfg.channels_mult)
    n_s, n_t = downs(cfg)
    m = nn.Module()
    m.conv_in, m.mid, up = _factorized(dec.conv_in), _mid(dec.mid), [None] * n
    for i_level in reversed(range(n)):  # NVIDIA: up[i_level], level 0 = highest resolution
        stage = dec.up[n - 1 - i_level]
        level = nn.Module()
        level.block = nn.ModuleList(_res(b) for b in stage.blocks)
        level.attn = nn.ModuleList(_attn(s, t) for s, t in zip(stage.space_attn, stage.time_attn))
        if i_level != 0:
            rev = n - i_level - 1  # non-legacy mode, as in the released configs
            t = 0 < rev < n_t + 1
            s = t or (rev < n_s and n_s > n_t)
            level.upsample = _hybrid(stage.resample, cfg.channels * cfg.channels_mult[i_level],
                                     ("temporal", "spatial", "proj"), dict(spatial=s, temporal=t, proj=s or t),
                                     spatial_up=s, temporal_up=t)
        up[i_level] = level
    m.up, m.unpatcher3d = nn.ModuleList(up), _patcher(cfg.patch_size, False)
    m.norm_out, m.conv_out = _norm(dec.norm_out), _factorized(dec.conv_out)
    return m


def _diffusers_twin(tok: Tokenizer) -> nn.Module:
    """diffusers' ``AutoencoderKLCosmos`` holding ``tok``'s encoder and decoder weights: the stand-ins compute
    with diffusers' code, not openwfm's, so a test that compares them with openwfm checks the numbers too."""
    import dataclasses

    import diffusers

    from openwfm.tokenizer import config_to_diffusers, to_diffusers

    cfg = dataclasses.replace(tok.cfg, discrete=False, latent_channels=tok.cfg.z_channels, levels=[])
    twin = diffusers.AutoencoderKLCosmos(**config_to_diffusers(cfg)).eval().requires_grad_(False)
    state = to_diffusers({k: v for k, v in tok.state_dict().items() if k.startswith(("encoder.", "decoder."))})
    missing, unexpected = twin.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("quant_conv", "post_quant_conv")) for k in missing), missing
    return twin


def _fsq_bound(z: torch.Tensor, levels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """FSQ (Mentzer et al. 2023, sec. 3) as NVIDIA's FSQuantizer writes it, on the last axis."""
    half_l = (levels - 1) * (1 + eps) / 2
    offset = torch.where(levels % 2 == 0, torch.full_like(half_l, 0.5), torch.zeros_like(half_l))
    return torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset


def _basis(levels: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(torch.cat([torch.ones_like(levels[:1]), levels[:-1]]), 0)


class _EncoderJit(nn.Module):
    """encoder_jit(): encoder, quant_conv, then distribution (continuous) or quantizer (FSQ); run by diffusers'
    encoder and a 1x1x1 convolution with the same tensors, and an FSQ written from the paper."""

    def __init__(self, tok: Tokenizer):
        super().__init__()
        self.encoder, self.quant_conv = _encoder(tok), _conv(tok.quant_conv)
        self.discrete = tok.cfg.discrete
        if tok.cfg.discrete:
            self.quantizer = _quantizer(tok.cfg.levels)
            self.levels = [float(v) for v in tok.cfg.levels]
        else:
            self.distribution = nn.Module()
        self.twin = [_diffusers_twin(tok)]  # a plain list: its own parameter names stay out of the state dict

    def forward(self, x: torch.Tensor):
        conv = self.quant_conv.conv3d
        z = torch.nn.functional.conv3d(self.twin[0].encoder(x), conv.weight, conv.bias)
        if not self.discrete:
            return z, (z.new_zeros(1), z.new_zeros(1))
        levels = torch.tensor(self.levels)
        half = torch.div(levels, 2, rounding_mode="floor")
        codes = (_fsq_bound(z.movedim(1, -1), levels).round() / half)
        indices = ((codes * half + half).round() * _basis(levels)).sum(-1)
        return indices.int(), codes.movedim(-1, 1), z.new_zeros(1)


class _DecoderJit(nn.Module):
    """decoder_jit(): [inv_quant,] post_quant_conv, decoder; run by diffusers' decoder (and the paper's FSQ
    index -> code map)."""

    def __init__(self, tok: Tokenizer):
        super().__init__()
        self.discrete = tok.cfg.discrete
        if tok.cfg.discrete:
            self.inv_quant = nn.Module()
            self.inv_quant.quantizer = _quantizer(tok.cfg.levels)
            self.levels = [float(v) for v in tok.cfg.levels]
        self.post_quant_conv, self.decoder = _conv(tok.post_quant_conv), _decoder(tok)
        self.twin = [_diffusers_twin(tok)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.discrete:  # indices (B, T', H', W') -> codes (B, D, T', H', W')
            levels = torch.tensor(self.levels)
            half = torch.div(levels, 2, rounding_mode="floor")
            digits = torch.remainder(torch.div(z.double().unsqueeze(-1), _basis(levels).double(),
                                               rounding_mode="floor"), levels.double())
            z = ((digits - half.double()) / half.double()).float().movedim(-1, 1)
        conv = self.post_quant_conv.conv3d
        return self.twin[0].decoder(torch.nn.functional.conv3d(z, conv.weight, conv.bias))


def save_traced(tok: Tokenizer, directory: Path, x: torch.Tensor) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings from our input checks
        enc = torch.jit.trace(_EncoderJit(tok), x, check_trace=False)
        z = tok.encode(x)
        dec = torch.jit.trace(_DecoderJit(tok), z[0] if tok.cfg.discrete else z, check_trace=False)
    enc.save(str(directory / "encoder.jit"))
    dec.save(str(directory / "decoder.jit"))


def autoencoder(tok: Tokenizer) -> nn.Module:
    """Weights and resampler flags only: scripted, it keeps the bool flags (a traced module would not)."""
    m = nn.Module()
    m.encoder, m.decoder = _encoder(tok), _decoder(tok)
    m.quant_conv, m.post_quant_conv = _conv(tok.quant_conv), _conv(tok.post_quant_conv)
    return m
