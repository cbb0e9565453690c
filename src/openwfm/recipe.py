"""``wfm recipe default --out RUN``: the one command that trains the embedded default model from nothing —
simulate training worlds, pack them, train the tokenizer, precompute latents, train Video2World, post-train
the action-conditioned variant, optionally fine-tune the tokenizer's decoder on its frozen encoder's latents,
export the three as shippable models (docs/default-model.md).

Every step writes into RUN and stamps ``RUN/.done/STEP`` with the recipe fields it (and the steps before it)
depend on: a re-run skips stamped steps whose fields are unchanged, so an interrupted recipe resumes where
it stopped, and a changed field reruns its step and those after it (a training step continues from its
newest checkpoint when only its step count grew; after any other change it starts over, its old run moved
aside to ``<run>.previous-N``). ``install=True`` then writes the exports into the package
(``openwfm/assets``), which is how the shipped default was made. Seeds are the simulator's training seeds (0 ..); held-out evaluation uses
900000 and up.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

TOKENIZER_NAME = "cv4x4x4-sim32"
PRIOR_FRAMES = (1, 9)  # input frame counts whose held-input latents are precomputed (residual_prior=hold)
# fields added after runs were stamped, with the value those runs had in effect (otherwise: the default)
BEFORE_FIELD = {"residual_prior": "last"}


@dataclass
class RecipeConfig:
    sim_preset: str = "default"  # 128 px, 33 frames, 12 fps
    falling: int = 240  # training rollouts per scenario, seeds 0 ..
    orbit: int = 240
    push: int = 360
    resolution: int = 64
    num_frames: int = 17
    clip_step: int = 4  # precomputed latents: overlapping clips start every clip_step frames of a rollout
    workers: int = 2  # simulator processes
    tokenizer_steps: int = 1000
    # steps of the decoder fine-tune: the tokenizer's decoder trained on, its encoder frozen, so the latents the
    # world models learned stay the same and only their decoding improves (0 = none: the tokenizer as trained)
    decoder_steps: int = 7000
    v2w_steps: int = 4000
    action_steps: int = 15000
    # reuse instead of retrain: a tokenizer (shipped name or export dir) taken as the recipe's tokenizer, and
    # a world model (shipped name, run or export of the same network) whose weights start the v2w run; both
    # are recorded in the model cards. "" = train from nothing (the default).
    tokenizer_from: str = ""
    v2w_init: str = ""
    # an action model (shipped name, run or export of the same network) that the action run continues from
    # instead of starting from the v2w run ("" = from the v2w run, the default); recorded in its card
    action_init: str = ""
    # the residual model's "nothing moves" (v2w.residual_prior): "hold" = the latents of the input with its
    # last frame held (copy-last-frame, tokenized; precomputed beside the latents for 1 and 9 input frames),
    # "last" = the last input latent frame repeated (the models of 2026-12-02 and -06)
    residual_prior: str = "hold"
    # tokenizer: CV 4x4x4 (Haar patch 4 does the spatial and temporal compression), 32 latent channels, one
    # 64-wide level beside a linear shortcut that starts as the PCA of the training clips (so training starts
    # at the best linear code and the shortcut moves 10x slower than the convolutions), L1
    tokenizer: list[str] = field(default_factory=lambda: [
        "model.spatial_compression=4", "model.channels=64", "model.channels_mult=[1]", "model.attn_resolutions=[]",
        "model.z_channels=32", "model.latent_channels=32", "model.shortcut=true",
        "train.optim.lr_mult={encode_shortcut: 0.1, decode_shortcut: 0.1}",
        "loss.perceptual=0", "data.batch_size=4", "data.num_workers=1"])
    # Video2World on precomputed latents, conditioned on 1 or 9 frames (a 2x2 latent patch per token), as a
    # residual model (the change from the last input frame) on the 32-channel latents
    v2w: list[str] = field(default_factory=lambda: [
        "v2w.input_frame_choices=[0,1,1,9]", "v2w.residual=true", "v2w.residual_sigma_data=0.25",
        "model.in_channels=32", "model.out_channels=32", "model.patch_spatial=2", "model.model_channels=192",
        "model.num_heads=6", "model.num_blocks=4", "edm.P_mean=-1.2", "edm.P_std=1.4", "data.batch_size=8"])
    # the action-conditioned variant, post-trained from the Video2World model on push rollouts' latents: each
    # latent frame gets its actions and its displacement since the first frame (the new MLP learns 10x faster),
    # and the commanded end-effector path drawn into the input where the camera sees it (path maps); constant
    # rate, then a cosine decay over the last 4,500 steps
    action: list[str] = field(default_factory=lambda: [
        "per_frame=true", "cumulative=true", "path=true", "train.optim.lr_mult={net.action_embed: 10}",
        "v2w.input_frame_choices=[1,9]", "data.batch_size=8", "train.optim.schedule=wsd",
        "train.optim.decay_steps=4500"])
    # the decoder fine-tune: the tokenizer's settings (above) plus these: mean squared error only (PSNR's
    # measure; with L1 the decoder learned nothing in 1,000 steps; no stage-2 Gram term, which the preset adds
    # from step 4,500 and which made the decoder noisy), batch 8
    decoder: list[str] = field(default_factory=lambda: ["loss.l1=0", "loss.l2=1", "stage2_start=-1",
                                                        "data.batch_size=8"])


def _train(task: str, preset: str | None, overrides: list[str], run_dir: Path, quiet: bool) -> Path:
    """A recipe training step: resumes its run when one exists (the recipe itself decides, by its stamps,
    when a run must start over instead)."""
    from openwfm.tasks.launch import train

    train(task, run_dir, preset=preset, overrides=overrides, resume=True, allow_change=True, progress=not quiet)
    return run_dir


def _step(out: Path, name: str, fn: Callable[[], object], inputs: dict, report: dict,
          run_dir: Path | None = None, steps_field: str = "") -> None:
    """Run one recipe step unless its stamp says it was done with the same ``inputs`` (the recipe fields it
    and the steps before it depend on); time it. A training step (``run_dir``) rerun resumes from its newest
    checkpoint when only its ``steps_field`` changed (more steps); after any other change its old run is
    moved aside to ``<run_dir>.previous-N`` and it trains from the start."""
    stamp = out / ".done" / name
    if stamp.is_file():
        done = json.loads(stamp.read_text())
        # a field added to the recipe after the stamp was written counts as having had its default
        defaults = asdict(RecipeConfig()) | BEFORE_FIELD
        before = {**{k: defaults[k] for k in inputs if k in defaults}, **done.get("inputs", {})}
        if before == inputs:
            report["steps"][name] = done
            log.info("recipe: %s done before, skipped", name)
            return
        changed = {k for k in set(before) | set(inputs) if before.get(k) != inputs.get(k)}
        log.info("recipe: %s was done with other settings (%s): running it again", name, ", ".join(sorted(changed)))
        if run_dir is not None and run_dir.exists() and changed != {steps_field}:
            taken = [p.name.rsplit("-", 1)[-1] for p in run_dir.parent.glob(f"{run_dir.name}.previous-*")]
            n = 1 + max((int(k) for k in taken if k.isdigit()), default=0)
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.previous-{n}"))
            stamp.unlink()  # an interrupted rerun then resumes the new run instead of moving it aside too
            log.info("recipe: moved the old %s run aside to %s.previous-%d", name, run_dir.name, n)
    t0 = time.perf_counter()
    log.info("recipe: %s ...", name)
    fn()
    info = {"seconds": round(time.perf_counter() - t0, 1), "inputs": inputs}
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(info))
    report["steps"][name] = info


STEPS = ("simulate", "pack", "tokenizer", "export-tokenizer", "latents", "push-latents", "v2w", "action", "decoder",
         "export")


def run_recipe(out: str | Path, cfg: RecipeConfig | None = None, install: bool = False,
               quiet: bool = False, until: str | None = None) -> dict:
    """Train the default model into ``out``; returns a report (steps, seconds, export paths). ``until`` stops
    after that step (e.g. ``pack`` to prepare the data only). ``install`` then writes the exports into the
    package's assets (the shipped default); it needs the whole recipe."""
    from openwfm.config import ConfigError, make_config

    if until is not None and until not in STEPS:
        raise ConfigError(f"--until: unknown recipe step '{until}' (one of: {', '.join(STEPS)})")
    if until not in (None, STEPS[-1]) and install:
        raise ConfigError("--install needs the whole recipe; drop --until")
    from openwfm.data import pack_samples
    from openwfm.data.shards import sim_dir_samples
    from openwfm.diffusion import pretrained as world
    from openwfm.diffusion.latents import precompute
    from openwfm.sim import SimConfig, generate
    from openwfm.tokenizer import pretrained as tok
    from openwfm.train.metrics import training_facts
    from openwfm.weights import resolve

    cfg = cfg or RecipeConfig()
    out = Path(out).resolve()  # run configs record these paths: absolute, so they load from anywhere
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(asdict(cfg), indent=1))
    report: dict = {"config": asdict(cfg), "steps": {}}
    counts = {"falling": cfg.falling, "orbit": cfg.orbit, "push": cfg.push}
    sim_cfg = make_config(SimConfig, preset=cfg.sim_preset)
    sim = out / "sim"
    tok_export = out / "export" / "tokenizers" / TOKENIZER_NAME  # the encoder's: latents are made with it
    # what decodes the world models: the decoder fine-tune when there is one
    tok_final = out / "export" / "decoder" / TOKENIZER_NAME if cfg.decoder_steps else tok_export
    worlds = {world.DEFAULT_V2W: out / "v2w"} | ({world.DEFAULT_ACTION: out / "action"} if cfg.push else {})
    data = [f"data.resolution={cfg.resolution}", f"data.num_frames={cfg.num_frames}"]

    def simulate() -> None:
        for scenario, n in counts.items():
            if n:
                generate(scenario, sim_cfg, n, sim / scenario, seed=0, workers=cfg.workers)

    def pack() -> None:
        import itertools

        pack_samples(itertools.chain(*(sim_dir_samples(sim / s) for s, n in counts.items() if n)),
                     out / "shards" / "all", overwrite=True)
        if cfg.push:
            pack_samples(sim_dir_samples(sim / "push"), out / "shards" / "push", overwrite=True)

    def tokenizer() -> None:
        if cfg.tokenizer_from:
            return
        _train("tokenizer", "small-CV4x8x8", ["stages=[]", f"data.shards={out / 'shards' / 'all'}"] + data
               + cfg.tokenizer + [f"train.steps={cfg.tokenizer_steps}"], out / "tokenizer", quiet)

    def export_tokenizer() -> None:
        if cfg.tokenizer_from:
            _install(tok.find(cfg.tokenizer_from), tok_export)
            return
        export_tokenizer_run(out / "tokenizer", out / "shards" / "all", tok_export, cfg, _data_card(counts, cfg))

    priors = tuple(k for k in PRIOR_FRAMES if k < cfg.num_frames) if cfg.residual_prior == "hold" else ()

    def latents() -> None:
        precompute(out / "shards" / "all", str(tok_export), out / "latents", cfg.resolution, cfg.num_frames,
                   clips=(sim_cfg.num_frames - cfg.num_frames) // cfg.clip_step + 1, clip_step=cfg.clip_step,
                   overwrite=True, priors=priors)

    def push_latents() -> None:  # overlapping clips (every 4th frame) of the push rollouts, with their actions
        if cfg.push:
            precompute(out / "shards" / "push", str(tok_export), out / "latents-push", cfg.resolution, cfg.num_frames,
                       clips=(sim_cfg.num_frames - cfg.num_frames) // cfg.clip_step + 1, clip_step=cfg.clip_step,
                       overwrite=True, priors=priors)

    def v2w() -> None:
        if cfg.v2w_init and not (out / "v2w").exists():
            warm_file.write_text(json.dumps(world.read_card(cfg.v2w_init), indent=1))
        _train("diffusion", "tiny-v2w", [f"tokenizer={tok_export}", f"data.shards={out / 'latents'}"] + data
               + cfg.v2w + [f"v2w.residual_prior={cfg.residual_prior}", f"train.steps={cfg.v2w_steps}"]
               + ([f"init={warm_start}"] if warm_start else []), out / "v2w", quiet)

    def action() -> None:
        if cfg.action_init and not (out / "action").exists():
            action_file.write_text(json.dumps(world.read_card(cfg.action_init), indent=1))
        if cfg.push:
            base = action_start or out / "v2w"
            _train("posttrain-action", "tiny", [f"base={base}", f"tokenizer={tok_export}",
                                                f"data.shards={out / 'latents-push'}"] + data + cfg.action
                   + [f"train.steps={cfg.action_steps}"], out / "action", quiet)

    def decoder() -> None:
        if cfg.decoder_steps:
            _train("tokenizer", "small-CV4x8x8", ["stages=[]", f"data.shards={out / 'shards' / 'all'}"] + data
                   + cfg.tokenizer + [f"init={tok_export}", "freeze_encoder=true",
                                      f"train.steps={cfg.decoder_steps}"] + cfg.decoder, out / "decoder", quiet)

    def cards() -> dict[str, dict]:
        push_only = {"falling": 0, "orbit": 0, "push": cfg.push}
        reused = {"tokenizer_from": cfg.tokenizer_from} if cfg.tokenizer_from else {}
        if cfg.v2w_init:
            reused["v2w_init"] = {"from": cfg.v2w_init, "card": warm_card()}
        action_reused = {"action_init": {"from": cfg.action_init, "card": kept_card(action_file, cfg.action_init)}} if cfg.action_init else {}
        return {name: {"recipe": "wfm recipe default", "tokenizer": TOKENIZER_NAME,
                       "data": _data_card(push_only if name == world.DEFAULT_ACTION else counts, cfg),
                       "training": training_facts(resolve(run))} | reused
                | (action_reused if name == world.DEFAULT_ACTION else {}) for name, run in worlds.items()}

    # the warm start's card is kept in the run when its training starts: --install later replaces the
    # shipped model the run started from, and a rerun must still name what it started from
    warm_start = str(world.find(cfg.v2w_init)) if cfg.v2w_init else ""
    warm_file = out / "v2w-init-card.json"

    def kept_card(file: Path, name: str) -> dict:
        return json.loads(file.read_text()) if file.is_file() else world.read_card(name)

    def warm_card() -> dict:
        return kept_card(warm_file, cfg.v2w_init)

    action_start = str(world.find(cfg.action_init)) if cfg.action_init else ""  # the same, for the action run
    action_file = out / "action-init-card.json"

    def export_world() -> None:  # the export's tokenizer is its path, so the export runs as it is
        if cfg.decoder_steps:
            export_decoder_run(out / "decoder", tok_export, tok_final, _data_card(counts, cfg))
        made = cards()
        for name, run in worlds.items():
            world.export(run, out / "export" / "world" / name, str(tok_final), made[name], overwrite=True)

    fields = asdict(cfg)
    steps = [("simulate", simulate, ["sim_preset", "falling", "orbit", "push"]), ("pack", pack, []),
             ("tokenizer", tokenizer, ["resolution", "num_frames", "tokenizer", "tokenizer_steps", "tokenizer_from"]),
             ("export-tokenizer", export_tokenizer, []), ("latents", latents, ["clip_step", "residual_prior"]), ("push-latents", push_latents, []),
             ("v2w", v2w, ["v2w", "v2w_steps", "v2w_init"]), ("action", action, ["action", "action_steps", "action_init"]),
             ("decoder", decoder, ["decoder", "decoder_steps"]), ("export", export_world, [])]
    assert [name for name, _, _ in steps] == list(STEPS), "STEPS (checked before any work) must list the steps"
    runs = {"tokenizer": out / "tokenizer", "v2w": out / "v2w", "action": out / "action", "decoder": out / "decoder"}
    inputs: dict = {}
    for name, fn, needs in steps:
        inputs = inputs | {k: fields[k] for k in needs}
        if name == "export-tokenizer":
            tok_inputs = dict(inputs)
        # the decoder depends on the tokenizer only: a new world-model setting does not retrain it
        own = tok_inputs | {k: fields[k] for k in needs} if name == "decoder" else inputs
        _step(out, name, fn, dict(own), report, runs.get(name), f"{name}_steps")
        if name == until:
            break
    if "export" not in report["steps"]:  # stopped early (--until)
        report["exports"] = {}
        report["seconds"] = round(sum(s["seconds"] for s in report["steps"].values()), 1)
        return report
    report["exports"] = {"tokenizer": str(tok_final)} | {n: str(out / "export" / "world" / n) for n in worlds}
    if install:  # the shipped names: the world models name the shipped tokenizer
        import torch

        _install(tok_final, tok.ASSETS / TOKENIZER_NAME)
        made = cards()
        for name, run in worlds.items():
            world.export(run, world.ASSETS / name, TOKENIZER_NAME, made[name], overwrite=True,
                         dtype=torch.float16)  # shipped in half precision: the assets' size budget
        report["installed"] = [str(tok.ASSETS / TOKENIZER_NAME)] + [str(world.ASSETS / n) for n in worlds]
    report["seconds"] = round(sum(s["seconds"] for s in report["steps"].values()), 1)
    (out / "recipe-report.json").write_text(json.dumps(report, indent=1))
    return report


