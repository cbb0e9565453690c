"""``wfm``: the openwfm command line. One Typer app; each subsystem adds its commands here."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from openwfm import __version__
from openwfm.config import ConfigError, make_config, preset_names, to_yaml
from openwfm.errors import OpenWFMError

app = typer.Typer(help="openwfm: world foundation models — simulate, curate, tokenize, train, generate, evaluate.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
video_app = typer.Typer(help="Inspect and convert videos.", no_args_is_help=True)
app.add_typer(video_app, name="video")
console = Console(stderr=True, soft_wrap=True)
out = Console()
_state = {"debug": False, "quiet": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"openwfm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _state.update(debug=debug, quiet=quiet)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _configs() -> dict:
    from openwfm.sim.config import SimConfig
    from openwfm.train.task import get_task, task_names

    return {"sim": SimConfig, **{f"train-{n}": get_task(n).config_cls for n in task_names()}}


def _parse_size(size: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size.lower().split("x"))
        return h, w
    except ValueError:
        raise ConfigError(f"--size '{size}': expected HxW, e.g. 128x128") from None


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, disable=_state["quiet"])


@app.command()
def sim(scenario: str = typer.Argument(..., help="falling | push | orbit"),
        overrides: Optional[List[str]] = typer.Argument(None, help="Config overrides key=value, e.g. falling.max_objects=2"),
        num: int = typer.Option(4, "--num", "-n", min=1, help="Number of samples."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Output directory."),
        frames: Optional[int] = typer.Option(None, "--frames", help="Frames per sample (default 33)."),
        size: Optional[str] = typer.Option(None, "--size", help="HxW, e.g. 128x128."),
        fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second (default 12)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the first sample; sample i uses seed + i."),
        workers: int = typer.Option(1, "--workers", "-j", min=1, help="Parallel simulator processes."),
        preset: str = typer.Option("default", "--preset", help="Config preset: default | tiny | demo."),
        config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Re-simulate samples that already exist.")) -> None:
    """Simulate physical scenes with ground truth: NAME.mp4 + NAME.json + NAME.masks.npz per sample."""
    from openwfm.sim import SimConfig, generate

    extra = list(overrides or [])
    if frames is not None:
        extra.append(f"num_frames={frames}")
    if size is not None:
        h, w = _parse_size(size)
        extra += [f"height={h}", f"width={w}"]
    if fps is not None:
        extra.append(f"fps={fps}")
    cfg = make_config(SimConfig, preset=preset, yaml_files=config or [], overrides=extra)
    t0 = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(f"sim {scenario}", total=num)
        done = generate(scenario, cfg, num, out_dir, seed=seed, workers=workers, overwrite=overwrite,
                        on_done=lambda name, cap: progress.advance(task))
        progress.update(task, completed=num)
    dt = time.perf_counter() - t0
    skipped = num - len(done)
    out.print(f"wrote {len(done)} {scenario} samples to {out_dir} in {dt:.1f} s"
              + (f" ({len(done) * cfg.num_frames / dt:.0f} frames/s)" if done else "")
              + (f"; {skipped} already complete, skipped" if skipped else ""))


@video_app.command("info")
def video_info(files: List[Path] = typer.Argument(..., help="Video files."),
               as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Print size, frame rate, frame count, duration and codec of each video."""
    from dataclasses import asdict

    from openwfm.video import probe

    infos = [probe(f) for f in files]
    if as_json:
        out.print_json(json.dumps([asdict(i) for i in infos]))
        return
    table = Table("file", "size", "fps", "frames", "duration", "codec", "container")
    for i in infos:
        table.add_row(i.path, f"{i.width}x{i.height}", f"{i.fps:.3f}", f"{i.num_frames}{'' if i.exact else '~'}",
                      f"{i.duration:.2f} s", i.codec, i.container)
    out.print(table)


@video_app.command("convert")
def video_convert(src: Path = typer.Argument(..., help="Input video (anything FFmpeg reads)."),
                  dst: Path = typer.Argument(..., help="Output .mp4 (H.264) or .gif."),
                  size: Optional[str] = typer.Option(None, "--size", help="Resize to HxW."),
                  step: int = typer.Option(1, "--step", min=1, help="Keep every n-th frame."),
                  start: float = typer.Option(0.0, "--start", help="Start time, seconds."),
                  end: Optional[float] = typer.Option(None, "--end", help="End time, seconds."),
                  crf: int = typer.Option(18, "--crf", help="H.264 quality (0 lossless .. 51 worst).")) -> None:
    """Cut, subsample, resize and re-encode a video to H.264 mp4 or GIF."""
    from openwfm.video import VideoError, pad_to_multiple, read_video, resize, write_gif, write_video

    video = read_video(src, step=step, start_time=start, end_time=end)
    frames = resize(video.frames, _parse_size(size)) if size else video.frames
    if dst.suffix.lower() == ".gif":
        write_gif(dst, frames, video.fps)
    elif dst.suffix.lower() == ".mp4":
        write_video(dst, pad_to_multiple(frames, 2), video.fps, crf=crf)
    else:
        raise VideoError(dst, "output must end in .mp4 or .gif")
    out.print(f"wrote {len(frames)} frames to {dst}")


@app.command("config")
def config_show(name: str = typer.Argument("sim", help="Which config: sim, train-TASK (e.g. train-toy)."),
                overrides: Optional[List[str]] = typer.Argument(None, help="Overrides key=value."),
                preset: Optional[str] = typer.Option(None, "--preset", help="Start from a named preset."),
                config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s).")) -> None:
    """Print a resolved config as YAML (preset <- YAML files <- overrides), and its presets."""
    table = _configs()
    if name not in table:
        raise ConfigError(f"unknown config '{name}': choose one of {', '.join(table)}")
    cfg = make_config(table[name], preset=preset, yaml_files=config or [], overrides=overrides or [])
    out.print(f"# presets: {', '.join(preset_names(table[name]))}", highlight=False)
    out.print(to_yaml(cfg), highlight=False, markup=False)


@app.command()
def demo(out_dir: Path = typer.Option(Path("demo"), "--out", "-o", help="Where to write the demo."),
         num: int = typer.Option(2, "--num", "-n", min=1, help="Scenes per scenario."),
         seed: int = typer.Option(900000, "--seed", help="First seed (held out from training seeds)."),
         workers: int = typer.Option(2, "--workers", "-j", min=1)) -> None:
    """The main job, for now: simulate held-out physical scenes and write them with a summary."""
    from openwfm.demo import run_demo

    with _progress() as progress:
        report = run_demo(out_dir, num=num, seed=seed, workers=workers, progress=progress)
    table = Table("sample", "frames", "caption", title="openwfm demo: simulated scenes", show_lines=True)
    for row in report["samples"]:
        table.add_row(row["name"], str(row["num_frames"]), row["caption"])
    out.print(table)
    out.print(f"summary: {out_dir / 'summary.md'}  ({report['seconds']:.0f} s)")


