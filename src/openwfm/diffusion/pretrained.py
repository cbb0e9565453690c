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
           overwrite: bool = False) -> Path:
    """Write a trained diffusion (or post-trained) run's EMA weights as a shippable model: ``tokenizer``
    replaces the run's tokenizer path (a shipped tokenizer's name), ``base``, a warm start's ``init`` (the
    card records it) and data paths are cleared.
    Written beside ``out_dir`` and renamed into place."""
    from openwfm.train.checkpoint import load_weights, publish_model, resolve

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
    return publish_model(out, weights, config, {"source": str(src), "steps": step, **card}, step)


def read_card(run: str | os.PathLike | None) -> dict:
    """The card.json of a shipped / exported world model ({} for a training checkpoint)."""
    p = Path(find(run)) / "card.json"
    return json.loads(p.read_text()) if p.is_file() else {}
