"""Network surgery for post-training (Cosmos paper sec. 6): a base world model grows new inputs that start
ignored (zero input columns, zero-output embeddings), so before training it computes what the base
computes; LoRA adapters when the base is frozen."""

from __future__ import annotations

import dataclasses

import torch

from openwfm.config import ConfigError
from openwfm.diffusion.dit import DiTConfig
from openwfm.diffusion.model import WorldModel
from openwfm.posttrain.config import PosttrainRunConfig, dit_changes


def input_layout(cfg: DiTConfig) -> list[tuple[str, int]]:
    """The DiT's input channel groups in the order ``DiT.forward`` concatenates them."""
    groups = [("latent", cfg.in_channels), ("condition_mask", int(cfg.condition_mask)),
              ("padding_mask", int(cfg.concat_padding_mask)), ("extra", cfg.extra_channels)]
    return [(n, c) for n, c in groups if c]


def expand_input_weights(weight: torch.Tensor, old: DiTConfig, new: DiTConfig) -> torch.Tensor:
    """The patch-embedding weight of ``old`` for ``new``'s input channels: each group the base had is
    copied to its new place, new groups (or channels) get zeros — so the new inputs start ignored."""
    per = old.patch_temporal * old.patch_spatial ** 2
    w_old = weight.reshape(weight.shape[0], -1, per)
    old_at, at = {}, 0
    for name, c in input_layout(old):
        old_at[name], at = (at, c), at + c
    out = torch.zeros(weight.shape[0], sum(c for _, c in input_layout(new)), per, dtype=weight.dtype)
    at = 0
    for name, c in input_layout(new):
        if name in old_at:
            o, oc = old_at[name]
            out[:, at:at + min(c, oc)] = w_old[:, o:o + min(c, oc)]
        at += c
    return out.reshape(weight.shape[0], -1)


def _network(cfg: PosttrainRunConfig, temporal_compression: int) -> WorldModel:
    """The base network grown by what ``cfg`` adds (``dit_changes``), without adapters."""
    return WorldModel(dataclasses.replace(cfg.model, **dit_changes(cfg, temporal_compression)), cfg.edm, cfg.v2w)


def _add_lora(model: WorldModel, cfg: PosttrainRunConfig) -> WorldModel:
    from openwfm.posttrain.lora import add_lora

    add_lora(model.net, cfg.lora_rank, cfg.lora_alpha)
    return model


def world_model(cfg: PosttrainRunConfig, temporal_compression: int) -> WorldModel:
    """The post-trained network ``cfg`` describes (its new inputs and LoRA adapters in place), untrained."""
    model = _network(cfg, temporal_compression)
    return _add_lora(model, cfg) if cfg.lora_rank else model


def from_base(cfg: PosttrainRunConfig, base: WorldModel | None, temporal_compression: int) -> WorldModel:
    """The post-trained model of ``cfg`` initialized from the ``base`` world model when given: the base's
    weights, zero input columns for new channels, new modules at their own (zero-output) initialization.
    With LoRA only the adapters and the new input / action layers train."""
    model = _network(cfg, temporal_compression)
    if base is not None:
        state = base.state_dict()
        state["net.x_embedder.weight"] = expand_input_weights(state["net.x_embedder.weight"], base.net.cfg,
                                                              model.net.cfg)
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith(("uncertainty", "net.action_embed"))]
        if unexpected or bad:
            raise ConfigError(f"base {cfg.base} does not fit: missing {bad[:3]}, unexpected {unexpected[:3]} "
                              "(the same model preset as the base?)")
    if cfg.lora_rank:
        _add_lora(model, cfg)
        model.net.x_embedder.requires_grad_(True)  # it grew columns for the new inputs
        if model.net.cfg.action_dim:
            model.net.action_embed.requires_grad_(True)
    return model