data_app = typer.Typer(help="Training data: WebDataset shards and their index.", no_args_is_help=True)
app.add_typer(data_app, name="data")
ckpt_app = typer.Typer(help="Training checkpoints: verify, convert sharded ones to safetensors.", no_args_is_help=True)
app.add_typer(ckpt_app, name="ckpt")


@app.command()
def train(task: str = typer.Argument(..., help="What to train: toy (a tiny DiT-like denoiser); each model "
                                               "family adds its own."),
          overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. train.steps=500 "
                                                                      "data.shards=SHARDS (see wfm config train-TASK)."),
          out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory: checkpoints/, metrics.jsonl."),
          preset: Optional[str] = typer.Option(None, "--preset", help="Named preset of the task's config."),
          config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s)."),
          resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint in --out."),
          seed: Optional[int] = typer.Option(None, "--seed", help="Shortcut for train.seed=N.")) -> None:
    """Train a model. On several processes or GPUs, launch the same command with torchrun:
    torchrun --nproc-per-node N -m openwfm.cli train TASK ... train.dist.strategy=fsdp"""
    from openwfm.train.loop import Trainer, TrainingInterrupted
    from openwfm.train.task import get_task

    task_cls = get_task(task)
    extra = [f"train.seed={seed}"] if seed is not None else []
    cfg = make_config(task_cls.config_cls, preset=preset, yaml_files=config or [], overrides=(overrides or []) + extra)
    trainer = Trainer(task_cls(cfg), out_dir, resume=resume, progress=not _state["quiet"])
    if not trainer.env.is_main:
        logging.getLogger().setLevel(logging.ERROR)
    try:
        summary = trainer.fit()
    except TrainingInterrupted as e:
        console.print(f"[yellow]{e}[/]", highlight=False)
        sys.exit(130)
    finally:
        trainer.close()
    if trainer.env.is_main:
        out.print(f"trained {task} to step {summary['step']} (loss {summary['loss']:.4f}, "
                  f"{summary['skipped']} skipped steps); checkpoint {summary['checkpoint']}", highlight=False)


posttrain_app = typer.Typer(help="Post-train a diffusion world model: camera paths, robot actions.",
                             no_args_is_help=True)
app.add_typer(posttrain_app, name="posttrain")


def _posttrain(task: str, base: Optional[Path], data: Optional[Path], out_dir: Path, preset: Optional[str], overrides,
               resume: bool) -> None:
    if base is not None and not base.exists():
        raise typer.BadParameter(f"{base}: no such run or checkpoint", param_hint="--base")
    extra = ([f"base={base}"] if base is not None else []) + ([f"data.shards={data}"] if data is not None else [])
    train(task, (overrides or []) + extra, out_dir, preset, None, resume, None)


_BASE = typer.Option(None, "--base", help="The diffusion run or checkpoint to start from.")
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