def _data_card(counts: dict, cfg: RecipeConfig) -> str:
    return (", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" simulator rollouts (sim preset "
            f"'{cfg.sim_preset}', seeds from 0), {cfg.num_frames}-frame clips at {cfg.resolution} px")


def _tokenizer_run(run: Path, step: str, data: str) -> tuple[dict, object, dict]:
    """(run config, model, card) of a recipe tokenizer run's newest checkpoint; the card gives how it was made
    and its training facts."""
    from openwfm.tokenizer.api import load_tokenizer
    from openwfm.train.metrics import training_facts
    from openwfm.weights import resolve

    ckpt = resolve(run)
    model = load_tokenizer(ckpt)
    facts = training_facts(ckpt)
    card = {"steps": facts["steps"], "params": sum(p.numel() for p in model.parameters()), "source_run": str(ckpt),
            "recipe": f"wfm recipe default (step {step})", "data": data, "training": facts}
    return json.loads((ckpt / "config.json").read_text()), model, card


def export_tokenizer_run(run: Path, shards: Path, dst: Path, cfg: RecipeConfig, data: str) -> Path:
    """Export the recipe's tokenizer run with latent statistics from 16 training clips (one std shared by all
    channels for a shortcut tokenizer: its PCA-like channels keep their relative scales)."""
    from openwfm.data import DataConfig, load_index
    from openwfm.data.dataset import ClipDataset
    from openwfm.tokenizer import pretrained as tok

    config, model, card = _tokenizer_run(run, "tokenizer", data)
    ds = ClipDataset(load_index(shards), DataConfig(shards=str(shards), resolution=cfg.resolution,
                                                    num_frames=cfg.num_frames, batch_size=1, images=False))
    step = len(ds) // 16 or 1
    clips = [ds[i]["video"][None] for i in range(0, len(ds), step)][:16]
    return tok.export(model, config, dst, card, clips=clips, overwrite=True, shared_std=model.cfg.shortcut)


def export_decoder_run(run: Path, encoder: Path, dst: Path, data: str) -> Path:
    """Export the decoder fine-tune: its latent statistics are the encoder's (the run keeps them), and its card
    nests the card of the tokenizer whose encoder it kept."""
    from openwfm.tokenizer import pretrained as tok

    config, model, card = _tokenizer_run(run, "decoder: the decoder trained on, the encoder frozen", data)
    return tok.export(model, config, dst, card | {"encoder": tok.read_card(encoder)}, overwrite=True)


def _install(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    log.info("installed %s -> %s", src, dst)
