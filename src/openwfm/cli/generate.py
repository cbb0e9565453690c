"""``wfm generate``: text2world, video2world, multiview, ar-video2world (between the guards)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from openwfm.cli.app import _device, _parse_size, _progress, app, out
from openwfm.cli.guard import _GUARD_CFG, _INDEX, _NO_GUARD, _UPSAMPLER, _guard_hooks, _upsampler


gen_app = typer.Typer(help="Generate video with a trained diffusion world model.", no_args_is_help=True)
app.add_typer(gen_app, name="generate")


def _gen_options(steps, guidance, seed, fps, sampler, negative, frames, size, num_input_frames=0, max_memory="4GiB",
                 action_guidance=None):
    """A GenerateConfig from the options; steps / guidance / sampler left unset keep its defaults (the
    settings validated for the shipped model, shared with WorldPipeline.__call__)."""
    from openwfm.pipelines.world import GenerateConfig

    h, w = _parse_size(size) if size else (0, 0)
    set_ = {k: v for k, v in dict(steps=steps, guidance=guidance, sampler=sampler,
                                  action_guidance=action_guidance).items() if v is not None}
    return GenerateConfig(seed=seed, fps=fps, negative_prompt=negative, num_frames=frames, height=h, width=w,
                          num_input_frames=num_input_frames, max_memory=max_memory, **set_)


@contextmanager
def _sampling_progress(pipe):
    """A progress bar on stderr over the pipeline's denoiser evaluations (hidden with --quiet)."""
    with _progress() as prog:
        task = prog.add_task("sampling", total=None)
        pipe.progress = lambda done, total: prog.update(task, completed=done, total=total)
        try:
            yield
        finally:
            pipe.progress = None


_CKPT = typer.Option(None, "--checkpoint", "-c", help="Diffusion run, checkpoint or shipped model name (default: the "
                     "shipped default-v2w; with --actions default-action).")
_STEPS = typer.Option(None, "--steps", min=1, help="Sampler steps (default: GenerateConfig's, validated for the shipped model; docs/default-model.md).")
_GUIDANCE = typer.Option(None, "--guidance", help="Classifier-free guidance g (Cosmos form: cond + g(cond - uncond); default: GenerateConfig's).")
_SEED = typer.Option(0, "--seed")
_FPS = typer.Option(12.0, "--fps", help="Frame rate of the output (and the model's temporal positions).")
_SAMPLER = typer.Option(None, "--sampler", help="2ab | euler | heun (default: GenerateConfig's).")
_NEG = typer.Option("", "--negative-prompt", help="What to steer away from (the unconditional branch).")
_OFFLOAD = typer.Option(False, "--offload", help="Keep components on the CPU except while they run.")
_DEVICE = typer.Option("cpu", "--device", help="cpu | cuda")
_MEMORY = typer.Option("4GiB", "--max-memory", help="Memory the whole process may use (e.g. 4GiB): checked before "
                       "any work (refused with the amount needed); the tokenizer tiles to fit it.")
@gen_app.command("text2world")
def generate_text2world(prompt: str = typer.Option(..., "--prompt", "-p"), dst: Path = typer.Option(..., "--out", "-o"),
                        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Diffusion run, checkpoint or shipped name (default: the shipped default-v2w, which serves 0, 1 or 9 input frames)."),
                        steps: Optional[int] = _STEPS, guidance: Optional[float] = _GUIDANCE,
                        seed: int = _SEED, fps: float = _FPS, sampler: Optional[str] = _SAMPLER, negative: str = _NEG,
                        frames: int = typer.Option(0, "--frames", help="Frames (0: the model's clip length)."),
                        size: str = typer.Option("", "--size", help="WIDTHxHEIGHT (default: the model's training size)."),
                        offload: bool = _OFFLOAD, device: str = _DEVICE, max_memory: str = _MEMORY,
                        no_guardrail: bool = _NO_GUARD,
                        guardrail_config: Optional[Path] = _GUARD_CFG, upsample_index: Optional[Path] = _INDEX,
                        upsampler: Optional[Path] = _UPSAMPLER) -> None:
    """Text2World: a video from a prompt (between the prompt and video guards; optionally upsampled)."""
    from openwfm.pipelines.world import WorldPipeline
    from openwfm.video import check_output, write_video

    check_output(dst)
    up = _upsampler(upsample_index, upsampler)
    pipe = WorldPipeline.from_run(checkpoint, device=_device(device), offload=offload, upsample=up,
                                  **_guard_hooks(no_guardrail, guardrail_config))
    g = _gen_options(steps, guidance, seed, fps, sampler, negative, frames, size, max_memory=max_memory)
    t0 = time.perf_counter()
    with _sampling_progress(pipe):
        video = pipe.text2world(prompt, g)
    write_video(dst, video, fps)
    out.print(f"wrote {dst}: {len(video)} frames {video.shape[2]}x{video.shape[1]} in {time.perf_counter() - t0:.1f} s")