@app.command()
def plot(run: Path = typer.Argument(..., help="Run directory (or its metrics.jsonl)."),
         png: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG path (default RUN/curves.png).")) -> None:
    """Draw a run's loss and learning-rate curves to PNG."""
    from openwfm.train.metrics import plot_run

    out.print(f"wrote {plot_run(run, png)}")


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


@data_app.command("latents")
def data_latents(shards: Path = typer.Argument(..., help="Shard directory of videos/images."),
                 tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer (shipped name or run): continuous -> latents, discrete -> token indices."),
                 dst: Path = typer.Option(..., "--out", "-o", help="Latent shard directory to create."),
                 resolution: int = typer.Option(64, "--resolution", help="Bucket resolution (pixels)."),
                 num_frames: int = typer.Option(17, "--num-frames", help="Frames per clip (1 + k*t)."),
                 clips: int = typer.Option(1, "--clips", min=1, help="Consecutive clips per video."),
                 overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Precompute tokenizer latents (or discrete token indices) of a shard set, for training the diffusion
    (or autoregressive) model without the tokenizer."""
    from openwfm.data import load_index
    from openwfm.diffusion.latents import precompute

    n = len(load_index(shards))
    with _progress() as progress:
        task = progress.add_task("latents", total=n)
        precompute(shards, tokenizer, dst, resolution, num_frames, clips, overwrite=overwrite,
                   progress=lambda key: progress.advance(task))
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


tok_app = typer.Typer(help="Causal video tokenizers: train, encode, decode, roundtrip, eval.", no_args_is_help=True)
app.add_typer(tok_app, name="tokenizer")


@tok_app.command("train")
def tokenizer_train(overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides (wfm config train-tokenizer)."),
                    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory."),
                    preset: str = typer.Option("tiny-CV4x8x8", "--preset", help="CV4x8x8, DV8x16x16, tiny-CV4x8x8, ..."),
                    config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s)."),
                    resume: bool = typer.Option(False, "--resume", help="Continue from the newest good checkpoint."),
                    seed: Optional[int] = typer.Option(None, "--seed")) -> None:
    """Train a tokenizer (the same as: wfm train tokenizer --preset P ...)."""
    train("tokenizer", overrides, out_dir, preset, config, resume, seed)


def _load_tok(checkpoint: Path):
    from openwfm.tokenizer.api import load_tokenizer

    return load_tokenizer(checkpoint)


@tok_app.command("encode")
def tokenizer_encode(video: Path = typer.Argument(..., help="Input video."),
                     dst: Path = typer.Argument(..., help="Output .safetensors (latent or FSQ indices)."),
                     checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-s)."),
                     frames: int = typer.Option(0, "--frames", help="Frames to read (0: all)."),
                     chunk: int = typer.Option(0, "--chunk", help="Causal window in frames, 1 + k*t (0: whole video)."),
                     tile: int = typer.Option(0, "--tile", help="Spatial tile in pixels (0: whole frame)."),
                     overlap: int = typer.Option(32, "--overlap", help="Tile overlap in pixels.")) -> None:
    """Encode a video to latents (continuous) or token indices (discrete), as safetensors."""
    from openwfm.tokenizer import api
    from openwfm.video import read_video

    model = _load_tok(checkpoint)
    v = read_video(video, 0, frames or None)
    x, kept = api.prepare(v.frames, model)
    z = api.encode(model, x, chunk, tile, overlap)
    api.save_latent(dst, z, model, {"frames": kept, "fps": v.fps, "height": x.shape[3], "width": x.shape[4]})
    out.print(f"wrote {dst}: {'indices' if not z.is_floating_point() else 'latent'} {tuple(z.shape)} "
              f"from {kept} frames {x.shape[3]}x{x.shape[4]}", highlight=False)


@tok_app.command("decode")
def tokenizer_decode(src: Path = typer.Argument(..., help="Latent file from wfm tokenizer encode."),
                     dst: Path = typer.Argument(..., help="Output .mp4 or .gif."),
                     checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-s)."),
                     chunk: int = typer.Option(0, "--chunk", help="Latent frames per causal window (0: all)."),
                     tile: int = typer.Option(0, "--tile", help="Spatial tile in latent pixels (0: whole)."),
                     overlap: int = typer.Option(4, "--overlap", help="Tile overlap in latent pixels.")) -> None:
    """Decode a latent / token file back to video."""
    from openwfm.tokenizer import api
    from openwfm.tokenizer.model import TokenizerError
    from openwfm.video import write_gif, write_video
    from openwfm.video.transforms import from_tensor

    model = _load_tok(checkpoint)
    z, meta = api.load_latent(src)
    if meta.get("tokenizer") and meta["tokenizer"] != model.cfg.kind:
        raise TokenizerError(f"{src} was encoded by a {meta['tokenizer']} tokenizer; {checkpoint} is a "
                             f"{model.cfg.kind}")
    frames = from_tensor(api.decode(model, z, chunk, tile, overlap).clamp(-1, 1)[0])[:meta.get("frames")]
    fps = float(meta.get("fps", 24.0))
    (write_gif if dst.suffix.lower() == ".gif" else write_video)(dst, frames, fps)
    out.print(f"wrote {len(frames)} frames to {dst}")


@tok_app.command("roundtrip")
def tokenizer_roundtrip(video: Path = typer.Argument(..., help="Input video."),
                        dst: Path = typer.Argument(..., help="Reconstruction .mp4 (input | reconstruction side by side with --side-by-side)."),
                        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-s)."),
                        frames: int = typer.Option(0, "--frames", help="Frames to read (0: all)."),
                        chunk: int = typer.Option(0, "--chunk", help="Causal window in frames (0: whole)."),
                        side_by_side: bool = typer.Option(False, "--side-by-side", help="Write input and reconstruction side by side.")) -> None:
    """Encode and decode a video; print PSNR and SSIM of the reconstruction."""
    import numpy as np

    from openwfm.evaluate.metrics import psnr, ssim
    from openwfm.tokenizer import api
    from openwfm.video import read_video, write_video
    from openwfm.video.transforms import from_tensor

    model = _load_tok(checkpoint)
    v = read_video(video, 0, frames or None)
    x, kept = api.prepare(v.frames, model)
    x_hat = api.decode(model, api.encode(model, x, chunk), (chunk - 1) // model.cfg.temporal_compression + 1
                       if chunk else 0).clamp(-1, 1)
    x, x_hat = x[:, :, :kept], x_hat[:, :, :kept]
    rec = from_tensor(x_hat[0])
    write_video(dst, np.concatenate([from_tensor(x[0]), rec], axis=2) if side_by_side else rec, v.fps)
    out.print(f"wrote {dst}: PSNR {float(psnr(x, x_hat)[0]):.2f} dB, SSIM {float(ssim(x, x_hat)[0]):.4f} "
              f"({model.cfg.kind}, {kept} frames)", highlight=False)


@tok_app.command("export")
def tokenizer_export(run: Path = typer.Argument(..., help="Tokenizer run or checkpoint directory."),
                     dst: Path = typer.Option(..., "--out", "-o", help="Directory to write."),
                     stats: Optional[str] = typer.Option(None, "--stats-shards", help="Shards to measure the latent mean/std on (continuous)."),
                     stats_clips: int = typer.Option(64, "--stats-clips", min=1, help="Clips for the latent statistics."),
                     card: Optional[Path] = typer.Option(None, "--card", help="JSON merged into card.json (recipe, metrics)."),
                     overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Export a run's EMA weights as a small self-contained tokenizer (config, weights, card, index)."""
    from openwfm.data import DataConfig, make_loader
    from openwfm.tokenizer.pretrained import export
    from openwfm.train.checkpoint import resolve

    ckpt = resolve(run)
    model = _load_tok(ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    step = json.loads((ckpt / "index.json").read_text()).get("step", 0)
    clips = []
    if stats:
        data = DataConfig(shards=stats, resolution=config["data"]["resolution"], num_frames=config["data"]["num_frames"],
                          batch_size=1, images=False, multiple=config["data"]["multiple"])
        loader, _ = make_loader(data)
        clips = [b["video"] for b, _ in zip(loader, range(stats_clips))]
    info = {"steps": step, "params": sum(p.numel() for p in model.parameters()), "source_run": str(ckpt)}
    if card:
        info.update(json.loads(card.read_text()))
    path = export(model, config, dst, info, clips, overwrite=overwrite)
    out.print(f"wrote {path} ({model.cfg.kind}, step {step}, "
              f"{(path / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")


@tok_app.command("eval")
def tokenizer_eval(videos: List[Path] = typer.Argument(..., help="Video files (or directories of .mp4)."),
                   checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-s)."),
                   frames: int = typer.Option(17, "--frames", help="Frames per clip."),
                   clips: int = typer.Option(1, "--clips", min=1, help="Consecutive clips per video (from the start)."),
                   size: int = typer.Option(128, "--size", help="Short side of the clips (0: native)."),
                   i3d: Optional[Path] = typer.Option(None, "--i3d", help="Local TorchScript I3D for true FVD."),
                   json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON.")) -> None:
    """Reconstruction metrics: PSNR, SSIM, perceptual distance per clip; FD-EffNet (and FVD with --i3d)."""
    from openwfm.tokenizer.evaluate import evaluate

    files = [f for p in videos for f in (sorted(p.glob("*.mp4")) if p.is_dir() else [p])]
    if not files:
        raise ConfigError("no videos given (directories are searched for *.mp4)")
    model = _load_tok(checkpoint)
    res = evaluate(model, files, frames, size, str(i3d) if i3d else None, clips=clips)
    table = Table("video", "start", "frames", "size", "PSNR dB", "SSIM", "perceptual", title=f"tokenizer {res['tokenizer']}")
    for r in res["rows"]:
        table.add_row(Path(r["video"]).name, str(r["start"]), str(r["frames"]), r["size"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}",
                      f"{r['perceptual']:.4f}")
    s = res["summary"]
    table.add_row(f"mean of {s['clips']}", "", "", "", f"{s['psnr']:.2f}", f"{s['ssim']:.4f}", f"{s['perceptual']:.4f}")
    out.print(table)
    for key in ("fd_effnet", "fvd"):
        if key in s:
            out.print(f"{key}: {s[key]:.2f}")
    if json_out:
        json_out.write_text(json.dumps(res, indent=1))
        out.print(f"wrote {json_out}")


@app.command()
def curate(inputs: List[Path] = typer.Argument(..., help="Video files and/or directories (searched recursively)."),
           out_dir: Path = typer.Option(..., "--out", "-o", help="Output: clips/, shards/, manifest.jsonl, report.html."),
           engine: str = typer.Option("local", "--engine", help="local | ray"),
           ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster (default: start one)."),
           workers: int = typer.Option(2, "--workers", "-j", min=1, help="Ray actors of the filter stage (the others: ray.split.workers, ray.annotate.workers)."),
           config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s)."),
           sets: Optional[List[str]] = typer.Option(None, "--set", help="key=value config overrides, e.g. rules.min_seconds=1"),
           resume: bool = typer.Option(False, "--resume", help="Continue a run in --out (after a crash too).")) -> None:
    """Curate raw footage: shots -> clips -> filters -> captions -> dedup -> WebDataset shards, with a manifest."""
    from openwfm.curate.run import curate as run
    from openwfm.curate.stages import CurateConfig, find_inputs

    cfg = make_config(CurateConfig, yaml_files=config or [], overrides=sets or [])
    n = len(find_inputs(inputs))
    with _progress() as progress:
        task = progress.add_task(f"curate ({engine})", total=n)
        res = run(inputs, out_dir, cfg, engine=engine, ray_address=ray_address, resume=resume, workers=workers,
                  on_input=lambda p: progress.advance(task))
    c = res["counts"]
    out.print(f"inputs: {c.get('input', {})}; clips: {c.get('clip', {})}; "
              f"{len(res['shards'])} shard group(s) in {out_dir / 'shards'}; report: {out_dir / 'report.html'}")


gen_app = typer.Typer(help="Generate video with a trained diffusion world model.", no_args_is_help=True)
app.add_typer(gen_app, name="generate")


def _gen_options(steps, guidance, seed, fps, sampler, negative, frames, size, num_input_frames=0):
    from openwfm.diffusion.pipeline import GenerateConfig

    h, w = _parse_size(size) if size else (0, 0)
    return GenerateConfig(steps=steps, guidance=guidance, seed=seed, fps=fps, sampler=sampler,
                          negative_prompt=negative, num_frames=frames, height=h, width=w,
                          num_input_frames=num_input_frames)


_CKPT = typer.Option(..., "--checkpoint", "-c", help="Diffusion run or checkpoint directory.")
_STEPS = typer.Option(35, "--steps", min=1, help="Sampler steps.")
_GUIDANCE = typer.Option(7.0, "--guidance", help="Classifier-free guidance g (Cosmos form: cond + g(cond - uncond)).")
_SEED = typer.Option(0, "--seed")
_FPS = typer.Option(12.0, "--fps", help="Frame rate of the output (and the model's temporal positions).")
_SAMPLER = typer.Option("2ab", "--sampler", help="2ab | euler | heun")
_NEG = typer.Option("", "--negative-prompt", help="What to steer away from (the unconditional branch).")
_OFFLOAD = typer.Option(False, "--offload", help="Keep components on the CPU except while they run.")
_DEVICE = typer.Option("cpu", "--device", help="cpu | cuda")
_NO_GUARD = typer.Option(False, "--no-guardrail", help="Skip the prompt and video guards (a warning is printed).")
_GUARD_CFG = typer.Option(None, "--guardrail-config", help="YAML with guardrail settings (docs/guardrail.md).")
_INDEX = typer.Option(None, "--upsample-index", help="Caption index (wfm data caption-index): upsample the prompt.")
_UPSAMPLER = typer.Option(None, "--upsampler", help="Local LLM/VLM directory for the prompt upsampler.")


def _guard_hooks(no_guardrail: bool, config: Optional[Path]) -> dict:
    """Pipeline hooks of the guardrail (pre: prompt, post: frames), or none with a warning."""
    from openwfm.guardrail import Guardrail, load_guardrail_config

    cfg = load_guardrail_config(config)
    cfg.enabled = cfg.enabled and not no_guardrail
    return Guardrail(cfg).hooks()  # warns when disabled


def _upsampler(index: Optional[Path], llm: Optional[Path]):
    """The prompt upsampler for ``--upsample-index`` / ``--upsampler`` (None when neither is given)."""
    if index is None and llm is None:
        return None
    from openwfm.text import CaptionIndex, LLMUpsampler, RetrievalUpsampler

    idx = CaptionIndex.load(index) if index is not None else None
    return LLMUpsampler(llm, index=idx) if llm is not None else RetrievalUpsampler(idx)


guard_app = typer.Typer(help="Guardrails: check a prompt or a video (exit 0 allowed, 3 blocked, 1 error).",
                        no_args_is_help=True)
app.add_typer(guard_app, name="guard")
_GUARD_SET = typer.Option(None, "--set", help="key=value guardrail settings, e.g. pre.classifier_threshold=0.7.")
BLOCKED_EXIT = 3


@guard_app.command("prompt")
def guard_prompt(prompt: str = typer.Argument(..., help="The prompt to check."),
                 config: Optional[Path] = _GUARD_CFG, overrides: Optional[List[str]] = _GUARD_SET) -> None:
    """Pre-guard: blocklist (normalized, lemmatized, fuzzy), prompt classifier, optional local LLM guard."""
    from openwfm.guardrail import Guardrail, load_guardrail_config

    d = Guardrail(load_guardrail_config(config, overrides)).check_prompt(prompt)
    out.print(f"{'allowed' if d.allowed else '[bold red]BLOCKED[/]'} ({d.component}): {d.reason}")
    raise typer.Exit(0 if d.allowed else BLOCKED_EXIT)


@guard_app.command("video")
def guard_video(src: Path = typer.Argument(..., help="Video to check."),
                dst: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the cleaned video (faces pixelated)."),
                config: Optional[Path] = _GUARD_CFG, overrides: Optional[List[str]] = _GUARD_SET) -> None:
    """Post-guard: content safety on sampled frames (any unsafe frame -> unsafe), faces pixelated in every
    frame they appear in. Nothing is written for an unsafe video."""
    from openwfm.guardrail import Guardrail, load_guardrail_config
    from openwfm.video import read_video, write_video

    video = read_video(src)
    frames, d = Guardrail(load_guardrail_config(config, overrides)).check_video(video.frames)
    out.print(f"{'safe' if d.allowed else '[bold red]UNSAFE[/]'} ({d.component}): {d.reason}")
    if not d.allowed:
        raise typer.Exit(BLOCKED_EXIT)
    if dst is not None:
        write_video(dst, frames, video.fps)
        out.print(f"wrote {dst}: {len(frames)} frames")


@app.command()
def upsample(prompt: str = typer.Argument(..., help="A short prompt."),
             index: Optional[Path] = typer.Option(None, "--index", help="Caption index (wfm data caption-index)."),
             llm: Optional[Path] = _UPSAMPLER,
             video: Optional[Path] = typer.Option(None, "--video", help="Video2World: use this input video's caption."),
             word_limit: int = typer.Option(0, "--word-limit", help="Leave longer prompts as they are (0: default)."))\
        -> None:
    """Prompt upsampler: rewrite a short prompt in the style of the training captions, keeping its facts."""
    from openwfm.text import upsample_video2world, video_caption

    if index is None and llm is None:
        raise typer.BadParameter("give a caption index (--index DIR) and/or a local model (--upsampler DIR)")
    up = _upsampler(index, llm)
    if word_limit:
        up.word_limit = word_limit
    if video is not None:
        from openwfm.video import read_video

        v = read_video(video)
        res = upsample_video2world(prompt, video_caption(v.frames, fps=v.fps), up, v.frames)
    else:
        res = up.upsample(prompt)
    out.print(res.upsampled)
    if res.skipped:
        console.print(f"[yellow]not upsampled:[/] {res.reason}")


@gen_app.command("text2world")
def generate_text2world(prompt: str = typer.Option(..., "--prompt", "-p"), dst: Path = typer.Option(..., "--out", "-o"),
                        checkpoint: Path = _CKPT, steps: int = _STEPS, guidance: float = _GUIDANCE, seed: int = _SEED,
                        fps: float = _FPS, sampler: str = _SAMPLER, negative: str = _NEG,
                        frames: int = typer.Option(0, "--frames", help="Frames (0: the model's clip length)."),
                        size: str = typer.Option("", "--size", help="HxW (default: the model's training size)."),
                        offload: bool = _OFFLOAD, device: str = _DEVICE, no_guardrail: bool = _NO_GUARD,
                        guardrail_config: Optional[Path] = _GUARD_CFG, upsample_index: Optional[Path] = _INDEX,
                        upsampler: Optional[Path] = _UPSAMPLER) -> None:
    """Text2World: a video from a prompt (between the prompt and video guards; optionally upsampled)."""
    from openwfm.diffusion.pipeline import WorldPipeline
    from openwfm.video import write_video

    up = _upsampler(upsample_index, upsampler)
    pipe = WorldPipeline.from_run(checkpoint, device=device, offload=offload, upsample=up,
                                  **_guard_hooks(no_guardrail, guardrail_config))
    t0 = time.perf_counter()
    video = pipe.text2world(prompt, _gen_options(steps, guidance, seed, fps, sampler, negative, frames, size))
    write_video(dst, video, fps)
    out.print(f"wrote {dst}: {len(video)} frames {video.shape[2]}x{video.shape[1]} in {time.perf_counter() - t0:.1f} s")


@gen_app.command("video2world")
def generate_video2world(src: Path = typer.Option(..., "--input", "-i", help="Input video (its last frames condition)."),
                         dst: Path = typer.Option(..., "--out", "-o"), prompt: str = typer.Option("", "--prompt", "-p"),
                         num_input_frames: int = typer.Option(0, "--num-input-frames", help="1 or 9 (0: as trained)."),
                         total: int = typer.Option(0, "--total-frames", help="Chain clips up to this many frames."),
                         checkpoint: Path = _CKPT, steps: int = _STEPS, guidance: float = _GUIDANCE, seed: int = _SEED,
                         fps: float = _FPS, sampler: str = _SAMPLER, negative: str = _NEG,
                         size: str = typer.Option("", "--size", help="HxW to resize the input to (default: the model's)."),
                         camera: Optional[Path] = typer.Option(None, "--camera", help="Camera trajectory JSON (a camera post-trained model; docs/posttrain.md)."),
                         actions: Optional[Path] = typer.Option(None, "--actions", help="Robot actions JSON {\"actions\": [[7 floats], ...]} (an action post-trained model)."),
                         offload: bool = _OFFLOAD, device: str = _DEVICE, no_guardrail: bool = _NO_GUARD,
                         guardrail_config: Optional[Path] = _GUARD_CFG, upsample_index: Optional[Path] = _INDEX,
                         upsampler: Optional[Path] = _UPSAMPLER) -> None:
    """Video2World: continue a video (optionally steered by a prompt, a camera path or robot actions),
    between the prompt and video guards."""
    from openwfm.diffusion.pipeline import WorldPipeline
    from openwfm.video import read_video, write_video
    from openwfm.video.transforms import center_crop, resize

    pipe = WorldPipeline.from_run(checkpoint, device=device, offload=offload,
                                  **_guard_hooks(no_guardrail, guardrail_config))
    g = _gen_options(steps, guidance, seed, fps, sampler, negative, 0, size, num_input_frames)
    n_in = g.num_input_frames or pipe.cfg.v2w.num_input_frames
    frames = read_video(src).frames
    h, w = (g.height or pipe.cfg.data.resolution), (g.width or pipe.cfg.data.resolution)
    scale = max(h / frames.shape[1], w / frames.shape[2])  # cover (h, w), then crop the middle
    frames = resize(frames, (max(h, round(frames.shape[1] * scale)), max(w, round(frames.shape[2] * scale))))
    frames = center_crop(frames, (h, w))
    net_kw = _posttrain_conditions(pipe, g, h, w, camera, actions)
    up = _upsampler(upsample_index, upsampler)
    if up is not None and prompt:
        from openwfm.text import upsample_video2world, video_caption

        prompt = upsample_video2world(prompt, video_caption(frames, fps=fps), up, frames).upsampled
        out.print(f"upsampled prompt: {prompt}")
    t0 = time.perf_counter()
    video = pipe.video2world(frames[-n_in:], prompt, g, total_frames=total, net_kw=net_kw)
    write_video(dst, video, fps)
    out.print(f"wrote {dst}: {n_in} input + {len(video) - n_in} generated frames in {time.perf_counter() - t0:.1f} s")


@gen_app.command("multiview")
def generate_multiview(src: Path = typer.Option(..., "--input", "-i", help="Tiled six-camera video (a drive rollout)."),
                       dst: Path = typer.Option(..., "--out", "-o"), checkpoint: Path = _CKPT,
                       prompt: str = typer.Option("", "--prompt", "-p"),
                       trajectory: Optional[Path] = typer.Option(None, "--trajectory", help="JSON with the ego's 64-point future trajectory (a drive rollout's JSON works)."),
                       steps: int = _STEPS, seed: int = _SEED, fps: float = _FPS, sampler: str = _SAMPLER,
                       device: str = _DEVICE, no_guardrail: bool = _NO_GUARD,
                       guardrail_config: Optional[Path] = _GUARD_CFG) -> None:
    """Multi-view driving: continue six tiled cameras jointly from the input's first frame."""
    import json as _json

    from openwfm.data.buckets import bucket_sizes, fit_to_bucket, nearest_bucket
    from openwfm.diffusion.pipeline import WorldPipeline
    from openwfm.posttrain.train import MultiviewRunConfig, trajectory_vector, view_maps
    from openwfm.sim.drive import VIEW_LAYOUT, VIEWS
    from openwfm.video import read_video, write_video

    pipe = WorldPipeline.from_run(checkpoint, device=device, **_guard_hooks(no_guardrail, guardrail_config))
    if not isinstance(pipe.cfg, MultiviewRunConfig):
        raise typer.BadParameter(f"{checkpoint}: not a multi-view model (wfm posttrain multiview)")
    if (trajectory is not None) != pipe.cfg.trajectory:
        raise typer.BadParameter("--trajectory goes with a trajectory-conditioned model (and such a model needs it)")
    frames = read_video(src).frames[:1]
    H, W = frames.shape[1:3]
    h, w = bucket_sizes(pipe.cfg.data.resolution, multiple=16)[nearest_bucket(W, H)]
    frames = fit_to_bucket(frames, (h, w))[0]
    g = _gen_options(steps, 0.0, seed, fps, sampler, "", 0, f"{h}x{w}", 1)
    meta = {"height": H, "width": W, "view_layout": [list(r) for r in VIEW_LAYOUT], "views_order": list(VIEWS)}
    kw = {"extra": view_maps(meta, (h, w), pipe.latent_grid(h, w, g))[None]}
    if trajectory is not None:
        try:
            kw["action"] = trajectory_vector(_json.loads(trajectory.read_text()))[None] * pipe.cfg.trajectory_scale
        except (OSError, ValueError) as e:
            raise typer.BadParameter(f"{trajectory}: cannot read the trajectory ({e})") from None
    t0 = time.perf_counter()
    video = pipe.video2world(frames, prompt, g, net_kw=kw)
    write_video(dst, video, fps)
    out.print(f"wrote {dst}: six views tiled {VIEW_LAYOUT}, {len(video)} frames in {time.perf_counter() - t0:.1f} s")


def _posttrain_conditions(pipe, g, h: int, w: int, camera: Optional[Path], actions: Optional[Path]) -> dict:
    """Network inputs of a post-trained model for one clip: camera rays and / or robot actions."""
    import json as _json

    from openwfm.posttrain.train import CameraRunConfig, MultiviewRunConfig

    net = pipe.model.net.cfg
    clip = pipe._clip_frames(g)
    kw = {}
    if isinstance(pipe.cfg, MultiviewRunConfig):
        raise typer.BadParameter("a multi-view model: generate with `wfm generate multiview`")
    if (camera is not None) != isinstance(pipe.cfg, CameraRunConfig):
        raise typer.BadParameter("--camera goes with a camera post-trained model (and such a model needs it)")
    if (actions is not None) != bool(net.action_dim):
        raise typer.BadParameter("--actions goes with an action post-trained model (and such a model needs it)")
    if camera is not None:
        from openwfm.posttrain.camera import TrajectoryError, load_trajectory
        from openwfm.posttrain.train import clip_rays

        K, c2w, (th, tw) = load_trajectory(camera)
        if len(c2w) < clip:
            raise TrajectoryError(f"{camera}: {len(c2w)} cameras for a {clip}-frame clip")
        meta = {"camera": {"intrinsics": K.tolist(), "cam2world": c2w.tolist()}, "height": th, "width": tw}
        kw["extra"] = clip_rays(meta, 0, 1, clip, (h, w), pipe.latent_grid(h, w, g),
                                pipe.codec.model.cfg.temporal_compression)[None]
    if actions is not None:
        try:
            acts = _json.loads(actions.read_text())
        except (OSError, ValueError) as e:
            raise typer.BadParameter(f"{actions}: cannot read the actions ({e})") from None
        doc = acts if isinstance(acts, dict) else {"actions": acts}
        if len(doc.get("actions") or []) < clip - 1:
            raise typer.BadParameter(f"{actions}: needs {clip - 1} actions of 7 numbers for a {clip}-frame clip")
        a = pipe.cfg.action_input({**doc, "name": str(actions)}, 0, 1, clip, pipe.codec.model.cfg.temporal_compression)
        if a.shape[-1] != net.action_dim:
            raise typer.BadParameter(f"{actions}: {a.shape[-1]} action values, the model takes {net.action_dim}")
        kw["action"] = a[None]
    return kw


@gen_app.command("ar-video2world")
def generate_ar_video2world(src: Path = typer.Option(..., "--input", "-i", help="Input video (its last frames condition)."),
                            dst: Path = typer.Option(..., "--out", "-o"),
                            checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Autoregressive run or checkpoint."),
                            prompt: str = typer.Option("", "--prompt", "-p", help="Text (Video2World models with cross-attention)."),
                            num_input_frames: int = typer.Option(1, "--num-input-frames", help="1 or 1 + k*temporal compression (Cosmos: 1 or 9)."),
                            temperature: float = typer.Option(1.0, "--temperature", help="0: greedy."),
                            top_p: float = typer.Option(0.8, "--top-p"), top_k: int = typer.Option(0, "--top-k", help="0: off."),
                            seed: int = _SEED, fps: float = _FPS,
                            medusa: bool = typer.Option(False, "--medusa", help="Speculative decoding with the run's Medusa heads."),
                            decoder: Optional[Path] = typer.Option(None, "--decoder", help="Diffusion decoder run (wfm train ar-decoder)."),
                            no_decoder: bool = typer.Option(False, "--no-diffusion-decoder", help="Decode with the DV tokenizer itself."),
                            actions: Optional[Path] = typer.Option(None, "--actions", help="Robot actions JSON (an action-conditioned model; docs/posttrain.md)."),
                            device: str = _DEVICE, no_guardrail: bool = _NO_GUARD,
                            guardrail_config: Optional[Path] = _GUARD_CFG) -> None:
    """Autoregressive Video2World: continue a video token by token; tokens -> pixels by the diffusion decoder
    (--decoder) or the DV tokenizer (--no-diffusion-decoder)."""
    import numpy as np

    from openwfm.autoregressive.pipeline import ARPipeline
    from openwfm.autoregressive.sampling import SamplingConfig
    from openwfm.data.buckets import bucket_sizes, fit_to_bucket, nearest_bucket
    from openwfm.video import read_video, write_video

    if decoder is None and not no_decoder:
        raise typer.BadParameter("give the diffusion decoder (--decoder RUN) or --no-diffusion-decoder")
    pipe = ARPipeline.from_run(checkpoint, device=device, decoder="" if no_decoder else decoder,
                               **_guard_hooks(no_guardrail, guardrail_config))
    frames = read_video(src).frames
    size = bucket_sizes(pipe.cfg.data.resolution, multiple=16)[nearest_bucket(frames.shape[2], frames.shape[1])]
    frames = fit_to_bucket(frames[-num_input_frames:], size)[0]
    t0 = time.perf_counter()
    acts = None
    if actions is not None:
        import json as _json

        try:
            doc = _json.loads(actions.read_text())
            acts = np.asarray(doc["actions"] if isinstance(doc, dict) else doc, dtype=np.float32)[:pipe.cfg.data.num_frames - 1]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise typer.BadParameter(f"{actions}: cannot read the actions ({e})") from None
        if acts.ndim != 2 or acts.shape != (pipe.cfg.data.num_frames - 1, 7):
            raise typer.BadParameter(f"{actions}: needs {pipe.cfg.data.num_frames - 1} actions of 7 numbers")
    video = pipe.video2world(frames, prompt, num_input_frames, SamplingConfig(temperature, top_p, top_k, seed), medusa,
                             acts)
    write_video(dst, video, fps)
    extra = f"; Medusa accepted {pipe.stats['accepted_per_round']:.2f} drafts per step" if medusa else ""
    out.print(f"wrote {dst}: {num_input_frames} input + {len(video) - num_input_frames} generated frames "
              f"in {time.perf_counter() - t0:.1f} s{extra}")


eval_app = typer.Typer(help="Evaluate world models and tokenizers (physics alignment, 3D consistency, reconstruction); "
                            "each command writes results.json and report.html.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

_EV_SIM = typer.Option(..., "--sim", "-s", help="Rollout directory or JSON written by wfm sim (more may follow it).")
_EV_MORE = typer.Argument(None, help="More rollout directories or JSON files.", show_default=False)
_EV_CKPT = typer.Option(None, "--checkpoint", "-c", help="Video2World run or checkpoint (none: no model, baselines / real frames only).")
_EV_INPUT = typer.Option(1, "--num-input-frames", min=1, help="Conditioning frames: 1 or 9 (Cosmos).")
_EV_STEPS = typer.Option(35, "--steps", min=1, help="Sampler steps of the model.")
_EV_GUIDANCE = typer.Option(7.0, "--guidance", help="Classifier-free guidance of the model.")
_EV_SEED = typer.Option(0, "--seed", help="Sampler seed of the model.")
_EV_PROMPT = typer.Option("caption", "--prompt", help="'caption': each rollout's caption; anything else is the prompt itself ('' for none).")
_EV_FRAMES = typer.Option(0, "--num-frames", min=0, help="Clip length (0: the model's, or 17 without a model).")
_EV_RES = typer.Option(0, "--resolution", min=0, help="Square size (0: the model's, or 64 without a model).")
_EV_MAX = typer.Option(0, "--max-rollouts", min=0, help="At most this many rollouts from each directory (0: all).")
_EV_DEVICE = typer.Option("cpu", "--device", help="cpu | cuda")
_EV_NO_MODEL_NOTE = "no --checkpoint: no world model in this table (an embedded default model is planned)"


def _ev_setup(sim: List[Path], more: Optional[List[Path]], checkpoint: Optional[Path], num_input_frames: int, steps: int,
              guidance: float, seed: int, prompt: str, num_frames: int, resolution: int, max_rollouts: int,
              device: str):
    """(rollout files, {name: model predictor} (empty without a checkpoint), num_frames, resolution)."""
    from openwfm.evaluate.physics import WorldModelPredictor, find_rollouts

    files = find_rollouts([*sim, *(more or [])], max_rollouts)
    models = {}
    if checkpoint is not None:
        pred = WorldModelPredictor.from_run(checkpoint, device=device, prompt=prompt, steps=steps, guidance=guidance,
                                            seed=seed, num_frames=num_frames)
        models[pred.name] = pred
        num_frames = num_frames or pred.pipe._clip_frames(pred.generate)
        resolution = resolution or pred.pipe.cfg.data.resolution
    return files, models, num_frames or 17, resolution or 64


def _ev_table(result: dict, columns: list[tuple[str, str]], title: str) -> Table:
    from openwfm.evaluate.report import fmt

    table = Table(*[head for _, head in columns], title=title)
    for row in result["summary"]:
        table.add_row(*[fmt(row.get(key)) for key, _ in columns])
    return table


def _ev_finish(result: dict, out_dir: Path, columns: list[tuple[str, str]]) -> None:
    from openwfm.evaluate.report import write_report

    table = _ev_table(result, columns, result["title"])
    (out if out.is_terminal else Console(width=max(out.width, 160))).print(table)  # logs: no squeezed columns
    for note in result.get("notes", []):
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    json_path, html_path = write_report(result, out_dir)
    out.print(f"wrote {json_path} and {html_path}", highlight=False)


def _ev_progress(label: str, total: int):
    prog = _progress()
    return prog, prog.add_task(label, total=total)


@eval_app.command("physics")
def eval_physics(sim: List[Path] = _EV_SIM, more: Optional[List[Path]] = _EV_MORE,
                 checkpoint: Optional[Path] = _EV_CKPT, num_input_frames: int = _EV_INPUT, steps: int = _EV_STEPS,
                 guidance: float = _EV_GUIDANCE, seed: int = _EV_SEED, prompt: str = _EV_PROMPT,
                 num_frames: int = _EV_FRAMES, resolution: int = _EV_RES, max_rollouts: int = _EV_MAX,
                 fit_on: str = typer.Option("clip", "--mask-fit", help="Colour model of the masks from the whole true clip ('clip') or the input frames ('input')."),
                 out_dir: Path = typer.Option(Path("eval/physics"), "--out", "-o", help="Where results.json and report.html go."),
                 device: str = _EV_DEVICE) -> None:
    """Physics alignment (Cosmos sec. 7.2): condition on the first frames of simulator rollouts, predict the rest;
    PSNR, SSIM, perceptual distance, object-mask IoU — the model next to copy-last and linear extrapolation."""
    from openwfm.evaluate.masks import ColorMaskConfig
    from openwfm.evaluate.physics import BASELINES, PhysicsConfig, evaluate_physics

    files, models, num_frames, resolution = _ev_setup(sim, more, checkpoint, num_input_frames, steps, guidance, seed,
                                                      prompt, num_frames, resolution, max_rollouts, device)
    cfg = PhysicsConfig(num_input_frames, num_frames, resolution, masks=ColorMaskConfig(fit_on=fit_on))
    prog, task = _ev_progress("physics", len(files))
    with prog:
        result = evaluate_physics(files, {**BASELINES, **models}, cfg, progress=lambda _: prog.advance(task))
    result["config"].update(checkpoint=str(checkpoint) if checkpoint else None, steps=steps, guidance=guidance,
                            seed=seed, prompt=prompt)
    if not models:
        result["notes"].append(_EV_NO_MODEL_NOTE)
    _ev_finish(result, out_dir, [("predictor", "predictor"), ("scenario", "scenario"), ("n", "n"), ("psnr", "PSNR dB"),
                                 ("ssim", "SSIM"), ("perceptual", "perceptual"), ("mask_iou", "mask IoU"),
                                 ("mask_iou_moving", "IoU moving")])


@eval_app.command("consistency")
def eval_consistency(sim: List[Path] = _EV_SIM, more: Optional[List[Path]] = _EV_MORE,
                     checkpoint: Optional[Path] = _EV_CKPT, num_input_frames: int = _EV_INPUT, steps: int = _EV_STEPS,
                     guidance: float = _EV_GUIDANCE, seed: int = _EV_SEED, prompt: str = _EV_PROMPT,
                     num_frames: int = _EV_FRAMES, resolution: int = _EV_RES, max_rollouts: int = _EV_MAX,
                     gap: int = typer.Option(2, "--gap", min=1, help="Frames between the two frames of a pair."),
                     matcher: str = typer.Option("klt", "--matcher", help="Correspondences: klt | sift."),
                     out_dir: Path = typer.Option(Path("eval/consistency"), "--out", "-o", help="Where results.json and report.html go."),
                     device: str = _EV_DEVICE) -> None:
    """3D consistency (Cosmos sec. 7.1): Sampson error and camera-pose recovery on real rollout frames and,
    with a model, on its continuations of them, side by side (orbit rollouts: true cameras)."""
    from openwfm.evaluate.consistency import ConsistencyConfig, evaluate_consistency

    files, models, num_frames, resolution = _ev_setup(sim, more, checkpoint, num_input_frames, steps, guidance, seed,
                                                      prompt, num_frames, resolution, max_rollouts, device)
    prog, task = _ev_progress("consistency", len(files))
    with prog:
        result = evaluate_consistency(files, models, num_input_frames, num_frames, resolution,
                                      ConsistencyConfig(gap=gap, matcher=matcher), progress=lambda _: prog.advance(task))
    result["config"].update(checkpoint=str(checkpoint) if checkpoint else None, steps=steps, guidance=guidance,
                            seed=seed, prompt=prompt)
    if not models:
        result["notes"].append(_EV_NO_MODEL_NOTE.replace("no world model", "real frames only, no world model"))
    _ev_finish(result, out_dir, [("video", "video"), ("scenario", "scenario"), ("n", "n"), ("matches", "matches"),
                                 ("motion_px", "motion px"), ("sampson_px", "Sampson px"), ("inlier_ratio", "F inl"),
                                 ("sampson_gt_px", "Sampson GT"), ("pose_recovered", "recovered"),
                                 ("pose_success", "success"), ("rot_err_deg", "rot err°"), ("trans_err_deg", "dir err°")])


@eval_app.command("tokenizer")
def eval_tokenizer(videos: List[Path] = typer.Argument(..., help="Video files (or directories of .mp4)."),
                   checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-s)."),
                   frames: int = typer.Option(17, "--frames", help="Frames per clip."),
                   clips: int = typer.Option(1, "--clips", min=1, help="Consecutive clips per video (from the start)."),
                   size: int = typer.Option(128, "--size", help="Short side of the clips (0: native)."),
                   i3d: Optional[Path] = typer.Option(None, "--i3d", help="Local TorchScript I3D for true FVD."),
                   out_dir: Path = typer.Option(Path("eval/tokenizer"), "--out", "-o", help="Where results.json and report.html go.")) -> None:
    """Tokenizer reconstruction (wfm tokenizer eval) with the eval reports: PSNR, SSIM, perceptual distance per
    clip; FD-EffNet (and FVD with --i3d)."""
    from openwfm.tokenizer.evaluate import evaluate

    files = [f for p in videos for f in (sorted(p.glob("*.mp4")) if p.is_dir() else [p])]
    if not files:
        raise ConfigError(f"no videos in {', '.join(map(str, videos))} (directories are searched for *.mp4)")
    for f in files:
        if not f.is_file():
            raise ConfigError(f"{f}: no such video file")
    model = _load_tok(checkpoint)
    prog, task = _ev_progress("tokenizer", len(files) * clips)
    with prog:
        res = evaluate(model, files, frames, size, str(i3d) if i3d else None, clips=clips,
                       progress=lambda _: prog.advance(task))
    rows = [{**r, "video": Path(r["video"]).name} for r in res["rows"]]
    result = {"title": f"Tokenizer reconstruction ({res['tokenizer']})",
              "config": {"checkpoint": str(checkpoint), "frames": frames, "clips": clips, "size": size,
                         "i3d": str(i3d) if i3d else None},
              "summary": [{"tokenizer": res["tokenizer"], **res["summary"]}], "rows": rows,
              "notes": ["fd_effnet: Fréchet distance of EfficientNet-Lite0 clip features; not FVD"]}
    columns = [("tokenizer", "tokenizer"), ("clips", "clips"), ("psnr", "PSNR dB"), ("ssim", "SSIM"),
               ("perceptual", "perceptual"), ("fd_effnet", "FD-EffNet")] + ([("fvd", "FVD")] if i3d else [])
    _ev_finish(result, out_dir, columns)


def main() -> None:
    try:
        app()
    except OpenWFMError as e:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted; complete outputs were kept")
        sys.exit(130)


if __name__ == "__main__":
    main()
