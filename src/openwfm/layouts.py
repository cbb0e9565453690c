"""Model directories written by other tools, recognized and read without running any of their code.

diffusers' ``save_pretrained`` writes a model directory as ``config.json`` (with ``_class_name``) plus
``diffusion_pytorch_model.safetensors`` (or shards listed in ``diffusion_pytorch_model.safetensors.index.json``),
and a pipeline as ``model_index.json`` with one such directory per component (``transformer/``, ``vae/``,
``text_encoder/``, ``scheduler/``). Only safetensors are read: a ``.bin`` (a pickle) is refused. NVIDIA's
TorchScript tokenizer folders are recognized (``nvidia_jit``) so that loaders can say how to convert them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from openwfm.errors import OpenWFMError

WEIGHTS = "diffusion_pytorch_model.safetensors"


class LayoutError(OpenWFMError, ValueError):
    """A model directory in another tool's layout that cannot be read (one line naming it)."""


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def diffusers_class(path: str | os.PathLike) -> str:
    """The diffusers class a ``save_pretrained`` model directory was written by ('' for anything else)."""
    cfg = _json(Path(path) / "config.json") if Path(path).is_dir() else None
    return str(cfg.get("_class_name", "")) if cfg and "_diffusers_version" in cfg else ""


def diffusers_pipeline(path: str | os.PathLike) -> dict:
    """A diffusers pipeline directory's ``model_index.json`` ({} when ``path`` is not one)."""
    p = Path(path)
    return (_json(p / "model_index.json") or {}) if p.is_dir() else {}


def diffusers_config(path: str | os.PathLike) -> dict:
    """A diffusers model directory's config, without the bookkeeping keys (``_class_name``, ...)."""
    cfg = _json(Path(path) / "config.json")
    if cfg is None:
        raise LayoutError(f"{path}: no readable config.json")
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def nvidia_jit(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of NVIDIA's released TorchScript tokenizer files (``encoder.jit``,
    ``decoder.jit``, ``autoencoder.jit``): code, not just weights, so it is never loaded implicitly."""
    p = Path(path)
    return p.is_dir() and any((p / n).is_file() for n in ("encoder.jit", "decoder.jit", "autoencoder.jit"))


def diffusers_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a diffusers model directory: one safetensors file or the shards its index lists."""
    p = Path(path)
    if (p / WEIGHTS).is_file():
        return load_file(p / WEIGHTS)
    index = _json(p / f"{WEIGHTS}.index.json")
    if index is not None:
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            if Path(shard).name != shard or not (p / shard).is_file():
                raise LayoutError(f"{p}: shard {shard!r} named in {WEIGHTS}.index.json is missing")
            state.update(load_file(p / shard))
        return state
    if any(p.glob("*.bin")):
        raise LayoutError(f"{p}: only pickle weights (.bin), which openwfm never loads; save them as safetensors "
                          "(save_pretrained(..., safe_serialization=True))")
    raise LayoutError(f"{p}: no {WEIGHTS}")
