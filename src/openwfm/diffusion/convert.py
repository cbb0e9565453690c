"""Weights of diffusers' ``CosmosTransformer3DModel`` <-> our ``DiT``: a name map, tensors untouched.

diffusers runs its q/k RMSNorm with eps 1e-5 (ours and NVIDIA's: 1e-6), so ``config_from_diffusers``
sets ``qk_norm_eps`` to match it exactly.
"""

from __future__ import annotations

import re

import torch

from openwfm.diffusion.dit import DiTConfig

_TOP = {
    "x_embedder.weight": "patch_embed.proj.weight",
    "t_fc1.weight": "time_embed.t_embedder.linear_1.weight",
    "t_fc2.weight": "time_embed.t_embedder.linear_2.weight",
    "t_norm.weight": "time_embed.norm.weight",
    "pos_t": "learnable_pos_embed.pos_emb_t",
    "pos_h": "learnable_pos_embed.pos_emb_h",
    "pos_w": "learnable_pos_embed.pos_emb_w",
    "final_adaln.lora_down.weight": "norm_out.linear_1.weight",
    "final_adaln.lora_up.weight": "norm_out.linear_2.weight",
    "final_proj.weight": "proj_out.weight",
}
_BLOCK = {
    "adaln_self.lora_down": "norm1.linear_1", "adaln_self.lora_up": "norm1.linear_2",
    "adaln_cross.lora_down": "norm2.linear_1", "adaln_cross.lora_up": "norm2.linear_2",
    "adaln_mlp.lora_down": "norm3.linear_1", "adaln_mlp.lora_up": "norm3.linear_2",
    "fc1": "ff.net.0.proj", "fc2": "ff.net.2",
}
for _ours, _theirs in (("self_attn", "attn1"), ("cross_attn", "attn2")):
    _BLOCK.update({f"{_ours}.q": f"{_theirs}.to_q", f"{_ours}.k": f"{_theirs}.to_k", f"{_ours}.v": f"{_theirs}.to_v",
                   f"{_ours}.out": f"{_theirs}.to_out.0", f"{_ours}.q_norm": f"{_theirs}.norm_q",
                   f"{_ours}.k_norm": f"{_theirs}.norm_k"})


def _rename(name: str, top: dict[str, str], block: dict[str, str], ours_prefix: str, theirs_prefix: str) -> str:
    if name in top:
        return top[name]
    m = re.match(rf"{ours_prefix}\.(\d+)\.(.+)\.(weight|bias)$", name)
    if m and m.group(2) in block:
        return f"{theirs_prefix}.{m.group(1)}.{block[m.group(2)]}.{m.group(3)}"
    raise KeyError(f"no diffusers name for '{name}'")


def to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our DiT state dict -> diffusers ``CosmosTransformer3DModel`` names."""
    return {_rename(k, _TOP, _BLOCK, "blocks", "transformer_blocks"): v for k, v in state.items()}


def from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``CosmosTransformer3DModel`` state dict -> our DiT names."""
    top = {v: k for k, v in _TOP.items()}
    block = {v: k for k, v in _BLOCK.items()}
    return {_rename(k, top, block, "transformer_blocks", "blocks"): v for k, v in state.items()}


def config_from_diffusers(c: dict) -> DiTConfig:
    """Our config for a diffusers ``CosmosTransformer3DModel`` config (its ``in_channels`` counts the
    condition-mask channel of Video2World models; pass ``condition_mask`` in ``c`` to say so)."""
    unsupported = {k: c[k] for k in ("use_crossattn_projection", "img_context_dim_in", "controlnet_block_every_n")
                   if c.get(k)}
    if unsupported:
        raise ValueError(f"diffusers Cosmos options without a counterpart here: {unsupported}")
    cond = bool(c.get("condition_mask", False))
    return DiTConfig(in_channels=c["in_channels"] - int(cond), out_channels=c["out_channels"],
                     model_channels=c["num_attention_heads"] * c["attention_head_dim"], num_blocks=c["num_layers"],
                     num_heads=c["num_attention_heads"], mlp_ratio=c["mlp_ratio"],
                     crossattn_emb_channels=c["text_embed_dim"], adaln_lora_dim=c["adaln_lora_dim"],
                     patch_spatial=c["patch_size"][1], patch_temporal=c["patch_size"][0],
                     max_size=tuple(c["max_size"]), rope_extrapolation=tuple(c["rope_scale"]),
                     pos_emb_learnable=c.get("extra_pos_embed_type") == "learnable",
                     concat_padding_mask=c["concat_padding_mask"], condition_mask=cond, qk_norm_eps=1e-5)


def diffusers_config(cfg: DiTConfig) -> dict:
    """diffusers ``CosmosTransformer3DModel`` keyword arguments for our config."""
    if cfg.patch_spatial < 1 or cfg.model_channels % cfg.num_heads:
        raise ValueError("invalid DiT config")
    return dict(in_channels=cfg.in_channels + int(cfg.condition_mask), out_channels=cfg.out_channels,
                num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim, num_layers=cfg.num_blocks,
                mlp_ratio=cfg.mlp_ratio, text_embed_dim=cfg.crossattn_emb_channels, adaln_lora_dim=cfg.adaln_lora_dim,
                max_size=tuple(cfg.max_size), patch_size=(cfg.patch_temporal, cfg.patch_spatial, cfg.patch_spatial),
                rope_scale=tuple(cfg.rope_extrapolation), concat_padding_mask=cfg.concat_padding_mask,
                extra_pos_embed_type="learnable" if cfg.pos_emb_learnable else None)


