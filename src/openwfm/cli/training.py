"""``wfm data``, ``wfm ckpt``, ``wfm train``, ``wfm posttrain``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from openwfm.cli.app import _progress, _state, app, console, out
from openwfm.config import make_config


data_app = typer.Typer(help="Training data: WebDataset shards and their index.", no_args_is_help=True)
app.add_typer(data_app, name="data")
ckpt_app = typer.Typer(help="Training checkpoints: verify, convert sharded ones to safetensors.", no_args_is_help=True)
app.add_typer(ckpt_app, name="ckpt")


TASKS_HELP = ("What to train: tokenizer, diffusion (Text2World / Video2World), ar (autoregressive world model), "
              "ar-decoder (its diffusion decoder), posttrain-camera, posttrain-action, posttrain-multiview, toy (a "
              "tiny DiT-like denoiser for trying the trainer). `wfm config train-TASK` shows a task's settings.")


@app.command()
def train(task: str = typer.Argument(..., help=TASKS_HELP),
          overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. train.steps=500 "
                                                                      "data.shards=SHARDS (see wfm config train-TASK)."),
          out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory: checkpoints/, metrics.jsonl."),
          preset: Optional[str] = typer.Option(None, "--preset", help="Named preset of the task's config."),
          config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s)."),
          resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint in --out."),
          seed: Optional[int] = typer.Option(None, "--seed", help="Shortcut for train.seed=N."),
          restart: bool = typer.Option(False, "--restart", help="Start over from step 0, moving the run's checkpoints to checkpoints/quarantine/ (nothing is deleted)."),
          allow_change: bool = typer.Option(False, "--allow-change", help="With --resume: allow overrides that change what the run trains (data, model, optimizer, ...); steps, logging and checkpointing may always change.")) -> None:
    """Train a model. On several processes or GPUs, launch the same command with torchrun:
    torchrun --nproc-per-node N -m openwfm.cli train TASK ... train.dist.strategy=fsdp

    With --resume the run's saved configuration is restored and the overrides apply on top of it."""
    from openwfm.tasks.launch import train as launch
    from openwfm.train.loop import TrainingInterrupted

    extra = [f"train.seed={seed}"] if seed is not None else []
    try:
        summary = launch(task, out_dir, preset=preset, yaml_files=config or [], overrides=(overrides or []) + extra,
                         resume=resume, allow_change=allow_change, restart=restart, progress=not _state["quiet"],
                         note=lambda line: console.print(line, highlight=False))
    except TrainingInterrupted as e:
        console.print(f"[yellow]{e}[/]", highlight=False)
        sys.exit(130)
    if summary["is_main"]:
        out.print(f"trained {task} to step {summary['step']} (loss {summary['loss']:.4f}, "
                  f"{summary['skipped']} skipped steps); checkpoint {summary['checkpoint']}", highlight=False)


posttrain_app = typer.Typer(help="Post-train a diffusion world model: camera paths, robot actions.",
                             no_args_is_help=True)
app.add_typer(posttrain_app, name="posttrain")


def _posttrain(task: str, base: Optional[Path], data: Optional[Path], out_dir: Path, preset: Optional[str], overrides,
               resume: bool) -> None:
    from openwfm.diffusion.pretrained import shipped

    if base is not None and not base.exists() and str(base) not in shipped():
        raise typer.BadParameter(f"{base}: no such run, checkpoint or shipped model ({', '.join(shipped())})",
                                 param_hint="--base")
    extra = ([f"base={base}"] if base is not None else []) + ([f"data.shards={data}"] if data is not None else [])
    train(task, (overrides or []) + extra, out_dir, preset, None, resume, None, False, False)


_BASE = typer.Option(None, "--base", help="The diffusion run, checkpoint or shipped model (default-v2w) to start from.")
_PT_OUT = typer.Option(..., "--out", "-o", help="Run directory.")
_PT_DATA = typer.Option(None, "--data", help="Shard directory of simulator rollouts (data.shards).")
_PT_PRESET = typer.Option(None, "--preset", help="Preset of the post-training config (e.g. tiny).")
_PT_RESUME = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out.")
_PT_OVERRIDES = typer.Argument(None, help="key=value overrides, e.g. data.shards=SHARDS train.steps=500.")


@posttrain_app.command("camera")
def posttrain_camera(overrides: Optional[List[str]] = _PT_OVERRIDES, base: Optional[Path] = _BASE,
                     data: Optional[Path] = _PT_DATA, out_dir: Path = _PT_OUT, preset: Optional[str] = _PT_PRESET, resume: bool = _PT_RESUME) -> None:
    """Video2World conditioned on the camera path (Plücker rays; simulator orbit rollouts carry cameras)."""
    _posttrain("posttrain-camera", base, data, out_dir, preset, overrides, resume)


