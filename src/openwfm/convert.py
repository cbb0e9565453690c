"""``wfm convert``: model directories from other tools into ours, and ours into diffusers' layout.

Into openwfm (``to="openwfm"``), written as our exports (``weights.publish_model``: safetensors, config,
``model.json``, card, checksummed index):

- a diffusers ``AutoencoderKLCosmos`` directory -> a tokenizer export;
- a diffusers Cosmos pipeline (``model_index.json``: ``transformer/``, ``vae/``) -> a world-model export
  and, beside it, its tokenizer's (``DST-tokenizer``, which the world model names), or a bare
  ``CosmosTransformer3DModel`` (a world model naming no tokenizer);
- NVIDIA's released tokenizer folders (``encoder.jit`` / ``decoder.jit`` / ``autoencoder.jit``): TorchScript
  archives whose code ``torch.jit.load`` deserializes, so only with ``trust_torchscript``.

Into diffusers (``to="diffusers"``): an openwfm tokenizer (continuous) -> an ``AutoencoderKLCosmos``
directory; a world model -> a pipeline directory (``transformer/``, ``vae/``, ``model_index.json``) that
diffusers' ``from_pretrained`` reads. Nothing is downloaded; diffusers itself is not needed to write it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from openwfm import layouts
from openwfm.errors import OpenWFMError
from openwfm.files import save_safetensors
from openwfm.weights import publish_model

DIFFUSERS_VERSION = "0.42.1"  # the diffusers release whose layout this writes (and the tests read back)


class ConvertError(OpenWFMError, ValueError):
    """A source that cannot be converted as asked (one line naming it)."""


def _card(src: Path, what: str) -> dict:
    return {"converted_from": str(src), "source_format": what, "steps": 0}


def to_openwfm(src: str | os.PathLike, dst: str | os.PathLike, trust_torchscript: bool = False,
               overwrite: bool = False) -> Path:
    """Convert ``src`` (diffusers or NVIDIA layout) into an openwfm export at ``dst``; returns ``dst``."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if dst.exists() and not overwrite:
        raise ConvertError(f"{dst}: already exists (--overwrite replaces it)")
    if layouts.nvidia_jit(src):
        if not trust_torchscript:
            raise ConvertError(f"{src}: NVIDIA TorchScript (.jit) files carry code that torch.jit.load "
                               "deserializes; convert them only from a source you trust (--trust-torchscript)")
        from openwfm.tokenizer.model import Tokenizer
        from openwfm.tokenizer.nvidia import extract_weights
        from openwfm.tokenizer.pretrained import export

        cfg, state = extract_weights(src)
        model = Tokenizer(cfg)
        model.load_state_dict(state)
        return export(model, {}, dst, _card(src, "nvidia-jit"), overwrite=True)
    pipeline, name = layouts.diffusers_pipeline(src), layouts.diffusers_class(src)
    if name == "AutoencoderKLCosmos":
        from openwfm.tokenizer.api import load_diffusers
        from openwfm.tokenizer.pretrained import export

        return export(load_diffusers(src), {}, dst, _card(src, "diffusers"), overwrite=True)
    if pipeline or name == "CosmosTransformer3DModel":
        from openwfm.diffusion.pretrained import load_diffusers

        model, cfg = load_diffusers(src)
        if cfg.tokenizer:  # the pipeline's VAE becomes a tokenizer export beside the world model
            cfg.tokenizer = str(to_openwfm(cfg.tokenizer, dst.with_name(f"{dst.name}-tokenizer"), overwrite=True))
        config = {**asdict(cfg), "task": "diffusion"}
        return publish_model(dst, model.state_dict(), config, _card(src, "diffusers"), 0)
    raise ConvertError(f"{src}: not a diffusers Cosmos model or pipeline directory, nor an NVIDIA tokenizer "
                       "folder (.jit files)")


def _write_diffusers(out: Path, class_name: str, config: dict, state: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors({k: v.detach().float().contiguous().cpu() for k, v in state.items()},
                     out / layouts.WEIGHTS, metadata={"format": "pt"})
    doc = {"_class_name": class_name, "_diffusers_version": DIFFUSERS_VERSION}
    doc |= {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    (out / "config.json").write_text(json.dumps(doc, indent=1))


def to_diffusers(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an openwfm tokenizer (continuous) or world model (shipped name or path) in diffusers' layout."""
    from openwfm import hub

    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise ConvertError(f"{dst}: already exists (--overwrite replaces it)")
    info = hub.describe(src)
    if info["kind"] == "tokenizer":
        from openwfm.tokenizer.convert import config_to_diffusers, to_diffusers as tok_to_diffusers

        model = hub.from_pretrained(src, kind="tokenizer")
        _write_diffusers(dst, "AutoencoderKLCosmos", config_to_diffusers(model.cfg),
                         tok_to_diffusers(model.state_dict()))
        return dst
    if info["kind"] == "world-model" and not info.get("conditioning"):
        from openwfm.diffusion.convert import diffusers_config, to_diffusers as dit_to_diffusers

        model, cfg = hub.load_world_model(src)
        if cfg.v2w.residual:
            raise ConvertError(f"{src}: a residual Video2World model (v2w.residual) denoises the change from its "
                               "input, which diffusers' Cosmos pipelines do not; it has no diffusers counterpart")
        _write_diffusers(dst / "transformer", "CosmosTransformer3DModel", diffusers_config(model.net.cfg),
                         dit_to_diffusers(model.net.state_dict()))
        to_diffusers(cfg.tokenizer, dst / "vae", overwrite=True)
        pipeline = "CosmosVideoToWorldPipeline" if model.net.cfg.condition_mask else "CosmosTextToWorldPipeline"
        (dst / "model_index.json").write_text(json.dumps(
            {"_class_name": pipeline, "_diffusers_version": DIFFUSERS_VERSION,
             "transformer": ["diffusers", "CosmosTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLCosmos"]},
            indent=1))
        return dst
    raise ConvertError(f"{src}: a {info['kind']} ({info.get('conditioning') or info.get('task')}) has no diffusers "
                       "counterpart; tokenizers (continuous) and plain world models convert")
