"""``wfm sim``, ``wfm video``, ``wfm config``, ``wfm demo``, ``wfm plot``, ``wfm curate``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from openwfm.cli.app import _configs, _parse_size, _progress, app, console, out, video_app
from openwfm.config import ConfigError, make_config, preset_names, to_yaml


@app.command()
def sim(scenario: str = typer.Argument(..., help="falling | push | orbit"),
        overrides: Optional[List[str]] = typer.Argument(None, help="Config overrides key=value, e.g. falling.max_objects=2"),
        num: int = typer.Option(4, "--num", "-n", min=1, help="Number of samples."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Output directory."),
        frames: Optional[int] = typer.Option(None, "--frames", help="Frames per sample (default 33)."),
        size: Optional[str] = typer.Option(None, "--size", help="WIDTHxHEIGHT, e.g. 128x96."),
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
    """Print size (WxH), frame rate, frame count, duration and codec of each video. Frames: those present
    (counted by demuxing, no decoding) and, where the container says, how many it declares; "~" marks a
    count estimated from the duration."""
    from dataclasses import asdict

    from openwfm.video import count_frames, probe

    infos = [probe(f) for f in files]
    counts = [count_frames(f) for f in files]
    if as_json:
        out.print_json(json.dumps([asdict(i) | {"frames_present": n, "frames_declared": d, "problem": why}
                                   for i, (n, d, why) in zip(infos, counts)]))
        return
    table = Table("file", "size", "fps", "frames", "duration", "codec", "container")
    for i, (n, declared, why) in zip(infos, counts):
        frames = f"{n}" if n == declared else (f"{n} of {declared} declared" if declared else f"{n}")
        table.add_row(i.path, f"{i.width}x{i.height}", f"{i.fps:.3f}", frames, f"{i.duration:.2f} s", i.codec,
                      i.container)
    out.print(table)
    for i, (n, declared, why) in zip(infos, counts):
        if why:
            out.print(f"[yellow]{i.path}: {why}[/]", highlight=False)


@video_app.command("convert")
def video_convert(src: Path = typer.Argument(..., help="Input video (anything FFmpeg reads)."),
                  dst: Path = typer.Argument(..., help="Output video: the container follows the extension (.mp4, .m4v, .mov, .mkv, .avi: H.264) or .gif."),
                  size: Optional[str] = typer.Option(None, "--size", help="Resize to WIDTHxHEIGHT, e.g. 128x96."),
                  step: int = typer.Option(1, "--step", min=1, help="Keep every n-th frame."),
                  start: float = typer.Option(0.0, "--start", help="Start time, seconds."),
                  end: Optional[float] = typer.Option(None, "--end", help="End time, seconds."),
                  crf: int = typer.Option(18, "--crf", help="H.264 quality (0 lossless .. 51 worst)."),
                  strict: bool = typer.Option(False, "--strict", help="Fail when any declared frame cannot be read (default: warn and convert what decodes).")) -> None:
    """Cut, subsample, resize and re-encode a video to H.264 mp4 or GIF. Frames the input declares but that
    cannot be read (a truncated file) are reported; --strict makes that an error."""
    from openwfm.video import check_output, pad_to_multiple, read_video, resize, write_gif, write_video

    check_output(dst, gif=True)
    video = read_video(src, step=step, start_time=start, end_time=end, missing="error" if strict else "ignore")
    if video.missing:
        out.print(f"[yellow]warning: {src}: {video.missing} declared frames could not be read (truncated or "
                  "damaged); converting the frames that decode (--strict to refuse)[/]", highlight=False)
    frames = resize(video.frames, _parse_size(size)) if size else video.frames
    if dst.suffix.lower() == ".gif":
        write_gif(dst, frames, video.fps)
    else:
        write_video(dst, pad_to_multiple(frames, 2), video.fps, crf=crf)
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
         num: int = typer.Option(4, "--num", "-n", min=1, help="Scenes per scenario."),
         seed: int = typer.Option(900000, "--seed", help="First seed (held out from training seeds)."),
         steps: int = typer.Option(0, "--steps", min=0, help="Sampler steps (0: the default of wfm generate)."),
         checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Video2World model (default: the shipped one)."),
         action: str = typer.Option("default-action", "--action", help="Action-conditioned model ('' to skip)."),
         no_curate: bool = typer.Option(False, "--no-curate", help="Skip the curator."),
         workers: int = typer.Option(2, "--workers", "-j", min=1)) -> None:
    """The main job: simulate held-out physical scenes, curate them, predict their futures with the default
    world model (from video + text, and from robot actions), evaluate against the simulator and the
    copy-last / extrapolation baselines, and write report.html."""
    from openwfm.demo import demo_config, run_demo

    cfg = demo_config(num=num, seed=seed, steps=steps, v2w=str(checkpoint) if checkpoint else None, action=action,
                      curate=not no_curate, workers=workers)
    with _progress() as progress:
        doc = run_demo(out_dir, cfg, progress=progress)
    table = Table(title=f"openwfm demo: {len(doc['scenes'])} held-out scenes")
    for col in ("setting", "model", "moving dB", "copy-last", "PSNR dB", "copy-last dB", "mask IoU", "grad", "floors met"):
        table.add_column(col, no_wrap=col in ("setting", "model"))
    for r in doc["floors"]:
        checks = {"moving": r["moving_floor_met"], "PSNR": r["psnr_floor_met"], "IoU": r["iou_floor_met"],
                  "sharp": r["sharpness_met"]}
        table.add_row(r["setting"], r["model"], f"{r['psnr_moving']:.2f}", f"{r['copy_last_moving']:.2f}",
                      f"{r['psnr']:.2f}", f"{r['copy_last_psnr']:.2f}", f"{r['mask_iou']:.3f}", f"{r['grad_ratio']:.2f}",
                      ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in checks.items() if v is not None))
    out.print(table)
    for r in doc["floors"]:
        out.print(r["verdict"], highlight=False)
    out.print(f"report: {(out_dir / 'report.html').resolve()}  ({doc['timings']['total']:.0f} s)", highlight=False)


@app.command()
def plot(run: Path = typer.Argument(..., help="Run directory (or its metrics.jsonl)."),
         png: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG path (default RUN/curves.png).")) -> None:
    """Draw a run's loss and learning-rate curves to PNG."""
    from openwfm.train.metrics import plot_run

    out.print(f"wrote {plot_run(run, png)}")