@posttrain_app.command("multiview")
def posttrain_multiview(overrides: Optional[List[str]] = _PT_OVERRIDES, base: Optional[Path] = _BASE,
                        data: Optional[Path] = _PT_DATA, out_dir: Path = _PT_OUT, preset: Optional[str] = _PT_PRESET,
                        resume: bool = _PT_RESUME) -> None:
    """Six driving cameras generated jointly (view-aware; trajectory=true adds the ego path), from drive rollouts."""
    _posttrain("posttrain-multiview", base, data, out_dir, preset, overrides, resume)


@posttrain_app.command("action")
def posttrain_action(overrides: Optional[List[str]] = _PT_OVERRIDES, base: Optional[Path] = _BASE,
                     data: Optional[Path] = _PT_DATA, out_dir: Path = _PT_OUT, preset: Optional[str] = _PT_PRESET, resume: bool = _PT_RESUME) -> None:
    """Video2World conditioned on 7-d robot actions (simulator push rollouts carry them)."""
    _posttrain("posttrain-action", base, data, out_dir, preset, overrides, resume)


@data_app.command("pack")
def data_pack(sources: List[Path] = typer.Argument(..., help="Directories written by wfm sim, and/or video files."),
              shards: Path = typer.Option(..., "--out", "-o", help="Shard directory to create."),
              maxcount: int = typer.Option(1000, "--maxcount", min=1, help="Samples per shard."),
              clip_frames: int = typer.Option(33, "--clip-frames", min=1, help="Video files: frames per clip."),
              short_side: int = typer.Option(128, "--short-side", min=0, help="Video files: short side of the clips (0: keep)."),
              max_clips: Optional[int] = typer.Option(None, "--max-clips", min=1, help="Video files: at most this many clips each."),
              overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing shards in --out.")) -> None:
    """Pack samples into WebDataset shards with an offset index: simulator directories as they are
    (mp4 + json + masks); video files cut into --clip-frames clips scaled to --short-side (mp4 + json)."""
    import itertools

    from openwfm.data import DataError, load_index, pack_samples
    from openwfm.data.clips import video_file_samples
    from openwfm.data.shards import sim_dir_samples

    for src in sources:
        if not src.exists():
            raise DataError(src, "no such file or directory")
    streams = [sim_dir_samples(s) if s.is_dir() else video_file_samples(s, clip_frames, short_side, max_clips=max_clips)
               for s in sources]
    pack_samples(itertools.chain(*streams), shards, maxcount=maxcount, overwrite=overwrite)
    out.print(f"packed {len(load_index(shards))} samples from {len(sources)} source(s) into {shards}")


def _ints(text: str, option: str) -> tuple[int, ...]:
    """'1,9' -> (1, 9); one line naming the option when it is not a list of integers."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: integers separated by commas, e.g. 1,9", param_hint=option) from None


@data_app.command("latents")
def data_latents(shards: Path = typer.Argument(..., help="Shard directory of videos/images."),
                 tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer (shipped name or run): continuous -> latents, discrete -> token indices."),
                 dst: Path = typer.Option(..., "--out", "-o", help="Latent shard directory to create."),
                 resolution: int = typer.Option(64, "--resolution", help="Bucket resolution (pixels)."),
                 num_frames: int = typer.Option(17, "--num-frames", help="Frames per clip (1 + k*t)."),
                 clips: int = typer.Option(1, "--clips", min=1, help="Clips per video (at most)."),
                 clip_step: int = typer.Option(0, "--clip-step", min=0, help="Frames between clip starts (0: num-frames, consecutive clips; smaller: overlapping)."),
                 priors: str = typer.Option("", "--priors", help="Input frame counts, e.g. 1,9: also store each clip's held-input latents (the residual prior of v2w.residual_prior=hold)."),
                 overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Precompute tokenizer latents (or discrete token indices) of a shard set, for training the diffusion
    (or autoregressive) model without the tokenizer."""
    from openwfm.data import load_index
    from openwfm.diffusion.latents import precompute

    n = len(load_index(shards))
    with _progress() as progress:
        task = progress.add_task("latents", total=n)
        precompute(shards, tokenizer, dst, resolution, num_frames, clips, overwrite=overwrite,
                   progress=lambda key: progress.advance(task), clip_step=clip_step, priors=_ints(priors, "--priors"))
    out.print(f"wrote {len(load_index(dst))} latent samples from {n} samples to {dst}")


@data_app.command("index")
def data_index(shards: Path = typer.Argument(..., help="Shard directory or glob.")) -> None:
    """Build (or refresh) a shard directory's index.json and summarize it by bucket."""
    from collections import Counter

    from openwfm.data import load_index, nearest_bucket

    index = load_index(shards)
    counts = Counter(f"{e.kind}/{nearest_bucket(e.width, e.height)}" for e in index)
    table = Table("bucket", "samples", title=f"{shards}: {len(index)} samples")
    for key, n in sorted(counts.items()):
        table.add_row(key, str(n))
    out.print(table)


@data_app.command("caption-index")
def data_caption_index(sources: List[Path] = typer.Argument(..., help="Shard dirs, curator outputs, wfm sim dirs or "
                                                                     "text files (one caption per line)."),
                       out_dir: Path = typer.Option(..., "--out", "-o", help="Index directory to write.")) -> None:
    """Build the caption index the prompt upsampler retrieves from (MiniLM sentence embeddings)."""
    from openwfm.text import CaptionIndex

    index = CaptionIndex.from_sources(sources)
    index.save(out_dir)
    out.print(f"wrote {out_dir}: {len(index)} captions")


@ckpt_app.command("verify")
def ckpt_verify(paths: List[Path] = typer.Argument(..., help="Checkpoint directories (or a run's checkpoints/).")) -> None:
    """Check every file of a checkpoint against its index (sizes and sha256)."""
    from openwfm.train import checkpoint as ckpt

    bad = 0
    for path in paths:
        for p in ckpt.list_checkpoints(path) or [path]:
            problems = ckpt.verify(p)
            bad += bool(problems)
            out.print(f"{p}: " + ("ok" if not problems else "; ".join(problems)), highlight=False)
    if bad:
        raise ckpt.CheckpointError(f"{bad} checkpoint(s) failed verification")


@ckpt_app.command("convert")
def ckpt_convert(path: Path = typer.Argument(..., help="A sharded (FSDP2/DCP) checkpoint directory."),
                 dst: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default: PATH).")) -> None:
    """Consolidate a sharded checkpoint into model.safetensors (+ ema.safetensors), in one process."""
    from openwfm.train import checkpoint as ckpt

    for f in ckpt.consolidate(path, dst):
        out.print(f"wrote {f}")


@app.command("convert")
def convert(src: str = typer.Argument(..., help="A diffusers model or pipeline directory, an NVIDIA tokenizer folder (.jit), or (--to diffusers) an openwfm model: shipped name or path."),
            dst: Path = typer.Option(..., "--out", "-o", help="Directory to write."),
            to: str = typer.Option("openwfm", "--to", help="openwfm (our export format) or diffusers (save_pretrained layout)."),
            trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="Allow NVIDIA .jit files (TorchScript: code that torch.jit.load deserializes)."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists.")) -> None:
    """Convert model weights between layouts: diffusers / NVIDIA -> openwfm exports, openwfm -> diffusers
    (docs/hub.md). A converted pipeline's tokenizer is written beside it (DST-tokenizer)."""
    from openwfm import convert as conv

    if to not in ("openwfm", "diffusers"):
        raise typer.BadParameter(f"{to!r}: openwfm or diffusers", param_hint="--to")
    if to == "openwfm":
        written = conv.to_openwfm(src, dst, trust_torchscript=trust_torchscript, overwrite=overwrite)
    else:
        written = conv.to_diffusers(src, dst, overwrite=overwrite)
    out.print(f"wrote {written}")


recipe_app = typer.Typer(help="Training recipes: one command from nothing to shippable models.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("default")
def recipe_default(out_dir: Path = typer.Option(..., "--out", "-o", help="Recipe directory (sim/, shards/, runs, export/)."),
                   install: bool = typer.Option(False, "--install", help="Copy the exports into the package (openwfm/assets): they become the default model."),
                   sets: Optional[List[str]] = typer.Option(None, "--set", help="key=value recipe overrides, e.g. push=60 v2w_steps=500 (fields: openwfm/recipe.py)."),
                   config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML recipe file(s)."),
                   until: Optional[str] = typer.Option(None, "--until", help="Stop after this step (simulate, pack, tokenizer, export-tokenizer, latents, push-latents, v2w, action, decoder, export).")) -> None:
    """Train the embedded default model: simulate training worlds, pack, train the tokenizer, precompute
    latents, train Video2World, post-train the action variant, fine-tune the tokenizer's decoder on its
    frozen encoder's latents, export. Resumes where it stopped. About 4.5 h on 2 CPU cores with the defaults
    (docs/default-model.md)."""
    from openwfm.recipe import RecipeConfig, run_recipe

    cfg = make_config(RecipeConfig, yaml_files=config or [], overrides=sets or [])
    report = run_recipe(out_dir, cfg, install=install, quiet=_state["quiet"], until=until)
    table = Table("step", "seconds", title=f"wfm recipe default -> {out_dir}")
    for name, info in report["steps"].items():
        table.add_row(name, f"{info['seconds']:.0f}")
    out.print(table)
    for name, path in report["exports"].items():
        out.print(f"{name}: {path}", highlight=False)
