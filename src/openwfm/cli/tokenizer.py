"""``wfm tokenizer``: train, encode, decode, roundtrip, export, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from openwfm.cli.app import _progress, app, console, out
from openwfm.cli.training import train
from openwfm.config import ConfigError


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
    train("tokenizer", overrides, out_dir, preset, config, resume, seed, False, False)


_MAX_MEMORY = typer.Option("4GiB", "--max-memory", help="Memory the whole process may use (e.g. 4GiB, 512MB): "
                           "temporal windows and spatial tiles are chosen to fit it, and a clip that cannot fit "
                           "is refused before any work, with the memory it needs.")


def _load_tok(checkpoint: Path):
    from openwfm.tokenizer.api import load_tokenizer

    return load_tokenizer(checkpoint)


@tok_app.command("encode")
def tokenizer_encode(video: Path = typer.Argument(..., help="Input video."),
                     dst: Path = typer.Argument(..., help="Output .safetensors (latent or FSQ indices)."),
                     checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-real)."),
                     frames: int = typer.Option(0, "--frames", help="Frames to read (0: all)."),
                     chunk: int = typer.Option(0, "--chunk", help="Causal window in frames, 1 + k*t (0: chosen from --max-memory)."),
                     tile: int = typer.Option(0, "--tile", help="Spatial tile in pixels (0: chosen from --max-memory)."),
                     overlap: int = typer.Option(32, "--overlap", help="Tile overlap in pixels (with --tile)."),
                     max_memory: str = _MAX_MEMORY) -> None:
    """Encode a video to latents (continuous) or token indices (discrete), as safetensors."""
    from openwfm.tokenizer import api
    from openwfm.video import read_video

    model = _load_tok(checkpoint)
    _check_pieces(model, chunk, tile, overlap)
    v = read_video(video, 0, frames or None)
    f, kept = api.prepare_frames(v.frames, model)
    plan = _plan(model, f, max_memory, chunk, tile, overlap)
    with _progress() as prog:
        task = prog.add_task("encode", total=None)
        z = api.encode_frames(model, f, plan, lambda d, t: prog.update(task, completed=d, total=t))
    api.save_latent(dst, z, model, {"frames": kept, "fps": v.fps, "height": f.shape[1], "width": f.shape[2]})
    out.print(f"wrote {dst}: {'indices' if not z.is_floating_point() else 'latent'} {tuple(z.shape)} "
              f"from {kept} frames of {f.shape[2]}x{f.shape[1]}", highlight=False)


def _check_pieces(model, chunk: int, tile: int, overlap: int, latent: bool = False) -> None:
    """One line for a window or tile the tokenizer cannot use (``latent``: sizes in latent frames / pixels)."""
    t, s = model.cfg.temporal_compression, model.cfg.spatial_compression
    if chunk < 0 or tile < 0 or overlap < 0:
        raise ConfigError("--chunk, --tile and --overlap must be >= 0")
    if chunk and not latent and (chunk - 1) % t:
        raise ConfigError(f"--chunk {chunk}: the {model.cfg.kind} tokenizer needs windows of 1 + k*{t} frames, "
                          f"e.g. {1 + max(1, (chunk - 1) // t) * t}")
    if chunk == 1 and not latent and t > 1 or chunk == 1 and latent:
        raise ConfigError(f"--chunk {chunk}: a window must hold more than the frame it shares with the previous one")
    unit = 1 if latent else s
    if tile and (tile % unit or overlap % unit or overlap >= tile):
        raise ConfigError(f"--tile {tile} / --overlap {overlap}: both must be multiples of {unit} and the overlap "
                          "smaller than the tile")


def _plan(model, frames, max_memory: str, chunk: int = 0, tile: int = 0, overlap: int = 0):
    from openwfm.tokenizer import api

    plan = api.plan_for(model, frames, max_memory, chunk, tile, overlap)
    if plan.chunk_frames or plan.tile:
        console.print(f"coding in {plan.describe()} (--max-memory {max_memory})", highlight=False)
    return plan


@tok_app.command("decode")
def tokenizer_decode(src: Path = typer.Argument(..., help="Latent file from wfm tokenizer encode."),
                     dst: Path = typer.Argument(..., help="Output .mp4 or .gif."),
                     checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-real)."),
                     chunk: int = typer.Option(0, "--chunk", help="Latent frames per causal window (0: chosen from --max-memory)."),
                     tile: int = typer.Option(0, "--tile", help="Spatial tile in latent pixels (0: chosen from --max-memory)."),
                     overlap: int = typer.Option(4, "--overlap", help="Tile overlap in latent pixels (with --tile)."),
                     max_memory: str = _MAX_MEMORY) -> None:
    """Decode a latent / token file back to video."""
    from openwfm.tokenizer import api
    from openwfm.tokenizer.model import TokenizerError
    from openwfm.video import check_output, write_gif, write_video

    check_output(dst, gif=True)
    model = _load_tok(checkpoint)
    _check_pieces(model, chunk, tile, overlap, latent=True)
    z, meta = api.load_latent(src)
    if meta.get("tokenizer") and meta["tokenizer"] != model.cfg.kind:
        raise TokenizerError(f"{src} was encoded by a {meta['tokenizer']} tokenizer; {checkpoint} is a "
                             f"{model.cfg.kind}")
    cfg, lat = model.cfg, (z.shape[2:] if z.is_floating_point() else z.shape[1:])
    t = 1 if cfg.is_image else cfg.temporal_compression
    shape = ((lat[0] - 1) * t + 1 if t > 1 else lat[0], lat[1] * cfg.spatial_compression, lat[2] * cfg.spatial_compression)
    plan = _plan(model, shape, max_memory, (chunk - 1) * t + 1 if chunk else 0, tile * cfg.spatial_compression,
                 overlap * cfg.spatial_compression)
    with _progress() as prog:
        task = prog.add_task("decode", total=None)
        frames = api.decode_frames(model, z, plan, progress=lambda d, t: prog.update(task, completed=d, total=t))
    frames = frames[:meta.get("frames")]
    fps = float(meta.get("fps", 24.0))
    (write_gif if dst.suffix.lower() == ".gif" else write_video)(dst, frames, fps)
    out.print(f"wrote {len(frames)} frames to {dst}")


@tok_app.command("roundtrip")
def tokenizer_roundtrip(video: Path = typer.Argument(..., help="Input video."),
                        dst: Path = typer.Argument(..., help="Reconstruction .mp4 (input | reconstruction side by side with --side-by-side)."),
                        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-real)."),
                        frames: int = typer.Option(0, "--frames", help="Frames to read (0: all)."),
                        chunk: int = typer.Option(0, "--chunk", help="Causal window in frames (0: chosen from --max-memory)."),
                        tile: int = typer.Option(0, "--tile", help="Spatial tile in pixels (0: chosen from --max-memory)."),
                        overlap: int = typer.Option(32, "--overlap", help="Tile overlap in pixels (with --tile)."),
                        max_memory: str = _MAX_MEMORY,
                        side_by_side: bool = typer.Option(False, "--side-by-side", help="Write input and reconstruction side by side.")) -> None:
    """Encode and decode a video; print PSNR and SSIM of the reconstruction (of the frames read, before they
    are rounded to 8 bits for the file)."""
    import numpy as np

    from openwfm.evaluate.metrics import DATA_RANGE, ssim_frames
    from openwfm.tokenizer import api
    from openwfm.video import check_output, read_video, write_video
    from openwfm.video.transforms import to_tensor

    check_output(dst)
    model = _load_tok(checkpoint)
    _check_pieces(model, chunk, tile, overlap)
    v = read_video(video, 0, frames or None)
    f, kept = api.prepare_frames(v.frames, model)
    plan = _plan(model, f, max_memory, chunk, tile, overlap)
    sums = {"se": 0.0, "n": 0, "ssim": 0.0, "planes": 0}

    def score(start: int, x_hat) -> None:  # per window: the same PSNR and SSIM as over the whole clip
        n = max(0, min(x_hat.shape[2], kept - start))
        if n:
            x, y = to_tensor(f[start:start + n]).double(), x_hat[0, :, :n].double()
            sums["se"] += float(((x - y) ** 2).sum())
            sums["n"] += x.numel()
            sums["ssim"] += float(ssim_frames(x.flatten(0, 1), y.flatten(0, 1)).sum())
            sums["planes"] += x.shape[0] * x.shape[1]

    with _progress() as prog:
        enc, dec = prog.add_task("encode", total=None), prog.add_task("decode", total=None)
        z = api.encode_frames(model, f, plan, lambda d, t: prog.update(enc, completed=d, total=t))
        rec = api.decode_frames(model, z, plan, score, lambda d, t: prog.update(dec, completed=d, total=t))[:kept]
    write_video(dst, np.concatenate([f[:kept], rec], axis=2) if side_by_side else rec, v.fps)
    psnr = 10 * np.log10(DATA_RANGE ** 2 / max(sums["se"] / sums["n"], DATA_RANGE ** 2 * 1e-10))
    out.print(f"wrote {dst}: PSNR {psnr:.2f} dB, SSIM {sums['ssim'] / sums['planes']:.4f} "
              f"({model.cfg.kind}, {kept} frames)", highlight=False)


@tok_app.command("export")
def tokenizer_export(run: Path = typer.Argument(..., help="Tokenizer run or checkpoint directory."),
                     dst: Path = typer.Option(..., "--out", "-o", help="Directory to write."),
                     stats: Optional[str] = typer.Option(None, "--stats-shards", help="Shards to measure the latent mean/std on (continuous)."),
                     stats_clips: int = typer.Option(64, "--stats-clips", min=1, help="Clips for the latent statistics."),
                     card: Optional[Path] = typer.Option(None, "--card", help="JSON merged into card.json (recipe, metrics)."),
                     half: bool = typer.Option(False, "--half", help="Store the weights in float16 (half the size; loaded as float32)."),
                     overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Export a run's EMA weights as a small self-contained tokenizer (config, weights, card, index)."""
    import torch

    from openwfm.data import DataConfig, make_loader
    from openwfm.tokenizer.pretrained import export
    from openwfm.weights import resolve

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
    path = export(model, config, dst, info, clips, overwrite=overwrite, shared_std=model.cfg.shortcut,
                  dtype=torch.float16 if half else torch.float32)
    out.print(f"wrote {path} ({model.cfg.kind}, step {step}, "
              f"{(path / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")


@tok_app.command("eval")
def tokenizer_eval(videos: List[Path] = typer.Argument(..., help="Video files (or directories of .mp4)."),
                   checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-real)."),
                   frames: int = typer.Option(17, "--frames", help="Frames per clip."),
                   clips: int = typer.Option(1, "--clips", min=1, help="Consecutive clips per video (from the start)."),
                   size: int = typer.Option(128, "--size", help="Short side of the clips (0: native)."),
                   i3d: Optional[Path] = typer.Option(None, "--i3d", help="Local TorchScript I3D for true FVD."),
                   json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON.")) -> None:
    """Reconstruction metrics: PSNR, SSIM, perceptual distance per clip; FD-EffNet (and FVD with --i3d)."""
    from openwfm.evaluate.tokenizer import evaluate

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
