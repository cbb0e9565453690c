"""``wfm eval``: physics alignment, 3D consistency, tokenizer reconstruction."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from openwfm.cli.app import _device, _progress, app, out
from openwfm.cli.tokenizer import _load_tok
from openwfm.config import ConfigError


eval_app = typer.Typer(help="Evaluate world models and tokenizers (physics alignment, 3D consistency, reconstruction); "
                            "each command writes results.json and report.html.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

_EV_SIM = typer.Option(..., "--sim", "-s", help="Rollout directory or JSON written by wfm sim (more may follow it).")
_EV_MORE = typer.Argument(None, help="More rollout directories or JSON files.", show_default=False)
_EV_CKPT = typer.Option(None, "--checkpoint", "-c", help="Video2World run, checkpoint or shipped name (default: the shipped default-v2w).")
_EV_BASE = typer.Option(False, "--baselines-only", help="No world model: baselines / real frames only.")
_EV_INPUT = typer.Option(1, "--num-input-frames", min=1, help="Conditioning frames: 1 or 9 (Cosmos).")
_EV_STEPS = typer.Option(None, "--steps", min=1, help="Sampler steps of the model (default: as wfm generate).")
_EV_GUIDANCE = typer.Option(None, "--guidance", help="Classifier-free guidance of the model (default: as wfm generate).")
_EV_SEED = typer.Option(0, "--seed", help="Sampler seed of the model.")
_EV_PROMPT = typer.Option("caption", "--prompt", help="'caption': each rollout's caption; anything else is the prompt itself ('' for none).")
_EV_FRAMES = typer.Option(0, "--num-frames", min=0, help="Clip length (0: the model's, or 17 without a model).")
_EV_RES = typer.Option(0, "--resolution", min=0, help="Square size (0: the model's, or 64 without a model).")
_EV_MAX = typer.Option(0, "--max-rollouts", min=0, help="At most this many rollouts from each directory (0: all).")
_EV_DEVICE = typer.Option("cpu", "--device", help="cpu | cuda")
_EV_MEMORY = typer.Option("4GiB", "--max-memory", help="Memory the whole process may use while the model generates "
                          "(checked before any work).")
_EV_NO_MODEL_NOTE = "--baselines-only: no world model in this table"


def _ev_setup(sim: List[Path], more: Optional[List[Path]], checkpoint: Optional[Path], num_input_frames: int, steps: int,
              guidance: float, seed: int, prompt: str, num_frames: int, resolution: int, max_rollouts: int,
              device: str, baselines_only: bool = False, max_memory: str = "4GiB"):
    """(rollout files, {name: model predictor} (empty with ``baselines_only``), num_frames, resolution)."""
    from openwfm.diffusion.pretrained import DEFAULT_V2W
    from openwfm.evaluate.physics import WorldModelPredictor, find_rollouts

    files = find_rollouts([*sim, *(more or [])], max_rollouts)
    models = {}
    if baselines_only and checkpoint is not None:
        raise typer.BadParameter("--checkpoint and --baselines-only exclude each other")
    if not baselines_only:
        checkpoint = checkpoint if checkpoint is not None else Path(DEFAULT_V2W)
        gen = {k: v for k, v in dict(steps=steps, guidance=guidance).items() if v is not None}
        gen["max_memory"] = max_memory
        pred = WorldModelPredictor.from_run(checkpoint, device=_device(device), prompt=prompt, seed=seed, num_frames=num_frames,
                                            **gen)
        models[pred.name] = pred
        num_frames = num_frames or pred.pipe.clip_frames(pred.generate)
        resolution = resolution or pred.pipe.cfg.data.resolution
    return files, models, num_frames or 17, resolution or 64


def _gen_used(models: dict) -> dict:
    """The sampler settings the model rows actually ran with (defaults filled in)."""
    g = next(iter(models.values())).generate if models else None
    return {} if g is None else {"steps": g.steps, "guidance": g.guidance, "sampler": g.sampler}


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
                 checkpoint: Optional[Path] = _EV_CKPT, baselines_only: bool = _EV_BASE,
                 num_input_frames: int = _EV_INPUT, steps: Optional[int] = _EV_STEPS,
                 guidance: Optional[float] = _EV_GUIDANCE, seed: int = _EV_SEED, prompt: str = _EV_PROMPT,
                 num_frames: int = _EV_FRAMES, resolution: int = _EV_RES, max_rollouts: int = _EV_MAX,
                 fit_on: str = typer.Option("clip", "--mask-fit", help="Colour model of the masks from the whole true clip ('clip') or the input frames ('input')."),
                 out_dir: Path = typer.Option(Path("eval/physics"), "--out", "-o", help="Where results.json and report.html go."),
                 device: str = _EV_DEVICE, max_memory: str = _EV_MEMORY) -> None:
    """Physics alignment (Cosmos sec. 7.2): condition on the first frames of simulator rollouts, predict the rest;
    PSNR (whole frame and over the moving region), SSIM, perceptual distance, object-mask IoU, gradient ratio —
    the model next to copy-last and linear extrapolation."""
    from openwfm.evaluate.masks import ColorMaskConfig
    from openwfm.evaluate.physics import BASELINES, PhysicsConfig, evaluate_physics

    files, models, num_frames, resolution = _ev_setup(sim, more, checkpoint, num_input_frames, steps, guidance, seed,
                                                      prompt, num_frames, resolution, max_rollouts, device,
                                                      baselines_only, max_memory)
    cfg = PhysicsConfig(num_input_frames, num_frames, resolution, masks=ColorMaskConfig(fit_on=fit_on))
    prog, task = _ev_progress("physics", len(files))
    with prog:
        result = evaluate_physics(files, {**BASELINES, **models}, cfg, progress=lambda _: prog.advance(task))
    result["config"].update(checkpoint=None if not models else str(checkpoint or "default-v2w"), **_gen_used(models),
                            seed=seed, prompt=prompt)
    if not models:
        result["notes"].append(_EV_NO_MODEL_NOTE)
    _ev_finish(result, out_dir, [("predictor", "predictor"), ("scenario", "scenario"), ("n", "n"), ("psnr", "PSNR dB"),
                                 ("psnr_moving", "moving PSNR"), ("psnr_first", "1st frame"), ("ssim", "SSIM"), ("perceptual", "perceptual"),
                                 ("mask_iou", "mask IoU"), ("mask_iou_moving", "IoU moving"), ("grad_ratio", "grad ratio")])


@eval_app.command("consistency")
def eval_consistency(sim: List[Path] = _EV_SIM, more: Optional[List[Path]] = _EV_MORE,
                     checkpoint: Optional[Path] = _EV_CKPT, baselines_only: bool = _EV_BASE,
                 num_input_frames: int = _EV_INPUT, steps: Optional[int] = _EV_STEPS,
                     guidance: Optional[float] = _EV_GUIDANCE, seed: int = _EV_SEED, prompt: str = _EV_PROMPT,
                     num_frames: int = _EV_FRAMES, resolution: int = _EV_RES, max_rollouts: int = _EV_MAX,
                     gap: int = typer.Option(2, "--gap", min=1, help="Frames between the two frames of a pair."),
                     matcher: str = typer.Option("klt", "--matcher", help="Correspondences: klt | sift."),
                     out_dir: Path = typer.Option(Path("eval/consistency"), "--out", "-o", help="Where results.json and report.html go."),
                     device: str = _EV_DEVICE, max_memory: str = _EV_MEMORY) -> None:
    """3D consistency (Cosmos sec. 7.1): Sampson error and camera-pose recovery on real rollout frames and,
    with a model, on its continuations of them, side by side (orbit rollouts: true cameras)."""
    from openwfm.evaluate.consistency import ConsistencyConfig, evaluate_consistency

    files, models, num_frames, resolution = _ev_setup(sim, more, checkpoint, num_input_frames, steps, guidance, seed,
                                                      prompt, num_frames, resolution, max_rollouts, device,
                                                      baselines_only, max_memory)
    prog, task = _ev_progress("consistency", len(files))
    with prog:
        result = evaluate_consistency(files, models, num_input_frames, num_frames, resolution,
                                      ConsistencyConfig(gap=gap, matcher=matcher), progress=lambda _: prog.advance(task))
    result["config"].update(checkpoint=None if not models else str(checkpoint or "default-v2w"), **_gen_used(models),
                            seed=seed, prompt=prompt)
    if not models:
        result["notes"].append(_EV_NO_MODEL_NOTE.replace("no world model", "real frames only, no world model"))
    _ev_finish(result, out_dir, [("video", "video"), ("scenario", "scenario"), ("n", "n"), ("matches", "matches"),
                                 ("motion_px", "motion px"), ("sampson_px", "Sampson px"), ("inlier_ratio", "F inl"),
                                 ("sampson_gt_px", "Sampson GT"), ("pose_recovered", "recovered"),
                                 ("pose_success", "success"), ("rot_err_deg", "rot err°"), ("trans_err_deg", "dir err°")])


@eval_app.command("tokenizer")
def eval_tokenizer(videos: List[Path] = typer.Argument(..., help="Video files (or directories of .mp4)."),
                   checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Tokenizer run, checkpoint, or shipped name (e.g. cv4x8x8-real)."),
                   frames: int = typer.Option(17, "--frames", help="Frames per clip."),
                   clips: int = typer.Option(1, "--clips", min=1, help="Consecutive clips per video (from the start)."),
                   size: int = typer.Option(128, "--size", help="Short side of the clips (0: native)."),
                   i3d: Optional[Path] = typer.Option(None, "--i3d", help="Local TorchScript I3D for true FVD."),
                   out_dir: Path = typer.Option(Path("eval/tokenizer"), "--out", "-o", help="Where results.json and report.html go.")) -> None:
    """Tokenizer reconstruction (wfm tokenizer eval) with the eval reports: PSNR, SSIM, perceptual distance per
    clip; FD-EffNet (and FVD with --i3d)."""
    from openwfm.evaluate.tokenizer import evaluate

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
