"""Tokenizer config and the paper's presets (Cosmos paper, sec. 4 and Table 3).

Names read C/D (continuous / discrete, FSQ) + I/V (image / video) + compression: ``CV8x8x8`` keeps one
latent frame per 8 frames (after the first) and one latent pixel per 8x8 pixels; ``CI8x8`` is an image
tokenizer (temporal compression 1: every frame is coded on its own). Paper-size presets: channels 128,
mult [2, 4, 4], 2 residual blocks per level, attention at resolution 32 and in the mid block, z 16
channels, latent 16 (continuous) or 6 FSQ channels with levels [8, 8, 8, 5, 5, 5]. ``tiny-*`` presets
are for CPU tests; ``small-*`` ones (width 48) are what the shipped tokenizers use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from openwfm.config import ConfigError, register_preset


class LevelPlan(NamedTuple):
    """What one encoder (down) or decoder (up) level does after its residual blocks."""

    attention: bool  # spatial + causal temporal attention after each residual block
    resample: bool  # the level ends with a (possibly identity) down/upsampling step
    spatial: bool  # that step halves / doubles H and W
    temporal: bool  # that step halves / doubles the frames after the first


@dataclass
class TokenizerConfig:
    in_channels: int = 3
    out_channels: int = 3
    channels: int = 128  # width of the first level
    channels_mult: list[int] = field(default_factory=lambda: [2, 4, 4])  # width of level i = channels * mult[i]
    num_res_blocks: int = 2  # per encoder level (the decoder has one more)
    attn_resolutions: list[int] = field(default_factory=lambda: [32])  # levels working at these sizes attend
    resolution: int = 1024  # nominal input size, only used to place attention
    dropout: float = 0.0
    patch_size: int = 4  # Haar levels = log2(patch_size)
    patch_method: str = "haar"
    spatial_compression: int = 8
    temporal_compression: int = 8  # 1 = image tokenizer
    z_channels: int = 16  # encoder output / decoder input
    latent_channels: int = 16  # the bottleneck: 16 continuous channels, or len(levels) FSQ channels
    discrete: bool = False  # FSQ bottleneck
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 5, 5, 5])  # FSQ levels (discrete only)
    # a linear path block coefficients -> latent -> block coefficients beside the convolutional encoder and
    # decoder (residual autoencoding, DC-AE, Chen et al. 2024, sec. 3.2), PCA-initialized by the trainer; needs
    # all temporal compression in the Haar patcher (temporal = patch_size, or an image tokenizer)
    shortcut: bool = False
    scaling_factor: float = 1.0  # latent normalization kept for diffusers' config (not applied here)
    latents_mean: list[float] | None = None
    latents_std: list[float] | None = None

    # ------------------------------------------------------------------ derived
    @property
    def is_image(self) -> bool:
        return self.temporal_compression == 1

    @property
    def kind(self) -> str:
        """The paper's name for this shape of tokenizer, e.g. ``CV8x8x8`` or ``DI16x16``."""
        s = self.spatial_compression
        head = ("D" if self.discrete else "C") + ("I" if self.is_image else "V")
        return f"{head}{s}x{s}" if self.is_image else f"{head}{self.temporal_compression}x{s}x{s}"

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def num_spatial_downs(self) -> int:
        return _log2(self.spatial_compression) - _log2(self.patch_size)

    def num_temporal_downs(self) -> int:
        return 0 if self.is_image else _log2(self.temporal_compression) - _log2(self.patch_size)

    def down_plan(self) -> list[LevelPlan]:
        """Encoder levels, as in NVIDIA's released ``EncoderFactorized``."""
        n_s, n_t, last = self.num_spatial_downs(), self.num_temporal_downs(), len(self.channels_mult) - 1
        res, plan = self.resolution // self.patch_size, []
        for i in range(last + 1):
            plan.append(LevelPlan(res in self.attn_resolutions, i < last, i < last and i < n_s,
                                  i < last and i < n_t))
            res = res // 2 if i < last else res
        return plan

    def up_plan(self) -> list[LevelPlan]:
        """Decoder levels, lowest resolution first, as in the released ``DecoderFactorized``
        (non-legacy mode: the first up level never doubles time)."""
        n_s, n_t, last = self.num_spatial_downs(), self.num_temporal_downs(), len(self.channels_mult) - 1
        res, plan = (self.resolution // self.patch_size) // 2 ** last, []
        for i in range(last + 1):
            temporal = i < last and 0 < i < n_t + 1
            spatial = i < last and (temporal or (i < n_s and n_s > n_t))
            plan.append(LevelPlan(res in self.attn_resolutions, i < last, spatial, temporal))
            res = res * 2 if i < last else res
        return plan

    def valid_frames(self, num_frames: int) -> bool:
        t = self.temporal_compression
        return num_frames >= 1 and (num_frames - 1) % t == 0

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the latent of a valid (T, H, W) input."""
        t, s = self.temporal_compression, self.spatial_compression
        frames = num_frames if self.is_image else 1 + (num_frames - 1) // t
        return frames, height // s, width // s

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"tokenizer config: {msg}")

        need(self.in_channels >= 1 and self.out_channels >= 1, "in_channels and out_channels must be >= 1")
        need(self.channels >= 1 and len(self.channels_mult) >= 1 and min(self.channels_mult) >= 1,
             f"channels must be >= 1 and channels_mult a non-empty list of ints >= 1, "
             f"got {self.channels} and {self.channels_mult}")
        need(self.num_res_blocks >= 1, f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        need(self.patch_method == "haar", f"patch_method must be 'haar', got '{self.patch_method}'")
        need(_is_pow2(self.patch_size), f"patch_size must be a power of 2 (Haar levels), got {self.patch_size}")
        need(self.z_channels >= 1 and self.latent_channels >= 1, "z_channels and latent_channels must be >= 1")
        n_res = len(self.channels_mult) - 1
        need(_is_pow2(self.spatial_compression) and self.spatial_compression >= self.patch_size,
             f"spatial_compression must be a power of 2 >= patch_size={self.patch_size}, "
             f"got {self.spatial_compression}")
        need(self.num_spatial_downs() <= n_res,
             f"spatial_compression {self.spatial_compression} needs {self.num_spatial_downs()} downsampling "
             f"levels after the {self.patch_size}x Haar patcher but channels_mult {self.channels_mult} gives "
             f"{n_res}; add levels or lower the compression")
        need(not self.shortcut or self.temporal_compression in (1, self.patch_size),
             f"shortcut=true needs all temporal compression in the Haar patcher: temporal_compression "
             f"{self.temporal_compression} must equal patch_size={self.patch_size} (or 1, an image tokenizer)")
        t = self.temporal_compression
        need(t == 1 or (_is_pow2(t) and t >= self.patch_size),
             f"temporal_compression must be 1 (image) or a power of 2 >= patch_size={self.patch_size}, got {t}")
        need(self.num_temporal_downs() <= self.num_spatial_downs(),
             f"temporal compression {t} needs more downsampling levels than spatial compression "
             f"{self.spatial_compression}; the released architecture pairs every temporal step with a "
             f"spatial one")
        down, up = self.down_plan(), self.up_plan()
        for axis in ("spatial", "temporal"):
            d = sum(getattr(p, axis) for p in down)
            u = sum(getattr(p, axis) for p in up)
            need(d == u, f"the decoder would upsample {axis}ly {u} times but the encoder downsamples {d} times "
                         f"(channels_mult {self.channels_mult} is too short for {self.kind}); add a level")
        if self.discrete:
            need(len(self.levels) >= 1 and min(self.levels) >= 2,
                 f"FSQ levels must be ints >= 2, got {self.levels}")
            need(self.latent_channels == len(self.levels),
                 f"a discrete tokenizer's latent_channels must equal len(levels)={len(self.levels)}, "
                 f"got {self.latent_channels}")
        for name in ("latents_mean", "latents_std"):
            value = getattr(self, name)
            need(value is None or len(value) % self.latent_channels == 0,
                 f"{name} must have a multiple of latent_channels={self.latent_channels} entries")


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _log2(n: int) -> int:
    return int(math.log2(n))


# ---------------------------------------------------------------------- presets
def _paper(spatial: int, temporal: int, discrete: bool) -> TokenizerConfig:
    return TokenizerConfig(spatial_compression=spatial, temporal_compression=temporal, discrete=discrete,
                           latent_channels=6 if discrete else 16)


def _tiny(spatial: int, temporal: int, discrete: bool) -> TokenizerConfig:
    """Width 16-32, one residual block per level; resolution 64 puts attention in the middle level."""
    cfg = _paper(spatial, temporal, discrete)
    cfg.channels, cfg.channels_mult, cfg.num_res_blocks = 16, [1, 2, 2], 1
    cfg.resolution, cfg.attn_resolutions = 64, [8]
    return cfg


def _small(spatial: int, temporal: int, discrete: bool) -> TokenizerConfig:
    """The tiny layout at width 48 (3.2 M parameters, 13 MB in fp32): the shipped tokenizers."""
    cfg = _tiny(spatial, temporal, discrete)
    cfg.channels = 48
    return cfg


_SHAPES = {"CI8x8": (8, 1), "CI16x16": (16, 1), "CV4x8x8": (8, 4), "CV8x8x8": (8, 8), "CV8x16x16": (16, 8)}


def _register(name: str, spatial: int, temporal: int, discrete: bool) -> None:
    register_preset(TokenizerConfig, name)(lambda: _paper(spatial, temporal, discrete))
    register_preset(TokenizerConfig, f"tiny-{name}")(lambda: _tiny(spatial, temporal, discrete))
    register_preset(TokenizerConfig, f"small-{name}")(lambda: _small(spatial, temporal, discrete))


for _name, (_s, _t) in _SHAPES.items():
    _register(_name, _s, _t, discrete=False)
    _register("D" + _name[1:], _s, _t, discrete=True)