CURATE_FAILED, CURATE_PARTIAL = 1, 4  # exit codes: every input failed / some failed, the rest curated


@app.command()
def curate(inputs: List[str] = typer.Argument(..., help="Video files and/or directories (searched recursively), "
                                                       "and key=value config overrides (e.g. rules.min_seconds=1)."),
           out_dir: Path = typer.Option(..., "--out", "-o", help="Output: clips/, shards/, manifest.jsonl, report.html."),
           engine: str = typer.Option("local", "--engine", help="local | ray"),
           ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster (default: start one)."),
           workers: int = typer.Option(2, "--workers", "-j", min=1, help="Local engine: inputs curated at once, one process each. Ray: actors of the filter stage (the others: ray.split.workers, ray.annotate.workers)."),
           preset: Optional[str] = typer.Option(None, "--preset", help="sim: for simulator renders (whole rollouts, "
                                                "no filters trained on real footage)."),
           config: Optional[List[Path]] = typer.Option(None, "--config", help="YAML config file(s)."),
           sets: Optional[List[str]] = typer.Option(None, "--set", help="key=value config overrides, e.g. rules.min_seconds=1 (also accepted among the inputs)."),
           resume: bool = typer.Option(False, "--resume", help="Continue a run in --out (after a crash too).")) -> None:
    """Curate raw footage: shots -> clips -> filters -> captions -> dedup -> WebDataset shards, with a manifest.

    Exit status: 0 when every input was curated (or skipped as not a video), 1 when every input failed or
    the command could not run, 4 when some inputs failed and the rest were curated (see manifest.jsonl)."""
    from openwfm.curate.run import curate as run
    from openwfm.curate.stages import CurateConfig, find_inputs

    overrides = [a for a in inputs if "=" in a and not Path(a).exists()]
    paths = [Path(a) for a in inputs if a not in overrides]
    if not paths:
        raise typer.BadParameter("no input video or directory given (key=value items are config overrides)")
    cfg = make_config(CurateConfig, preset=preset, yaml_files=config or [], overrides=(sets or []) + overrides)
    n = len(find_inputs(paths))
    with _progress() as progress:
        task = progress.add_task(f"curate ({engine})", total=n)
        res = run(paths, out_dir, cfg, engine=engine, ray_address=ray_address, resume=resume, workers=workers,
                  on_input=lambda p: progress.advance(task), processes=workers if engine == "local" else 1)
    c = res["counts"]
    statuses = sorted({s for v in c.values() for s in v})
    table = Table("record", *statuses, title=f"curated into {out_dir}")
    for kind in ("input", "clip"):
        table.add_row(kind, *[str(c.get(kind, {}).get(s, 0)) for s in statuses])
    out.print(table)
    out.print(f"{len(res['shards'])} shard group(s) in {out_dir / 'shards'}; report: {out_dir / 'report.html'}",
              highlight=False)
    inputs_ = c.get("input", {})
    failed, curated = inputs_.get("failed", 0), inputs_.get("done", 0) + inputs_.get("partial", 0)
    if failed:
        console.print(f"{failed} input(s) failed (their errors are in {out_dir / 'manifest.jsonl'})", highlight=False)
        raise typer.Exit(CURATE_PARTIAL if curated else CURATE_FAILED)


