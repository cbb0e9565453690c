"""Weights and configs to and from diffusers' ``AutoencoderKLCosmos`` (diffusers >= 0.34; checked with 0.42).

The two models have the same layers in the same order; only names differ, so conversion renames keys
and never touches values. Each rule pairs a diffusers name fragment with ours (``{i}`` is a number);
a fragment matches at the start of a dotted name segment, and rules apply in order, context-specific ones
(mid block, down/upsamplers) before generic ones. Diffusers has no FSQ bottleneck, so only continuous
tokenizers export; discrete ones share every weight but the 1x1x1 quant / post-quant convs.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from openwfm.config import ConfigError
from openwfm.tokenizer.presets import TokenizerConfig

# (diffusers fragment, openwfm fragment)
_RULES: list[tuple[str, str]] = [
    ("mid_block.resnets.0.", "mid.block1."),
    ("mid_block.resnets.1.", "mid.block2."),
    ("mid_block.attentions.0.", "mid.space_attn."),
    ("mid_block.temp_attentions.0.", "mid.time_attn."),
    ("down_blocks.{i}.downsamplers.0.conv1.", "down.{i}.resample.spatial."),
    ("down_blocks.{i}.downsamplers.0.conv2.", "down.{i}.resample.temporal."),
    ("down_blocks.{i}.downsamplers.0.conv3.", "down.{i}.resample.proj."),
    ("up_blocks.{i}.upsamplers.0.conv1.", "up.{i}.resample.temporal."),
    ("up_blocks.{i}.upsamplers.0.conv2.", "up.{i}.resample.spatial."),
    ("up_blocks.{i}.upsamplers.0.conv3.", "up.{i}.resample.proj."),
    ("down_blocks.{i}.", "down.{i}."),
    ("up_blocks.{i}.", "up.{i}."),
    ("resnets.{i}.", "blocks.{i}."),
    ("temp_attentions.{i}.", "time_attn.{i}."),
    ("attentions.{i}.", "space_attn.{i}."),
    ("conv_s.", "spatial."),
    ("conv_t.", "temporal."),
    ("conv_shortcut.", "skip."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "out."),
    ("norm.norm.", "norm."),
    ("norm1.norm.", "norm1."),
    ("norm2.norm.", "norm2."),
    ("norm_out.norm.", "norm_out."),
]


def _compile(fragment: str) -> tuple[re.Pattern, str]:
    """Fragment -> (regex anchored at a segment start, replacement template with \\g<n> for {i})."""
    pattern = re.escape(fragment).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(r"(?P<pre>^|\.)" + pattern), r"\g<pre>" + fragment.replace("{i}", r"\g<i>")


_FORWARD = [(_compile(d)[0], _compile(o)[1]) for d, o in _RULES]  # diffusers -> openwfm
_BACKWARD = [(_compile(o)[0], _compile(d)[1]) for d, o in _RULES]  # openwfm -> diffusers


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def from_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKLCosmos.state_dict()`` -> ``Tokenizer`` state dict (same tensors)."""
    return {_rename(k, _FORWARD): v for k, v in state_dict.items()}


def to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``Tokenizer.state_dict()`` of a continuous tokenizer -> diffusers ``AutoencoderKLCosmos`` layout."""
    q = state_dict.get("quant_conv.weight")
    if q is not None and q.shape[0] != q.shape[1]:
        raise ConfigError("diffusers' AutoencoderKLCosmos has no FSQ bottleneck: only continuous tokenizers "
                          "(z_channels == latent_channels) export")
    if any(k.startswith(("encode_shortcut.", "decode_shortcut.")) for k in state_dict):
        raise ConfigError("a shortcut=true tokenizer has no diffusers counterpart (AutoencoderKLCosmos has no "
                          "linear shortcut)")
    return {_rename(k, _BACKWARD): v for k, v in state_dict.items()}


def config_from_diffusers(config: Mapping[str, Any]) -> TokenizerConfig:
    """diffusers ``AutoencoderKLCosmos.config`` -> ``TokenizerConfig`` (continuous)."""
    enc = list(config.get("encoder_block_out_channels", (128, 256, 512, 512)))
    dec = list(config.get("decode_block_out_channels", (256, 512, 512, 512)))
    channels = enc[0]
    if len(enc) < 2 or any(c % channels for c in enc[1:]):
        raise ConfigError(f"diffusers encoder_block_out_channels {enc}: each width must be a multiple of the "
                          f"first")
    mult = [c // channels for c in enc[1:]]
    if dec != enc[1:] + enc[-1:]:
        raise ConfigError(f"diffusers decode_block_out_channels {dec} do not mirror encoder_block_out_channels "
                          f"{enc} (expected {enc[1:] + enc[-1:]}); such a decoder has no openwfm equivalent")
    patch_type = config.get("patch_type", "haar")
    if patch_type != "haar":
        raise ConfigError(f"diffusers patch_type '{patch_type}' is not supported; only 'haar'")
    latent = int(config.get("latent_channels", 16))
    mean, std = config.get("latents_mean"), config.get("latents_std")
    cfg = TokenizerConfig(
        in_channels=int(config.get("in_channels", 3)), out_channels=int(config.get("out_channels", 3)),
        channels=channels, channels_mult=mult, num_res_blocks=int(config.get("num_layers", 2)),
        attn_resolutions=[int(r) for r in config.get("attention_resolutions", (32,))],
        resolution=int(config.get("resolution", 1024)), patch_size=int(config.get("patch_size", 4)),
        patch_method=patch_type, spatial_compression=int(config.get("spatial_compression_ratio", 8)),
        temporal_compression=int(config.get("temporal_compression_ratio", 8)),
        z_channels=latent, latent_channels=latent, discrete=False,
        scaling_factor=float(config.get("scaling_factor", 1.0)),
        latents_mean=None if mean is None else [float(v) for v in mean],
        latents_std=None if std is None else [float(v) for v in std])
    cfg.validate()
    return cfg


def config_to_diffusers(cfg: TokenizerConfig) -> dict[str, Any]:
    """``TokenizerConfig`` (continuous) -> keyword arguments of diffusers ``AutoencoderKLCosmos``."""
    if cfg.discrete or cfg.z_channels != cfg.latent_channels:
        raise ConfigError(f"{cfg.kind}: diffusers' AutoencoderKLCosmos only has the continuous bottleneck "
                          f"with z_channels == latent_channels")
    if cfg.shortcut:
        raise ConfigError(f"{cfg.kind} with shortcut=true: diffusers' AutoencoderKLCosmos has no linear shortcut "
                          f"beside its encoder and decoder, so this tokenizer has no diffusers counterpart")
    enc = [cfg.channels] + [cfg.channels * m for m in cfg.channels_mult]
    return dict(in_channels=cfg.in_channels, out_channels=cfg.out_channels, latent_channels=cfg.latent_channels,
                encoder_block_out_channels=tuple(enc), decode_block_out_channels=tuple(enc[1:] + enc[-1:]),
                attention_resolutions=tuple(cfg.attn_resolutions), resolution=cfg.resolution,
                num_layers=cfg.num_res_blocks, patch_size=cfg.patch_size, patch_type=cfg.patch_method,
                scaling_factor=cfg.scaling_factor, spatial_compression_ratio=cfg.spatial_compression,
                temporal_compression_ratio=cfg.temporal_compression,
                latents_mean=cfg.latents_mean, latents_std=cfg.latents_std)