@gen_app.command("video2world")
def generate_video2world(src: Path = typer.Option(..., "--input", "-i", help="Input video (its last frames condition)."),
                         dst: Path = typer.Option(..., "--out", "-o"), prompt: str = typer.Option("", "--prompt", "-p"),
                         num_input_frames: int = typer.Option(0, "--num-input-frames", help="1 or 9 (0: as trained)."),
                         total: int = typer.Option(0, "--total-frames", help="Chain clips up to this many frames."),
                         checkpoint: Optional[Path] = _CKPT, steps: Optional[int] = _STEPS, guidance: Optional[float] = _GUIDANCE,
                         seed: int = _SEED, fps: float = _FPS, sampler: Optional[str] = _SAMPLER, negative: str = _NEG,
                         size: str = typer.Option("", "--size", help="WIDTHxHEIGHT to fit the input to (default: the model's)."),
                         camera: Optional[Path] = typer.Option(None, "--camera", help="Camera trajectory JSON (a camera post-trained model; docs/posttrain.md)."),
                         actions: Optional[Path] = typer.Option(None, "--actions", help="Robot actions JSON {\"actions\": [[7 floats], ...]} (an action post-trained model; one with path maps also reads ee_poses, camera, height, width: a push rollout's JSON has them)."),
                         action_guidance: Optional[float] = typer.Option(None, "--action-guidance", help="With --actions: w in D(actions) + w (D(actions) - D(zero actions)); 0 turns it off (default: GenerateConfig's, validated for default-action)."),
                         offload: bool = _OFFLOAD, device: str = _DEVICE, max_memory: str = _MEMORY,
                         no_guardrail: bool = _NO_GUARD,
                         guardrail_config: Optional[Path] = _GUARD_CFG, upsample_index: Optional[Path] = _INDEX,
                         upsampler: Optional[Path] = _UPSAMPLER) -> None:
    """Video2World: continue a video (optionally steered by a prompt, a camera path or robot actions),
    between the prompt and video guards."""
    from openwfm.pipelines.world import WorldPipeline
    from openwfm.video import check_output, read_video, write_video

    check_output(dst)
    if checkpoint is None and actions is not None:
        from openwfm.diffusion.pretrained import DEFAULT_ACTION

        checkpoint = DEFAULT_ACTION
    pipe = WorldPipeline.from_run(checkpoint, device=_device(device), offload=offload,
                                  **_guard_hooks(no_guardrail, guardrail_config))
    g = _gen_options(steps, guidance, seed, fps, sampler, negative, 0, size, num_input_frames, max_memory,
                     action_guidance)
    n_in = g.num_input_frames or pipe.cfg.v2w.num_input_frames
    source = read_video(src).frames
    frames = pipe.fit_frames(source, g)  # the same fitting as WorldPipeline.__call__
    h, w = frames.shape[1:3]
    net_kw = _posttrain_conditions(pipe, g, h, w, camera, actions)
    up = _upsampler(upsample_index, upsampler)
    if up is not None and prompt:
        from openwfm.text import upsample_video2world, video_caption

        prompt = upsample_video2world(prompt, video_caption(frames, fps=fps), up, frames).upsampled
        out.print(f"upsampled prompt: {prompt}")
    t0 = time.perf_counter()
    with _sampling_progress(pipe):
        video = pipe.video2world(frames, prompt, g, total_frames=total, net_kw=net_kw)
    write_video(dst, video, fps)
    resized = "" if source.shape[1:3] == (h, w) else f", input fitted from {source.shape[2]}x{source.shape[1]} (--size)"
    out.print(f"wrote {dst}: {len(frames)} input + {len(video) - len(frames)} generated frames (continuing the last "
              f"{n_in} of the {len(frames)} input frames), {w}x{h}{resized}, in {time.perf_counter() - t0:.1f} s",
              highlight=False)


