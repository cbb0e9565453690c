"""Text2World and Video2World inference (Cosmos paper sec. 5 and Fig. 2):

    prompt -> guardrail (pre) -> prompt upsampler -> text encoder -> sampler on latents -> tokenizer
    decode -> guardrail (post) -> frames

Guardrails and the prompt upsampler are hooks: ``pre_guard(prompt)`` raises to refuse,
``post_guard(frames) -> frames`` raises to refuse or returns the cleaned frames (faces pixelated), and
``upsample(prompt) -> prompt`` rewrites (``openwfm.guardrail.Guardrail``, ``openwfm.text.upsampler``).
``offload=True`` keeps every component on the CPU except while it runs on ``device`` (text encoder, then
DiT, then tokenizer), so peak accelerator memory is the largest component, not their sum.
Longer videos than the model's clip length: each further chunk is conditioned on the last
``num_input_frames`` generated frames (decoded, re-encoded), as Cosmos extends its videos.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from openwfm.diffusion.codec import LatentCodec
from openwfm.diffusion.config import DiffusionRunConfig
from openwfm.diffusion.guidance import denoiser_calls, sample_latents
from openwfm.diffusion.model import WorldModel, condition_latent_frames, hold_last_frame
from openwfm.errors import OpenWFMError
from openwfm.hub import load_world_model
from openwfm.text.encoder import make_text_encoder


NULL = "null_"  # conditions() keys of the null conditions that action guidance steers away from


def split_null(net_kw: dict) -> tuple[dict, dict]:
    """(conditions, null conditions) of a ``WorldPipeline.conditions`` dict."""
    return ({k: v for k, v in net_kw.items() if not k.startswith(NULL)},
            {k[len(NULL):]: v for k, v in net_kw.items() if k.startswith(NULL)})


class GenerateError(OpenWFMError, ValueError):
    """An input generation cannot take (frames, sizes, conditions, settings): one line for the CLI, and a
    ValueError for Python callers."""


@dataclass
class GenerateConfig:
    """Sampling settings. The defaults are the ones a validation set (seeds 800000..) showed best for the
    shipped default model (``benchmarks/v2w_settings.py``, docs/default-model.md): Euler, 3 steps from
    sigma_max 5 (noise levels 5, 0.28, 0.002: the fewest that still pass through the data's scale, so a
    sample and not the conditional mean; its residual data are ~0.25 in scale, and 80, Cosmos's start, is far
    outside what it trained on), no guidance (guidance 3 and 7 cost 1-3 dB there). Cosmos's own are 35 steps,
    guidance 7, from 80."""

    steps: int = 3
    guidance: float = 0.0  # Cosmos form: cond + g (cond - uncond)
    guidance_form: str = "cosmos"
    sampler: str = "euler"
    negative_prompt: str = ""
    seed: int = 0
    fps: float = 12.0
    num_frames: int = 0  # 0: the model's training clip length
    height: int = 0  # 0: the model's training resolution (square)
    width: int = 0
    num_input_frames: int = 0  # Video2World: 0 = the model's v2w.num_input_frames
    sigma_max: float = 5.0
    sigma_min: float = 0.002
    # an action model: D(actions) + w (D(actions) - D(zero actions)), the input frames' own actions kept
    # (condition guidance, diffusion/guidance.py); 0.25 was best on validation (docs/posttrain.md)
    action_guidance: float = 0.25
    max_memory: str = "4GiB"  # the whole process's budget: refused up front if it cannot fit; tokenizer tiles


@dataclass
class WorldOutput:
    """What ``WorldPipeline.__call__`` returns: ``frames`` uint8 (T, H, W, 3) and the ``prompt`` used."""

    frames: np.ndarray
    prompt: str


class WorldPipeline:
    def __init__(self, model: WorldModel, cfg: DiffusionRunConfig, device: str = "cpu", offload: bool = False,
                 pre_guard: Callable[[str], None] | None = None, upsample: Callable[[str], str] | None = None,
                 post_guard: Callable[[np.ndarray], np.ndarray] | None = None):
        self.model, self.cfg, self.device, self.offload = model, cfg, device, offload
        self.text = make_text_encoder(cfg.text, "cpu")
        self.codec = LatentCodec(cfg.tokenizer, cfg.edm.sigma_data, "cpu")
        self.pre_guard, self.upsample, self.post_guard = pre_guard, upsample, post_guard
        # progress(done, total): denoiser evaluations of the current call (a progress bar's hook)
        self.progress: Callable[[int, int], None] | None = None
        self._dit_peak: tuple = (None, 0)  # (clip shape and conditions, the denoiser's counted peak bytes)
        if not offload:
            self._place("dit", device)
            self._place("codec", device)

    @classmethod
    def from_run(cls, run: str | os.PathLike | None = None, **kw) -> "WorldPipeline":
        model, cfg = load_world_model(run)
        return cls(model, cfg, **kw)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, **kw) -> "WorldPipeline":
        """A shipped model by name (``default-v2w``, ``default-action``; None: ``default-v2w``), a run,
        checkpoint or export directory, or a diffusers Cosmos pipeline directory (docs/hub.md); ``kw``:
        ``device``, ``offload`` and the guard / upsampler hooks."""
        return cls.from_run(name_or_path, **kw)

    def __call__(self, video: str | os.PathLike | np.ndarray | None = None, prompt: str = "",
                 negative_prompt: str = "", num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, seed: int = 0, num_input_frames: int | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 actions: list | np.ndarray | None = None, camera: dict | None = None,
                 sampler: str | None = None, fps: float | None = None,
                 ee_pose: list | np.ndarray | None = None) -> "WorldOutput":
        """Generate, diffusers-style. ``video=None``: Text2World from ``prompt``. Otherwise Video2World: a
        path or uint8 frames (T, H, W, 3), fitted (scaled to cover, centre-cropped) to ``height`` x ``width``
        (default: the model's size); the output holds those frames followed by one clip's continuation of
        their last ``num_input_frames`` (1 or 9; default: as trained). ``actions`` ((T-1) x 7 robot actions)
        and ``camera`` (``{"intrinsics", "cam2world", "height", "width"}``) feed post-trained models; an action
        model with path maps also needs ``ee_pose`` (the end effector's x, y, z at the input frame) and the
        camera. Defaults
        not given come from ``GenerateConfig`` (the settings validated for the shipped model)."""
        base = GenerateConfig()
        g = GenerateConfig(**{**base.__dict__, **{k: v for k, v in dict(
            steps=num_inference_steps, guidance=guidance_scale, sampler=sampler, fps=fps, num_frames=num_frames,
            height=height, width=width, num_input_frames=num_input_frames).items() if v is not None},
            "negative_prompt": negative_prompt, "seed": seed})
        if video is None:
            if actions is not None or camera is not None:
                raise GenerateError("actions and camera condition Video2World: give the input video too")
            return WorldOutput(self.text2world(prompt, g), prompt)
        frames = self.fit_frames(video, g)
        meta: dict = {"name": str(video) if isinstance(video, (str, os.PathLike)) else "video"}
        if actions is not None:
            meta["actions"] = np.asarray(actions, dtype=float).tolist()
        if ee_pose is not None:
            meta["ee_poses"] = [np.asarray(ee_pose, dtype=float).tolist()]
        if camera is not None:
            meta["camera"] = camera
            meta.update({k: camera[k] for k in ("height", "width") if k in camera})
        net_kw = self.conditions(meta, g, frames.shape[1:3])
        return WorldOutput(self.video2world(frames, prompt, g, net_kw=net_kw), prompt)

    def fit_frames(self, video: str | os.PathLike | np.ndarray, g: GenerateConfig | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3) frames of ``video`` (a path or frames) scaled to cover the generation size
        (``g.height`` x ``g.width``, default the model's) and centre-cropped to it."""
        from openwfm.video import read_video
        from openwfm.video.transforms import center_crop, resize

        g = g or GenerateConfig()
        frames = read_video(video).frames if isinstance(video, (str, os.PathLike)) else np.asarray(video)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise GenerateError(f"video must be uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
        h, w = g.height or self.cfg.data.resolution, g.width or self.cfg.data.resolution
        scale = max(h / frames.shape[1], w / frames.shape[2])
        frames = resize(frames, (max(h, round(frames.shape[1] * scale)), max(w, round(frames.shape[2] * scale))))
        return center_crop(frames, (h, w))

    # ------------------------------------------------------------------------------------ devices
    def _place(self, which: str, device: str) -> None:
        if which == "dit":
            self.model.to(device)
        else:
            self.codec.model.to(device)
            self.codec.mean, self.codec.std = self.codec.mean.to(device), self.codec.std.to(device)

    @contextmanager
    def _on_device(self, which: str):
        """Run a component on ``device``; with offloading it goes back to the CPU afterwards."""
        if self.offload:
            self._place(which, self.device)
        try:
            yield
        finally:
            if self.offload:
                self._place(which, "cpu")
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------ pieces
    def encode_prompt(self, prompt: str, negative: str) -> tuple[str, torch.Tensor, torch.Tensor]:
        if self.pre_guard is not None:
            self.pre_guard(prompt)
        if self.upsample is not None:
            prompt = self.upsample(prompt)
        emb, _ = self.text.encode([prompt, negative])
        uncond = emb[1:] if negative else torch.zeros_like(emb[1:])
        return prompt, emb[:1].to(self.device), uncond.to(self.device)

    def _shape(self, g: GenerateConfig, frames: int) -> tuple[int, int, int, int, int]:
        tok = self.codec.model.cfg
        h = g.height or self.cfg.data.resolution
        w = g.width or self.cfg.data.resolution
        m = tok.spatial_compression * self.cfg.model.patch_spatial
        if h % m or w % m:
            raise GenerateError(f"height and width must be multiples of {m} (tokenizer x patch), got {h}x{w}")
        t_lat = 1 + (frames - 1) // tok.temporal_compression
        return 1, tok.latent_channels, t_lat, h // tok.spatial_compression, w // tok.spatial_compression

    def clip_frames(self, g: GenerateConfig) -> int:
        """Frames of one generated clip: the requested (or trained) length, rounded up to 1 + k * temporal
        compression."""
        t = self.codec.model.cfg.temporal_compression
        n = g.num_frames or self.cfg.data.num_frames
        return n if (n - 1) % t == 0 else 1 + t * ((n - 1) // t + 1)

    # ------------------------------------------------------------------------------------ entry points
    def memory_plan(self, g: GenerateConfig, height: int, width: int, net_kw: dict | None = None):
        """Check one clip of ``height`` x ``width`` against ``g.max_memory`` before any work: the denoiser
        (both guidance branches) counted on meta tensors, and the tokenizer's windows and tiles for the
        budget (``tokenizer.api.plan_for``). Returns that tokenizer plan; raises MemoryBudgetError with the
        memory needed."""
        from openwfm.memory import SAFETY, MemoryBudgetError, gib, parse_memory, peak_bytes, process_bytes
        from openwfm.tokenizer.api import plan_for

        budget = parse_memory(g.max_memory)
        clip = self.clip_frames(g)
        shape = self._shape(GenerateConfig(**{**g.__dict__, "height": height, "width": width}), clip)
        key = (shape, g.guidance != 0, tuple((k, tuple(v.shape)) for k, v in (net_kw or {}).items()))
        if self._dit_peak[0] != key:
            with torch.device("meta"):
                net = WorldModel(self.model.net.cfg, self.model.edm, self.model.v2w)
            b = 2 if g.guidance else 1
            x = torch.empty((b, *shape[1:]), device="meta")
            text = torch.empty((b, 16, self.model.net.cfg.crossattn_emb_channels), device="meta")
            kw = {k: torch.empty((b, *v.shape[1:]), device="meta") for k, v in (net_kw or {}).items()}
            peak = peak_bytes(lambda x: net.denoise(x, torch.ones(b, device="meta"), text, **kw), x)
            self._dit_peak = (key, int(SAFETY * peak))
        need = process_bytes() + self._dit_peak[1] + 4 * clip * height * width * 3 + 2 ** 26
        if need > budget:
            raise MemoryBudgetError(f"generating {clip} frames of {width}x{height} needs about {gib(need)} "
                                    f"for the world model's denoiser; the budget is {gib(budget)} (raise "
                                    "--max-memory, or generate fewer or smaller frames)")
        return plan_for(self.codec.model, (clip, height, width), budget)

    def text2world(self, prompt: str, g: GenerateConfig | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3) frames of a video for ``prompt``."""
        g = g or GenerateConfig()
        h, w = g.height or self.cfg.data.resolution, g.width or self.cfg.data.resolution
        plan = self.memory_plan(g, h, w)
        _, text, uncond = self.encode_prompt(prompt, g.negative_prompt)
        shape = self._shape(g, self.clip_frames(g))
        with self._on_device("dit"):
            z = sample_latents(self.model, text, shape, uncond=uncond, guidance=g.guidance,
                               guidance_form=g.guidance_form, sampler=g.sampler, steps=g.steps, sigma_min=g.sigma_min,
                               sigma_max=g.sigma_max, fps=g.fps, generator=torch.Generator().manual_seed(g.seed),
                               callback=self._counter(g, 1))
        return self._guard(self._decode(z, plan))

    def _counter(self, g: GenerateConfig, clips: int) -> Callable[[float], None] | None:
        """The sampler callback that reports denoiser evaluations to ``self.progress``."""
        if self.progress is None:
            return None
        total, done = clips * denoiser_calls(g.sampler, g.steps), [0]

        def step(_sigma: float) -> None:
            done[0] += 1
            self.progress(done[0], total)

        self.progress(0, total)
        return step

    def latent_grid(self, height: int, width: int, g: GenerateConfig | None = None) -> tuple[int, int, int]:
        """(T', H', W') of one generated clip of frames (height, width)."""
        g = g or GenerateConfig()
        return self._shape(GenerateConfig(**{**g.__dict__, "height": height, "width": width}), self.clip_frames(g))[2:]

    def conditions(self, meta: dict, g: GenerateConfig | None = None, size: tuple[int, int] | None = None) -> dict:
        """A post-trained model's network inputs for one clip of frames ``size`` (H, W), from a rollout-like
        dict: camera rays from ``meta["camera"]`` (``intrinsics``, one ``cam2world`` per frame; the image size
        in ``height``/``width``), scaled robot actions from ``meta["actions"]`` (a blind control model gets
        zeros without them). {} for a plain Video2World model. With actions and ``g.action_guidance``, the
        conditions it steers away from ride along as ``null_action`` / ``null_extra``: the same clip with the
        actions after the input frames set to zero. Errors are ValueErrors naming ``meta["name"]``."""
        from openwfm.config import ConfigError

        g = g or GenerateConfig()
        size = size or (g.height or self.cfg.data.resolution, g.width or self.cfg.data.resolution)
        try:
            kw = self._conditions(meta, g, size)
        except ConfigError as e:  # a malformed camera / action record
            raise GenerateError(f"{meta.get('name', '?')}: {e}") from e
        if g.action_guidance and "action" in kw and meta.get("actions") and not self.cfg.blind:  # blind: null = cond
            actions = np.asarray(meta["actions"], dtype=float)
            actions[(g.num_input_frames or self.cfg.v2w.num_input_frames) - 1:] = 0.0
            null = self._conditions(dict(meta, actions=actions.tolist()), g, size)
            kw |= {f"{NULL}{k}": v for k, v in null.items()}
        return kw

    def _conditions(self, meta: dict, g: GenerateConfig, size: tuple[int, int]) -> dict:
        from openwfm.posttrain.conditions import clip_rays
        from openwfm.posttrain.config import conditioning

        tc, clip, name = self.codec.model.cfg.temporal_compression, self.clip_frames(g), meta.get("name", "?")
        kw = {}
        kind = conditioning(self.cfg)
        if kind == "camera":
            cams = (meta.get("camera") or {}).get("cam2world") or []
            if len(cams) < clip:
                raise GenerateError(f"{name}: {len(cams)} cameras (meta.camera.cam2world) for a {clip}-frame clip of "
                                 "the camera-conditioned model")
            kw["extra"] = clip_rays(meta, 0, 1, clip, size, self.latent_grid(*size, g), tc)[None]
        if kind == "action":
            dim = self.model.net.cfg.action_dim
            if meta.get("actions"):
                if len(meta["actions"]) < clip - 1:
                    raise GenerateError(f"{name}: needs {clip - 1} actions of 7 numbers for a {clip}-frame clip")
                a = self.cfg.action_input(meta, 0, 1, clip, tc)
                if a.shape[-1] != dim:
                    raise GenerateError(f"{name}: {a.shape[-1]} action values, the model takes {dim}")
                kw["action"] = a[None]
                if self.cfg.path:
                    kw["extra"] = self.cfg.path_input(meta, 0, 1, clip, size, self.latent_grid(*size, g), tc)[None]
            elif self.cfg.blind:
                kw["action"] = torch.zeros((1, 1 + (clip - 1) // tc, dim) if self.cfg.per_frame else (1, dim))
                if self.cfg.path:
                    kw["extra"] = torch.zeros((1, self.model.net.cfg.extra_channels, *self.latent_grid(*size, g)))
            else:
                raise GenerateError(f"{name}: no actions (meta.actions: push rollouts have them), which the "
                                 "action-conditioned model needs")
        return kw

    def video2world(self, frames: np.ndarray, prompt: str = "", g: GenerateConfig | None = None,
                    total_frames: int = 0, net_kw: dict | None = None) -> np.ndarray:
        """Continue uint8 (T_in, H, W, 3) frames: returns the input followed by generated frames, one clip's
        worth (clip length - num_input_frames) or, with ``total_frames``, clips chained until the video
        has that many frames, each conditioned on the last ``num_input_frames`` frames so far.
        ``net_kw``: post-training conditions for one clip (``extra``: camera rays (1, 6, T', H', W'),
        ``action``: (1, action_dim); their ``null_`` twins for action guidance); they describe one clip, so
        they cannot be chained."""
        if net_kw and total_frames:
            raise GenerateError("camera / action conditions describe one clip: leave total_frames at 0")
        from openwfm.video.transforms import to_tensor

        g = g or GenerateConfig()
        if not self.model.net.cfg.condition_mask:
            raise GenerateError("this world model was trained without Video2World conditioning (v2w.enabled)")
        n_in = g.num_input_frames or self.cfg.v2w.num_input_frames
        trained = sorted({k for k in (self.cfg.v2w.input_frame_choices or [self.cfg.v2w.num_input_frames]) if k})
        if n_in not in trained:
            raise GenerateError(f"{n_in} input frames: this model was trained on "
                                f"{' or '.join(map(str, trained))} (--num-input-frames)")
        num_cond = condition_latent_frames(n_in, self.codec.model.cfg.temporal_compression)
        if len(frames) < n_in:
            raise GenerateError(f"Video2World needs {n_in} input frames, got {len(frames)}")
        h, w = frames.shape[1:3]
        net_kw, null_kw = split_null(net_kw or {})
        guide = g.action_guidance if null_kw else 0.0
        plan = self.memory_plan(g, h, w, net_kw)
        _, text, uncond = self.encode_prompt(prompt, g.negative_prompt)
        clip = self.clip_frames(g)
        shape = self._shape(GenerateConfig(**{**g.__dict__, "height": h, "width": w}), clip)
        total = total_frames or len(frames) + clip - n_in
        generator = torch.Generator().manual_seed(g.seed)
        hold = self.cfg.v2w.residual and self.cfg.v2w.residual_prior == "hold"
        video = frames
        callback = self._counter(g, -(-(total - len(frames)) // (clip - n_in)))
        while len(video) < total:
            with self._on_device("codec"):
                inputs = to_tensor(video[-n_in:])[None].to(self.device)
                if hold:  # the condition and the prior in one: a causal tokenizer's first latents are the inputs'
                    inputs = hold_last_frame(inputs, n_in, clip)
                cond = self.codec.encode(inputs, plan)
            with self._on_device("dit"):
                z = sample_latents(self.model, text, shape, uncond=uncond, guidance=g.guidance,
                                   guidance_form=g.guidance_form, sampler=g.sampler, steps=g.steps,
                                   sigma_min=g.sigma_min, sigma_max=g.sigma_max, cond=cond, num_cond=num_cond,
                                   fps=g.fps, generator=generator, callback=callback, held=cond if hold else None,
                                   net_kw={k: v.to(self.device) for k, v in net_kw.items()}, cond_guidance=guide,
                                   null_kw={k: v.to(self.device) for k, v in null_kw.items()})
            video = np.concatenate([video, self._decode(z, plan)[n_in:]])
        return self._guard(video[:total])

    def _decode(self, z: torch.Tensor, plan=None) -> np.ndarray:
        from openwfm.video.transforms import from_tensor

        with self._on_device("codec"):
            x = self.codec.decode(z.to(self.device), plan).clamp(-1, 1)
        return from_tensor(x[0].cpu())

    def _guard(self, video: np.ndarray) -> np.ndarray:
        """The post-guard on the whole video (once, so face tracks span the chained clips)."""
        return video if self.post_guard is None else self.post_guard(video)