# ------------------------------------------------------------------------------------------ NVIDIA
# NVIDIA's Cosmos-1.0 diffusion checkpoints (model.pt): the network under "net.", blocks as
# blocks.block{i}.blocks.{0: self-attn, 1: cross-attn, 2: MLP}, each with .block and .adaLN_modulation.{1,2}
# (the LoRA down/up), q/k as Sequential(Linear, RMSNorm), the loss uncertainty as logvar.{0: Fourier
# features (freqs, phases), 1: Linear}.
_NV_TOP = {
    "x_embedder.weight": "x_embedder.proj.1.weight",
    "t_fc1.weight": "t_embedder.1.linear_1.weight",
    "t_fc2.weight": "t_embedder.1.linear_2.weight",
    "t_norm.weight": "affline_norm.weight",
    "pos_t": "extra_pos_embedder.pos_emb_t",
    "pos_h": "extra_pos_embedder.pos_emb_h",
    "pos_w": "extra_pos_embedder.pos_emb_w",
    "final_adaln.lora_down.weight": "final_layer.adaLN_modulation.1.weight",
    "final_adaln.lora_up.weight": "final_layer.adaLN_modulation.2.weight",
    "final_proj.weight": "final_layer.linear.weight",
}
_NV_BLOCK = {"fc1": "blocks.2.block.layer1", "fc2": "blocks.2.block.layer2"}
for _i, _name in enumerate(("adaln_self", "adaln_cross", "adaln_mlp")):
    _NV_BLOCK[f"{_name}.lora_down"] = f"blocks.{_i}.adaLN_modulation.1"
    _NV_BLOCK[f"{_name}.lora_up"] = f"blocks.{_i}.adaLN_modulation.2"
for _i, _name in enumerate(("self_attn", "cross_attn")):
    _p = f"blocks.{_i}.block.attn"
    _NV_BLOCK.update({f"{_name}.q": f"{_p}.to_q.0", f"{_name}.q_norm": f"{_p}.to_q.1", f"{_name}.k": f"{_p}.to_k.0",
                      f"{_name}.k_norm": f"{_p}.to_k.1", f"{_name}.v": f"{_p}.to_v.0", f"{_name}.out": f"{_p}.to_out.0"})
_NV_UNCERTAINTY = {"uncertainty.linear.weight": "logvar.1.weight", "uncertainty.freqs": "logvar.0.freqs",
                   "uncertainty.phases": "logvar.0.phases"}
_NV_SKIP = ("pos_embedder.", "accum_", "_extra_state")


def _nv_name(ours: str) -> str | None:
    if ours in _NV_TOP:
        return _NV_TOP[ours]
    m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", ours)
    if m and m.group(2) in _NV_BLOCK:
        return f"blocks.block{m.group(1)}.{_NV_BLOCK[m.group(2)]}.{m.group(3)}"
    return None


def to_nvidia(dit_state: dict[str, torch.Tensor], uncertainty: dict[str, torch.Tensor] | None = None) -> dict:
    """Our DiT (+ uncertainty) tensors in NVIDIA's Cosmos-1.0 model.pt layout (keys under ``net.``)."""
    out = {}
    for k, v in dit_state.items():
        name = _nv_name(k)
        if name is None:
            raise KeyError(f"no NVIDIA name for '{k}'")
        out[f"net.{name}"] = v
    for k, v in (uncertainty or {}).items():
        out[f"net.{_NV_UNCERTAINTY['uncertainty.' + k]}"] = v
    return out


def from_nvidia(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """NVIDIA Cosmos-1.0 network tensors -> (our DiT state dict, our uncertainty tensors). Accepts the
    checkpoint's dict or its ``model`` / ``state_dict`` / ``module`` entry; unknown keys are an error."""
    for key in ("model", "module", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    back = {}
    for k in state:
        k2 = k.removeprefix("net.")
        if k2.startswith(_NV_SKIP):
            continue
        back[k2] = k
    dit, unc, used = {}, {}, set()
    for ours_unc, nv in _NV_UNCERTAINTY.items():
        if nv in back:
            unc[ours_unc.removeprefix("uncertainty.")] = state[back[nv]]
            used.add(nv)
    n_blocks = len({int(m.group(1)) for k in back if (m := re.match(r"blocks\.block(\d+)\.", k))})
    names = list(_NV_TOP) + [f"blocks.{i}.{b}.weight" for i in range(n_blocks) for b in _NV_BLOCK]
    for ours in names:
        nv = _nv_name(ours)
        if nv in back:
            dit[ours] = state[back[nv]]
            used.add(nv)
    left = sorted(set(back) - used)
    if left:
        raise KeyError(f"NVIDIA checkpoint keys with no counterpart: {left[:5]}{' ...' if len(left) > 5 else ''}")
    return dit, unc


def load_nvidia(path, model) -> None:
    """Load NVIDIA's Cosmos-1.0 ``model.pt`` (a local file, read with ``weights_only=True``) into a
    ``WorldModel``: the DiT strictly, and the loss uncertainty where present."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    dit, unc = from_nvidia(state)
    model.net.load_state_dict(dit, strict=True)
    if unc and model.uncertainty is not None:
        u = model.uncertainty
        u.linear.weight.data.copy_(unc["linear.weight"])
        u.linear.bias.data.zero_()  # NVIDIA's head has no bias
        for name in ("freqs", "phases"):
            if name in unc:
                getattr(u, name).copy_(unc[name].flatten())
