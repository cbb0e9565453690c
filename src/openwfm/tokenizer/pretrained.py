"""Tokenizers trained here and shipped inside the package, and exporting a run into that form.

An exported tokenizer is a small checkpoint directory: ``config.json`` (the run config, with the latent
statistics filled in), ``model.safetensors`` (the EMA weights), ``card.json`` (how it was made: the
command, the data, the steps, measured quality) and ``index.json`` (sizes and sha256, checked on load).
Shipped ones live in ``openwfm/assets/tokenizers/<name>`` and load by name::

    load_tokenizer("cv4x8x8-real")     # or: wfm tokenizer roundtrip --checkpoint cv4x8x8-real in.mp4 out.mp4
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from openwfm.tokenizer.model import Tokenizer, TokenizerError

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tokenizers"


def shipped() -> list[str]:
    """Names of the tokenizers that ship with the package."""
    return sorted(p.name for p in ASSETS.iterdir() if (p / "index.json").is_file()) if ASSETS.is_dir() else []


def find(checkpoint: str | os.PathLike) -> Path:
    """A path as given when it exists, else the shipped tokenizer of that name."""
    path = Path(checkpoint)
    if path.exists():
        return path
    if (ASSETS / str(checkpoint) / "index.json").is_file():
        return ASSETS / str(checkpoint)
    raise TokenizerError(f"{checkpoint}: no such checkpoint or run directory, and not a shipped tokenizer "
                         f"(shipped: {', '.join(shipped()) or 'none'})")


@torch.no_grad()
def latent_stats(model: Tokenizer, clips: list[torch.Tensor], shared_std: bool = False
                 ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a continuous tokenizer's latents over ``clips`` (each (B, 3, T, H, W)),
    for normalizing latents before a diffusion model sees them (config ``latents_mean`` / ``latents_std``).
    ``shared_std``: one std for every channel (the root of the mean per-channel variance), so the latent keeps
    its channels' relative scales: for a PCA-like code (``shortcut`` tokenizers) the diffusion loss then
    weighs channels as pixel-space MSE does, instead of whitening faint detail channels up to the main ones."""
    if model.cfg.discrete:
        raise TokenizerError("latent statistics are for continuous tokenizers; FSQ codes are already bounded")
    zs = [model.encode_latent(x).movedim(1, -1).reshape(-1, model.cfg.latent_channels) for x in clips]
    z = torch.cat(zs).double()
    std = z.std(0).clamp_min(1e-6)
    if shared_std:
        std = std.pow(2).mean().sqrt().expand_as(std)
    return z.mean(0).tolist(), std.tolist()


def export(model: Tokenizer, config: dict, out_dir: str | os.PathLike, card: dict,
           clips: list[torch.Tensor] | None = None, overwrite: bool = False, shared_std: bool = False,
           dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` (its current weights) as an exported tokenizer: config.json (``config`` with the
    model's config and, given ``clips``, the latent statistics), model.safetensors (stored as ``dtype``),
    card.json, index.json.
    Written beside ``out_dir`` and renamed into place, so a failed export leaves nothing half done."""
    from openwfm.weights import publish_model

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise TokenizerError(f"{out}: already exists (pass overwrite to replace it)")
    cfg = dataclasses.replace(model.cfg)  # the statistics go to the file, not onto the caller's model
    if clips and not cfg.discrete:
        cfg.latents_mean, cfg.latents_std = latent_stats(model, clips, shared_std)
    config = {**config, "task": "tokenizer", "model": dict(cfg.__dict__)}
    return publish_model(out, model.state_dict(), config, {"kind": cfg.kind, **card}, int(card.get("steps", 0)),
                         metadata={"kind": cfg.kind}, dtype=dtype)


def read_card(checkpoint: str | os.PathLike) -> dict:
    """The card.json of an exported tokenizer ({} for a plain training checkpoint)."""
    p = find(checkpoint) / "card.json"
    return json.loads(p.read_text()) if p.is_file() else {}