@app.command("shots")
def shots_cmd(videos: List[Path] = typer.Argument(..., help="Video files."),
              detector: str = typer.Option("learned", "--detector", help="learned (ShotNet) | classical."),
              csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the scene list as CSV."),
              json_out: Optional[Path] = typer.Option(None, "--json", help="Write the scene list as JSON."),
              split: Optional[Path] = typer.Option(None, "--split", help="Cut every shot into DIR/<video>-shot-NNN.mp4.")) -> None:
    """Shot detection on its own (like PySceneDetect's `detect-content list-scenes`): the shots of each video
    with frames and times, as a table, CSV or JSON; --split writes each shot as a file. Transition frames
    (dissolves, fades) belong to no shot."""
    import csv

    from openwfm.curate.shots import SplitConfig, shots
    from openwfm.curate.stages import detect_shots
    from openwfm.video import probe, read_video, write_video

    if detector not in ("learned", "classical"):
        raise typer.BadParameter(f"'{detector}': learned or classical", param_hint="--detector")
    cfg = SplitConfig(detector=detector)
    rows = []
    with _progress() as progress:
        task = progress.add_task("shots", total=len(videos))
        for path in videos:
            fps = probe(path).fps  # a clear error for what is not a video; then one streamed pass
            found, num, _ = detect_shots(path, cfg)
            kinds = {t.start: t.kind for t in found}
            for i, (a, b) in enumerate(shots(num, found), 1):
                row = {"video": str(path), "shot": i, "start_frame": a, "end_frame": b, "frames": b - a,
                       "start_s": round(a / fps, 3), "end_s": round(b / fps, 3),
                       "ends_with": kinds.get(b, "end") if b < num else "end"}
                if split is not None:
                    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)
                    row["file"] = str(write_video(split / f"{name}-shot-{i:03d}.mp4", read_video(path, a, b).frames, fps))
                rows.append(row)
            progress.advance(task)
    table = Table("video", "shot", "frames", "start s", "end s", "ends with", title=f"{len(rows)} shots")
    for r in rows:
        table.add_row(Path(r["video"]).name, str(r["shot"]), f"{r['start_frame']}-{r['end_frame'] - 1}",
                      f"{r['start_s']:.2f}", f"{r['end_s']:.2f}", r["ends_with"])
    out.print(table)
    if csv_out is not None:
        with open(csv_out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["video"])
            w.writeheader()
            w.writerows(rows)
        out.print(f"wrote {csv_out}")
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1))
        out.print(f"wrote {json_out}")
