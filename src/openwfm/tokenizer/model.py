"""Cosmos causal tokenizers: encoder, decoder and the continuous / FSQ bottleneck (Cosmos paper, sec. 4.1).

Encoder: Haar patcher -> space-time conv -> levels of residual blocks (+ spatial and causal temporal
attention where the level's resolution is in ``attn_resolutions``) ending in hybrid downsampling -> mid
block (res, attention, res) -> norm, SiLU, space-time conv to ``z_channels``. A 1x1x1 ``quant_conv``
gives the latent; a discrete tokenizer quantizes it with FSQ. The decoder mirrors it with one more
residual block per level and ends in the inverse Haar transform. Plain autoencoders: no KL, no VQ loss.

Conventions: input video (B, C, T, H, W) in [-1, 1] with T = 1 + k·t frames (t = temporal compression);
image tokenizers (t = 1) code each frame on its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from openwfm.errors import OpenWFMError
from openwfm.tokenizer.fsq import codes_to_indices, fsq_quantize, indices_to_codes
from openwfm.tokenizer.haar import haar_patch, haar_unpatch
from openwfm.tokenizer.layers import (Attention, FrameNorm, HybridDownsample, HybridUpsample, ResBlock,
                                      SpaceTimeConv, pointwise)
from openwfm.tokenizer.presets import LevelPlan, TokenizerConfig


class TokenizerError(OpenWFMError):
    """A video or latent the tokenizer cannot take (shape, frame count, values)."""


def pad_frames(x: torch.Tensor, t: int) -> torch.Tensor:
    """Repeat the last frame of (B, C, T, H, W) until T = 1 + k·t (the next valid length)."""
    missing = (-(x.shape[2] - 1)) % t
    if missing == 0:
        return x
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)


class Stage(nn.Module):
    """One encoder or decoder level: residual blocks, each optionally followed by spatial then causal
    temporal attention, then an optional down/upsampling step."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, plan: LevelPlan,
                 resample_cls: type[nn.Module], dropout: float):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.blocks = nn.ModuleList(ResBlock(widths[i], widths[i + 1], dropout) for i in range(num_blocks))
        n_attn = num_blocks if plan.attention else 0
        self.space_attn = nn.ModuleList(Attention(out_channels, "space", dropout) for _ in range(n_attn))
        self.time_attn = nn.ModuleList(Attention(out_channels, "time", dropout) for _ in range(n_attn))
        self.resample = (resample_cls(out_channels, plan.spatial, plan.temporal)
                         if plan.spatial or plan.temporal else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if len(self.space_attn):
                x = self.time_attn[i](self.space_attn[i](x))
        return x if self.resample is None else self.resample(x)


class MidBlock(nn.Module):
    """Residual block, spatial attention, causal temporal attention, residual block."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block1 = ResBlock(channels, channels, dropout)
        self.space_attn = Attention(channels, "space", dropout)
        self.time_attn = Attention(channels, "time", dropout)
        self.block2 = ResBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.time_attn(self.space_attn(self.block1(x))))


class Encoder(nn.Module):
    """Video (B, in_channels, T, H, W) -> (B, z_channels, T', H/s, W/s)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        widths = [cfg.channels] + [cfg.channels * m for m in cfg.channels_mult]
        self.conv_in = SpaceTimeConv(cfg.in_channels * cfg.patch_size ** 3, widths[0])
        self.down = nn.ModuleList(
            Stage(widths[i], widths[i + 1], cfg.num_res_blocks, plan, HybridDownsample, cfg.dropout)
            for i, plan in enumerate(cfg.down_plan()))
        self.mid = MidBlock(widths[-1], cfg.dropout)
        self.norm_out = FrameNorm(widths[-1])
        self.conv_out = SpaceTimeConv(widths[-1], cfg.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(haar_patch(x, self.patch_size))
        for stage in self.down:
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """(B, z_channels, T', H', W') -> video (B, out_channels, T, H, W); levels run lowest resolution first."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        widths = [cfg.channels * m for m in reversed(cfg.channels_mult)]
        widths = widths[:1] + widths  # conv_in and mid work at the deepest width
        self.conv_in = SpaceTimeConv(cfg.z_channels, widths[0])
        self.mid = MidBlock(widths[0], cfg.dropout)
        self.up = nn.ModuleList(
            Stage(widths[i], widths[i + 1], cfg.num_res_blocks + 1, plan, HybridUpsample, cfg.dropout)
            for i, plan in enumerate(cfg.up_plan()))
        self.norm_out = FrameNorm(widths[-1])
        self.conv_out = SpaceTimeConv(widths[-1], cfg.out_channels * cfg.patch_size ** 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in self.up:
            h = stage(h)
        return haar_unpatch(self.conv_out(F.silu(self.norm_out(h))), self.patch_size)


class Tokenizer(nn.Module):
    """A Cosmos tokenizer. Continuous: ``encode(x)`` -> latent (B, latent_channels, T', H', W').
    Discrete: ``encode(x)`` -> (indices (B, T', H', W') int64, codes (B, len(levels), T', H', W') in
    [-1, 1]). ``decode`` takes the latent, the codes or the indices. ``forward`` is the training pass.

    T' = 1 + (T - 1)/t, H' = H/s, W' = W/s; image tokenizers (t = 1) keep T' = T, one frame at a time.
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = pointwise(cfg.z_channels, cfg.latent_channels)
        self.post_quant_conv = pointwise(cfg.latent_channels, cfg.z_channels)
        if cfg.shortcut:  # linear block <-> latent path beside the convolutional one (init_shortcut)
            coeffs = cfg.in_channels * cfg.patch_size ** 3 * (cfg.spatial_compression // cfg.patch_size) ** 2
            self.encode_shortcut = pointwise(coeffs, cfg.latent_channels)
            self.decode_shortcut = pointwise(cfg.latent_channels, coeffs // cfg.in_channels * cfg.out_channels)

    # ------------------------------------------------------------------ trainer hooks
    @property
    def grad_checkpointing(self) -> bool:
        """Recompute every residual block in backward (training mode only)."""
        return any(m.checkpointing for m in self.modules() if isinstance(m, ResBlock))

    @grad_checkpointing.setter
    def grad_checkpointing(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.checkpointing = bool(on)

    @property
    def encoder_modules(self) -> list[nn.Module]:
        """Everything that makes the latent: the encoder, its 1x1 output and the shortcut's encoding half."""
        return [self.encoder, self.quant_conv] + ([self.encode_shortcut] if self.cfg.shortcut else [])

    def freeze_encoder(self) -> None:
        """Train the decoder only: the latents stay what they are (``forward`` then builds no encoder graph)."""
        for m in self.encoder_modules:
            m.requires_grad_(False)

    @property
    def fsdp_units(self) -> list[nn.Module]:
        """Encoder levels, both mid blocks and decoder levels: the units FSDP shards one at a time."""
        return [*self.encoder.down, self.encoder.mid, self.decoder.mid, *self.decoder.up]

    # ------------------------------------------------------------------ public API
    def encode(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Continuous: the latent. Discrete: (indices, codes)."""
        z = self.encode_latent(x)
        if not self.cfg.discrete:
            return z
        codes, indices = self.quantize(z)
        return indices, codes

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck input: the continuous latent, or the FSQ input of a discrete tokenizer."""
        self.check_video(x)
        return self._per_frame(x, self._encode)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.quant_conv(self.encoder(x))
        if self.cfg.shortcut:
            z = z + self.encode_shortcut(block_coeffs(x, self.cfg))
        return z

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(self.post_quant_conv(z))
        if self.cfg.shortcut:
            x = x + block_video(self.decode_shortcut(z), self.cfg)
        return x

    @torch.no_grad()
    def init_shortcut(self, videos: torch.Tensor) -> None:
        """Start as the best linear code (DC-AE's residual autoencoding with a PCA basis): the shortcut
        encodes each latent position's block coefficients (``block_coeffs``) of ``videos`` (B, C, T, H, W)
        onto their top ``latent_channels`` principal directions and decodes them back, and the convolutional
        paths start at zero (their last layers zeroed), so the untrained tokenizer is exactly that PCA and training only adds to it. A
        discrete (FSQ) tokenizer scales each direction to unit standard deviation before the quantizer."""
        if not self.cfg.shortcut:
            raise TokenizerError("init_shortcut needs a tokenizer built with shortcut=true")
        self.check_video(videos)
        coeffs = block_coeffs(videos.float(), self.cfg)
        mean, basis = pca_basis(coeffs, self.cfg.latent_channels)
        scale = torch.ones(len(basis))
        if self.cfg.discrete:  # FSQ squashes each channel with tanh: give every component unit spread
            rows = coeffs.movedim(1, -1).reshape(-1, coeffs.shape[1])
            scale = ((rows - mean) @ basis.T).std(0).clamp_min(1e-6)
        self.encode_shortcut.weight.copy_((basis / scale[:, None])[:, :, None, None, None])
        self.encode_shortcut.bias.copy_(-(basis @ mean) / scale)
        self.decode_shortcut.weight.copy_((basis.T * scale)[:, :, None, None, None])
        self.decode_shortcut.bias.copy_(mean)
        for layer in (self.quant_conv, self.decoder.conv_out.temporal):
            layer.weight.zero_()
            layer.bias.zero_()

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FSQ (in fp32) of a latent (B, D, T', H', W') -> (codes like z, indices (B, T', H', W') int64)."""
        codes = fsq_quantize(z.float().movedim(1, -1), self.cfg.levels)
        return codes.movedim(-1, 1).to(z.dtype), codes_to_indices(codes, self.cfg.levels)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent or FSQ codes (B, latent_channels, T', H', W'), or FSQ indices (B, T', H', W') -> video."""
        if not z.is_floating_point():
            if not self.cfg.discrete:
                raise TokenizerError(f"a continuous tokenizer decodes float latents, got {z.dtype} indices")
            if z.ndim != 4:
                raise TokenizerError(f"FSQ indices must be (B, T', H', W'), got shape {tuple(z.shape)}")
            if not z.is_meta and (z.min() < 0 or z.max() >= self.cfg.codebook_size):
                raise TokenizerError(f"FSQ indices must lie in 0..{self.cfg.codebook_size - 1}, "
                                     f"got {int(z.min())}..{int(z.max())}")
            z = indices_to_codes(z, self.cfg.levels).movedim(-1, 1).to(self.post_quant_conv.weight.dtype)
        if z.ndim != 5 or z.shape[1] != self.cfg.latent_channels:
            raise TokenizerError(f"latent must be (B, {self.cfg.latent_channels}, T', H', W'), "
                                 f"got shape {tuple(z.shape)}")
        return self._per_frame(z, self._decode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction and extras: ``latent`` (bottleneck input), and for FSQ ``codes`` and ``indices``."""
        frozen = not any(p.requires_grad for m in self.encoder_modules for p in m.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            z = self.encode_latent(x)
        extras = {"latent": z}
        if self.cfg.discrete:
            codes, indices = self.quantize(z)
            extras.update(codes=codes, indices=indices)
            z = codes
        return self._per_frame(z, self._decode), extras

    # ------------------------------------------------------------------ checks and helpers
    def check_video(self, x: torch.Tensor) -> None:
        """Raise TokenizerError naming what is wrong with an input video and how to fix it."""
        cfg = self.cfg
        if x.ndim != 5:
            hint = " (an image batch (B, C, H, W) needs x.unsqueeze(2))" if x.ndim == 4 else ""
            raise TokenizerError(f"video must be (B, C, T, H, W), got shape {tuple(x.shape)}{hint}")
        if not x.is_floating_point():
            raise TokenizerError(f"video must be float in [-1, 1], got {x.dtype} (uint8 frames: x / 127.5 - 1)")
        b, c, t, h, w = x.shape
        if c != cfg.in_channels:
            raise TokenizerError(f"video has {c} channels, the {cfg.kind} tokenizer takes {cfg.in_channels} "
                                 f"(shape (B, C, T, H, W), channels second)")
        if not cfg.valid_frames(t):
            k = cfg.temporal_compression
            lo, hi = 1 + max(0, (t - 1) // k) * k, 1 + (max(0, (t - 1) // k) + 1) * k
            near = f"{lo} or {hi}" if t > 1 else f"1 or {hi}"
            raise TokenizerError(f"video has {t} frames; the {cfg.kind} tokenizer takes 1 + k·{k} frames, e.g. "
                                 f"{near}; pad with openwfm.tokenizer.pad_frames(x, {k}) (repeats the last "
                                 f"frame) or trim")
        s = cfg.spatial_compression
        if h % s or w % s:
            raise TokenizerError(f"video is {w}x{h} (width x height); the {cfg.kind} tokenizer needs both sides to "
                                 f"be multiples of {s}, e.g. {max(s, w - w % s)}x{max(s, h - h % s)} "
                                 f"(crop) or {math.ceil(w / s) * s}x{math.ceil(h / s) * s} (pad)")
        if not x.is_meta and not torch.isfinite(x).all():
            raise TokenizerError("video contains NaN or Inf values")

    def _per_frame(self, x: torch.Tensor, fn) -> torch.Tensor:
        """Image tokenizers code every frame on its own: fold T into the batch around ``fn``."""
        if not self.cfg.is_image:
            return fn(x)
        b, t = x.shape[0], x.shape[2]
        y = fn(x.transpose(1, 2).flatten(0, 1).unsqueeze(2))  # (B·T, C, 1, H, W)
        return y.squeeze(2).unflatten(0, (b, t)).transpose(1, 2)


def block_coeffs(x: torch.Tensor, cfg: TokenizerConfig) -> torch.Tensor:
    """The pixels behind each latent position as channels, in an orthonormal basis: the Haar patcher's
    coefficients, each remaining r x r (r = spatial_compression / patch_size) group of them stacked on the
    channel axis. (B, C, T, H, W) -> (B, C·p³·r², T', H/s, W/s); ``block_video`` inverts it."""
    y = haar_patch(x, cfg.patch_size)
    r = cfg.spatial_compression // cfg.patch_size
    if r == 1:
        return y
    b, c, t, h, w = y.shape
    return y.reshape(b, c, t, h // r, r, w // r, r).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * r * r, t, h // r, w // r)


def block_video(y: torch.Tensor, cfg: TokenizerConfig) -> torch.Tensor:
    """Inverse of ``block_coeffs``."""
    r = cfg.spatial_compression // cfg.patch_size
    if r > 1:
        b, c, t, h, w = y.shape
        y = y.reshape(b, c // (r * r), r, r, t, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, c // (r * r), t, h * r, w * r)
    return haar_unpatch(y, cfg.patch_size)


def pca_basis(coeffs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and top-``k`` principal directions (k, D) of the channel vectors of (B, D, T, H, W)."""
    if k > coeffs.shape[1]:
        raise TokenizerError(f"cannot keep {k} principal directions of {coeffs.shape[1]} channels")
    rows = coeffs.movedim(1, -1).reshape(-1, coeffs.shape[1]).double()
    mean = rows.mean(0)
    _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    return mean.float(), vh[:k].float()


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
