"""One way to load every model: by shipped name or by path, without importing any training code.

A model directory is a training checkpoint (or run), an export, or a directory in diffusers'
``save_pretrained`` layout. Checkpoints and exports carry ``model.json`` (what the model is: ``kind``, the
training ``task`` that made it, its ``conditioning``); older ones without it are read from ``config.json``'s
``task``. The model is rebuilt from its run config by the model packages' own builders, then filled with
the saved (EMA) weights::

    from openwfm.hub import from_pretrained
    tok = from_pretrained("cv4x4x4-sim32")          # a Tokenizer
    model, cfg = from_pretrained("default-v2w")      # a WorldModel and its run config
    from_pretrained("runs/ar", kind="ar")            # an ARWorldModel and its run config

Kinds: ``tokenizer``, ``world-model`` (Text2World / Video2World, plain or post-trained: ``camera``,
``action``, ``multiview``), ``ar`` (autoregressive world model with its Medusa heads), ``ar-decoder``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from openwfm import layouts
from openwfm.config import from_dict
from openwfm.errors import OpenWFMError
from openwfm.weights import MODEL_JSON, CheckpointError, model_info, read_weights, resolve


class HubError(OpenWFMError, ValueError):
    """A model that cannot be found or loaded as asked (one line naming it)."""


def shipped() -> dict[str, tuple[str, Path]]:
    """The models shipped in the package: name -> (kind, directory)."""
    from openwfm.diffusion import pretrained as world
    from openwfm.tokenizer import pretrained as tok

    out = {n: ("tokenizer", tok.ASSETS / n) for n in tok.shipped()}
    return out | {n: ("world-model", world.ASSETS / n) for n in world.shipped()}


def find(name_or_path: str | os.PathLike) -> Path:
    """An existing path as given, else the shipped model of that name."""
    p = Path(name_or_path)
    if p.exists():
        return p
    found = shipped().get(str(name_or_path))
    if found is None:
        raise HubError(f"{name_or_path}: no such file or directory, and not a shipped model (shipped: "
                       f"{', '.join(sorted(shipped())) or 'none'})")
    return found[1]


def describe(path: str | os.PathLike) -> dict:
    """What the model at ``path`` (a name, checkpoint, run, export or diffusers directory) is: its
    ``model.json``, or one made from its config for directories written before it existed."""
    p = find(path)
    return _describe(p if _is_diffusers(p) else resolve(p))


def _is_diffusers(p: Path) -> bool:
    return bool(layouts.diffusers_pipeline(p) or layouts.diffusers_class(p))


def _describe(d: Path) -> dict:
    """``describe`` of a diffusers directory or an already resolved (verified) checkpoint directory."""
    if _is_diffusers(d):
        name = layouts.diffusers_pipeline(d).get("_class_name", "") or layouts.diffusers_class(d)
        kind = "tokenizer" if name == "AutoencoderKLCosmos" else "world-model"
        return {"format": 1, "kind": kind, "task": "", "conditioning": "", "diffusers": name}
    if (d / MODEL_JSON).is_file():
        return json.loads((d / MODEL_JSON).read_text())
    return model_info(json.loads((d / "config.json").read_text()))


def _run_config(task: str, config: dict, where: str):
    """The run config object of a ``task`` run (imported from the model packages, not from the tasks)."""
    from openwfm.autoregressive.config import ARRunConfig, DecoderRunConfig
    from openwfm.diffusion.config import DiffusionRunConfig
    from openwfm.posttrain.config import ActionRunConfig, CameraRunConfig, MultiviewRunConfig

    classes = {"diffusion": DiffusionRunConfig, "posttrain-camera": CameraRunConfig,
               "posttrain-action": ActionRunConfig, "posttrain-multiview": MultiviewRunConfig,
               "ar": ARRunConfig, "ar-decoder": DecoderRunConfig}
    cfg = from_dict(classes[task], config, where, ignore=("task",))
    if hasattr(cfg, "base"):
        cfg.base = ""  # a post-trained model's own weights replace its base's
    return cfg


def build(task: str, cfg) -> torch.nn.Module:
    """The untrained network a ``task`` run config describes (post-training inputs and adapters in place)."""
    if task == "diffusion":
        from openwfm.diffusion.model import WorldModel

        return WorldModel(cfg.model, cfg.edm, cfg.v2w)
    if task.startswith("posttrain-"):
        from openwfm.posttrain.surgery import world_model
        from openwfm.tokenizer.api import tokenizer_config

        return world_model(cfg, tokenizer_config(cfg.tokenizer).temporal_compression)
    if task == "ar":
        from openwfm.autoregressive.world import ARWorldModel

        return ARWorldModel(cfg.model, cfg.medusa)
    if task == "ar-decoder":
        from openwfm.autoregressive.decoder import DecoderModel

        return DecoderModel(cfg.model, cfg.edm, cfg.vocab_size, cfg.token_dim)
    raise HubError(f"no model builder for task {task!r}")


def load(path: str | os.PathLike, kinds: tuple[str, ...], ema: bool = True) -> tuple[torch.nn.Module, Any]:
    """A trained model of one of ``kinds`` (EMA weights by default) and its run config, in eval mode."""
    p = find(path)
    if not _is_diffusers(p):
        p = resolve(p)  # the checkpoint directory, verified once
    info = _describe(p)
    if info["kind"] not in kinds:
        what = info.get("diffusers") or info["task"] or "unknown"
        raise CheckpointError(f"{path}: a {info['kind']} ({what}), not {' or '.join(kinds)}")
    if info.get("diffusers"):
        from openwfm.diffusion.pretrained import load_diffusers

        return load_diffusers(p)
    config, weights = read_weights(p, ema=ema)
    task = info["task"]
    cfg = _run_config(task, config, f"{path}/config.json")
    model = build(task, cfg)
    model.load_state_dict(weights)
    return model.eval(), cfg


def load_world_model(run: str | os.PathLike | None, ema: bool = True):
    """A world model (``WorldModel``) and its run config: a shipped one by name (None: ``default-v2w``), a
    diffusion or post-training run / checkpoint / export, or a diffusers Cosmos pipeline or transformer
    directory."""
    from openwfm.diffusion.pretrained import find as find_world

    return load(find_world(run), ("world-model",), ema)


def load_ar_model(run: str | os.PathLike, ema: bool = True):
    """An autoregressive world model (``ARWorldModel``, with its Medusa heads) and its run config."""
    return load(run, ("ar",), ema)


def load_decoder(run: str | os.PathLike, ema: bool = True):
    """An autoregressive diffusion decoder (``DecoderModel``) and its run config."""
    return load(run, ("ar-decoder",), ema)


def from_pretrained(name_or_path: str | os.PathLike, kind: str | None = None, ema: bool = True, device: str = "cpu"):
    """Any model by shipped name or path: a ``Tokenizer`` for tokenizers, else ``(model, run config)``.
    ``kind`` checks what the directory holds (``tokenizer``, ``world-model``, ``ar``, ``ar-decoder``)."""
    info = describe(name_or_path)
    if kind is not None and info["kind"] != kind:
        raise HubError(f"{name_or_path}: a {info['kind']}, not a {kind}")
    if info["kind"] == "tokenizer":
        from openwfm.tokenizer.api import load_tokenizer

        return load_tokenizer(find(name_or_path), ema=ema, device=device)
    model, cfg = load(name_or_path, (info["kind"],), ema)
    return model.to(device), cfg