@gen_app.command("multiview")
def generate_multiview(src: Path = typer.Option(..., "--input", "-i", help="Tiled six-camera video (a drive rollout)."),
                       dst: Path = typer.Option(..., "--out", "-o"),
                       checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Multi-view post-trained run or checkpoint."),
                       prompt: str = typer.Option("", "--prompt", "-p"),
                       trajectory: Optional[Path] = typer.Option(None, "--trajectory", help="JSON with the ego's 64-point future trajectory (a drive rollout's JSON works)."),
                       steps: Optional[int] = _STEPS, seed: int = _SEED, fps: float = _FPS, sampler: Optional[str] = _SAMPLER,
                       device: str = _DEVICE, no_guardrail: bool = _NO_GUARD,
                       guardrail_config: Optional[Path] = _GUARD_CFG) -> None:
    """Multi-view driving: continue six tiled cameras jointly from the input's first frame."""
    import json as _json

    from openwfm.data.buckets import bucket_sizes, fit_to_bucket, nearest_bucket
    from openwfm.pipelines.world import WorldPipeline
    from openwfm.posttrain.conditions import trajectory_vector, view_maps
    from openwfm.posttrain.config import MultiviewRunConfig
    from openwfm.sim.drive import VIEW_LAYOUT, VIEWS
    from openwfm.video import read_video, write_video

    pipe = WorldPipeline.from_run(checkpoint, device=_device(device), **_guard_hooks(no_guardrail, guardrail_config))
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
    with _sampling_progress(pipe):
        video = pipe.video2world(frames, prompt, g, net_kw=kw)
    write_video(dst, video, fps)
    out.print(f"wrote {dst}: six views tiled {VIEW_LAYOUT}, {len(video)} frames in {time.perf_counter() - t0:.1f} s")


def _posttrain_conditions(pipe, g, h: int, w: int, camera: Optional[Path], actions: Optional[Path]) -> dict:
    """Network inputs of a post-trained model for one clip: camera rays and / or robot actions from the files."""
    import json as _json

    from openwfm.posttrain.config import CameraRunConfig, MultiviewRunConfig

    if isinstance(pipe.cfg, MultiviewRunConfig):
        raise typer.BadParameter("a multi-view model: generate with `wfm generate multiview`")
    if (camera is not None) != isinstance(pipe.cfg, CameraRunConfig):
        raise typer.BadParameter("--camera goes with a camera post-trained model (and such a model needs it)")
    if (actions is not None) != bool(pipe.model.net.cfg.action_dim):
        raise typer.BadParameter("--actions goes with an action post-trained model (and such a model needs it)")
    meta: dict = {"name": str(camera or actions)}
    if camera is not None:
        from openwfm.posttrain.camera import load_trajectory

        K, c2w, (th, tw) = load_trajectory(camera)
        meta |= {"camera": {"intrinsics": K.tolist(), "cam2world": c2w.tolist()}, "height": th, "width": tw}
    if actions is not None:
        try:
            doc = _json.loads(actions.read_text())
        except (OSError, ValueError) as e:
            raise typer.BadParameter(f"{actions}: cannot read the actions ({e})") from None
        doc = doc if isinstance(doc, dict) else {"actions": doc}
        meta["actions"] = doc.get("actions") or []
        if "ee_poses" in doc and "camera" in doc:  # a path model draws the arm's path: its start pose and camera
            meta |= {k: doc[k] for k in ("ee_poses", "camera", "height", "width") if k in doc and k not in meta}
        if not meta["actions"]:
            raise typer.BadParameter(f"{actions}: no actions (a JSON list of 7-number steps, or {{\"actions\": [...]}})")
    try:
        return pipe.conditions(meta, g, (h, w))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


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

    from openwfm.autoregressive.sampling import SamplingConfig
    from openwfm.data.buckets import bucket_sizes, fit_to_bucket, nearest_bucket
    from openwfm.pipelines.autoregressive import ARPipeline
    from openwfm.video import read_video, write_video

    if decoder is None and not no_decoder:
        raise typer.BadParameter("give the diffusion decoder (--decoder RUN) or --no-diffusion-decoder")
    pipe = ARPipeline.from_run(checkpoint, device=_device(device), decoder="" if no_decoder else decoder,
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
    with _progress() as prog:
        task = prog.add_task("tokens", total=None)
        pipe.progress = lambda done, total: prog.update(task, completed=done, total=total)
        video = pipe.video2world(frames, prompt, num_input_frames, SamplingConfig(temperature, top_p, top_k, seed),
                                 medusa, acts)
    write_video(dst, video, fps)
    extra = f"; Medusa accepted {pipe.stats['accepted_per_round']:.2f} drafts per step" if medusa else ""
    out.print(f"wrote {dst}: {num_input_frames} input + {len(video) - num_input_frames} generated frames "
              f"in {time.perf_counter() - t0:.1f} s{extra}")
