"""World models shipped inside the package (``openwfm/assets/world/<name>``): the embedded default
Video2World model and its action-conditioned variant, trained by ``wfm recipe default`` on the project's
simulated physical worlds (docs/default-model.md). They load by name wherever a run or checkpoint
directory is accepted, and ``WorldPipeline.from_run(None)`` loads the default::

    wfm generate video2world --input clip.mp4 --out future.mp4            # default-v2w
    wfm generate video2world --input push.mp4 --actions a.json --out f.mp4  # default-action

An export holds the EMA weights only (model.safetensors), the run config with ``tokenizer`` naming a
shipped tokenizer and no training-only paths, a card (recipe, data, steps, metrics) and an index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "world"
DEFAULT_V2W = "default-v2w"
DEFAULT_ACTION = "default-action"


def shipped() -> list[str]:
    """Names of the world models shipped in the package."""
    return sorted(p.name for p in ASSETS.iterdir() if (p / "index.json").is_file()) if ASSETS.is_dir() else []


def find(run: str | os.PathLike | None) -> str | os.PathLike:
    """``run`` itself, or the directory of a shipped model when ``run`` is its name (or None: the default
    Video2World model)."""
    name = DEFAULT_V2W if run is None else str(run)
    if Path(name).exists():
        return run if run is not None else name
    if (ASSETS / name / "index.json").is_file():
        return ASSETS / name
    if name in (DEFAULT_V2W, DEFAULT_ACTION):
        raise FileNotFoundError(f"no {name} world model in {ASSETS}: this install lacks the package assets; "
                                "give a checkpoint (-c RUN) or train one with `wfm recipe default --install`")
    return run


def export(run: str | os.PathLike, out_dir: str | os.PathLike, tokenizer: str, card: dict,
           overwrite: bool = False, dtype: torch.dtype = torch.float32) -> Path:
    """Write a trained diffusion (or post-trained) run's EMA weights as a shippable model: ``tokenizer``
    replaces the run's tokenizer path (a shipped tokenizer's name), ``base``, a warm start's ``init`` (the
    card records it) and data paths are cleared.
    ``dtype``: the stored precision (the shipped models are float16: half the size, widened on load).
    Written beside ``out_dir`` and renamed into place."""
    from openwfm.weights import load_weights, publish_model, resolve

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite to replace it)")
    src = resolve(run)
    config, weights = load_weights(src, ema=True)
    config = {**config, "tokenizer": tokenizer}
    for key in ("base", "init"):  # paths on the training machine
        if key in config:
            config[key] = ""
    if isinstance(config.get("data"), dict):
        config["data"]["shards"] = ""
    step = int(json.loads((src / "trainer.json").read_text()).get("step", 0)) if (src / "trainer.json").is_file() else 0
    return publish_model(out, weights, config, {"source": str(src), "steps": step, **card}, step, dtype=dtype)


def read_card(run: str | os.PathLike | None) -> dict:
    """The card.json of a shipped / exported world model ({} for a training checkpoint)."""
    p = Path(find(run)) / "card.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def load_diffusers(path: str | os.PathLike):
    """A diffusers Cosmos world model as ours: a pipeline directory (``model_index.json`` with ``transformer/``,
    ``vae/``, optionally ``text_encoder/`` (T5) and ``scheduler/``) or a bare ``CosmosTransformer3DModel``
    directory (then the run config names no tokenizer: give one to the pipeline). Returns (WorldModel, run
    config). Video2World pipelines condition on 1 or 9 frames; the EDM sigma_data comes from the scheduler."""
    from openwfm import layouts
    from openwfm.diffusion.config import DiffusionRunConfig
    from openwfm.diffusion.convert import config_from_diffusers, from_diffusers
    from openwfm.diffusion.edm import EDMConfig
    from openwfm.diffusion.model import Video2WorldConfig, WorldModel
    from openwfm.text.encoder import TextEncoderConfig

    p = Path(path)
    index = layouts.diffusers_pipeline(p)
    tdir = p / "transformer" if index else p
    name = layouts.diffusers_class(tdir)
    if name != "CosmosTransformer3DModel":
        raise layouts.LayoutError(f"{tdir}: a diffusers {name or 'directory'}, not a CosmosTransformer3DModel")
    v2w = "VideoToWorld" in str(index.get("_class_name", ""))
    c = layouts.diffusers_config(tdir)
    dit = config_from_diffusers({**c, "condition_mask": v2w})
    sched = p / "scheduler" / "scheduler_config.json"
    sched = json.loads(sched.read_text()) if sched.is_file() else {}
    edm = EDMConfig(sigma_data=float(sched.get("sigma_data", 0.5)), uncertainty=False)
    if (p / "text_encoder").is_dir():
        text = TextEncoderConfig("t5", str(p / "text_encoder"), 512)
    else:
        text = TextEncoderConfig("minilm" if dit.crossattn_emb_channels == 384 else "t5", "", 512)
    cfg = DiffusionRunConfig(model=dit, edm=edm, text=text, tokenizer=str(p / "vae") if (p / "vae").is_dir() else "",
                             v2w=Video2WorldConfig(enabled=v2w, input_frame_choices=[1, 9] if v2w else []))
    t, h, w = (list(c.get("max_size", [128, 240, 240])) + [0, 0, 0])[:3]
    if cfg.tokenizer:
        from openwfm.tokenizer.api import tokenizer_config

        tok = tokenizer_config(cfg.tokenizer)
        cfg.data.resolution = min(704, min(h, w) * tok.spatial_compression)
        cfg.data.num_frames = min(121, 1 + (t - 1) * tok.temporal_compression)
    model = WorldModel(dit, edm, cfg.v2w)
    missing, unexpected = model.net.load_state_dict(from_diffusers(layouts.diffusers_weights(tdir)), strict=False)
    if missing or unexpected:
        raise layouts.LayoutError(f"{tdir}: weights do not fit its config (missing {missing[:3]}, unexpected "
                                  f"{unexpected[:3]})")
    return model.eval(), cfg
