"""Using a trained tokenizer: load it, and encode / decode / round-trip video files.

Latent files are safetensors: ``latent`` (float, continuous) or ``indices`` (int64, discrete) plus
metadata (tokenizer kind, source frames, size, fps) so that ``decode`` needs only the file and the
tokenizer. Long and large videos go through causal temporal chunks and spatial tiles (chunking.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file

from openwfm import layouts
from openwfm.files import save_safetensors
from openwfm.memory import DEFAULT_MAX_MEMORY, MemoryBudgetError, gib, parse_memory, process_bytes
from openwfm.tokenizer.chunking import decode_chunked, encode_chunked, temporal_windows, tiled
from openwfm.tokenizer.fsq import indices_to_codes
from openwfm.tokenizer.memory import Plan, piece_bytes, plan, weight_bytes
from openwfm.tokenizer.model import Tokenizer, TokenizerError
from openwfm.tokenizer.presets import TokenizerConfig

__all__ = ["MemoryBudgetError", "decode", "decode_frames", "encode", "encode_frames", "load_diffusers",
           "load_latent", "load_tokenizer", "plan_for", "prepare", "prepare_frames", "save_latent"]


def load_tokenizer(checkpoint: str | os.PathLike, ema: bool = True, device: str = "cpu") -> Tokenizer:
    """A tokenizer from a training run or checkpoint directory (EMA weights by default), a shipped one by
    name (``openwfm.tokenizer.pretrained.shipped()``), or a diffusers ``AutoencoderKLCosmos`` directory
    (``save_pretrained``; its ``vae/`` inside a pipeline directory), in eval mode."""
    from openwfm.tokenizer.config import run_config_from_checkpoint
    from openwfm.tokenizer.pretrained import find
    from openwfm.weights import load_weights

    path = find(checkpoint)
    if layouts.diffusers_pipeline(path) and (path / "vae").is_dir():
        path = path / "vae"
    if layouts.diffusers_class(path):
        return load_diffusers(path).to(device).eval()
    if layouts.nvidia_jit(path):
        raise TokenizerError(f"{path}: NVIDIA TorchScript tokenizer files, which carry code; convert them once from "
                             f"a source you trust: wfm convert {path} -o OUT --trust-torchscript, then -c OUT")
    config, weights = load_weights(path, ema=ema)
    cfg = run_config_from_checkpoint(config)
    model = Tokenizer(cfg.model)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise TokenizerError(f"{checkpoint}: weights do not fit a {cfg.model.kind} tokenizer "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval()


def tokenizer_config(checkpoint: str | os.PathLike) -> TokenizerConfig:
    """The architecture of a tokenizer (run, checkpoint, shipped name or diffusers directory), read from its
    config without loading the weights."""
    from openwfm.tokenizer.config import run_config_from_checkpoint
    from openwfm.tokenizer.convert import config_from_diffusers
    from openwfm.tokenizer.pretrained import find

    path = find(checkpoint)
    if layouts.diffusers_pipeline(path) and (path / "vae").is_dir():
        path = path / "vae"
    if layouts.diffusers_class(path):
        return config_from_diffusers(layouts.diffusers_config(path))
    from openwfm.weights import resolve

    return run_config_from_checkpoint(json.loads((resolve(path) / "config.json").read_text())).model


def load_diffusers(path: str | os.PathLike) -> Tokenizer:
    """A diffusers ``AutoencoderKLCosmos`` directory as our tokenizer (same weights, renamed keys)."""
    from openwfm.tokenizer.convert import config_from_diffusers, from_diffusers

    name = layouts.diffusers_class(path)
    if name != "AutoencoderKLCosmos":
        raise TokenizerError(f"{path}: a diffusers {name or 'directory'}, not an AutoencoderKLCosmos tokenizer")
    model = Tokenizer(config_from_diffusers(layouts.diffusers_config(path)))
    missing, unexpected = model.load_state_dict(from_diffusers(layouts.diffusers_weights(path)), strict=False)
    if missing or unexpected:
        raise TokenizerError(f"{path}: weights do not fit its config (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    return model


@torch.no_grad()
def encode(model: Tokenizer, x: torch.Tensor, chunk_frames: int = 0, tile: int = 0, overlap: int = 0):
    """Continuous latent or FSQ indices (B, T', H', W') of video x, in temporal chunks of ``chunk_frames``
    (0: whole) and spatial tiles of ``tile`` pixels (0: whole)."""
    cfg = model.cfg
    s = cfg.spatial_compression

    def enc(v: torch.Tensor) -> torch.Tensor:
        return model.encode_latent(v) if not tile else tiled(model.encode_latent, v, tile, overlap, 1 / s)

    z = encode_chunked(enc, x, cfg.temporal_compression, chunk_frames) if chunk_frames else enc(x)
    if cfg.discrete:
        return model.quantize(z)[1]
    return z


@torch.no_grad()
def decode(model: Tokenizer, z: torch.Tensor, chunk_latents: int = 0, tile: int = 0, overlap: int = 0):
    """Video from a latent or FSQ indices; ``tile`` and ``overlap`` in latent pixels."""
    cfg = model.cfg
    if not z.is_floating_point():  # FSQ indices -> codes, so chunks and tiles see channels at dim 1
        if not cfg.discrete:
            raise TokenizerError(f"a continuous tokenizer decodes float latents, got {z.dtype} indices")
        z = indices_to_codes(z, cfg.levels).movedim(-1, 1).float()

    def dec(v: torch.Tensor) -> torch.Tensor:
        return model.decode(v) if not tile else tiled(model.decode, v, tile, overlap, cfg.spatial_compression)

    return decode_chunked(dec, z, chunk_latents) if chunk_latents else dec(z)


def prepare_frames(frames: np.ndarray, model: Tokenizer) -> tuple[np.ndarray, int]:
    """uint8 (T, H, W, 3) -> uint8 frames the tokenizer takes: 1 + k*t frames (the last one repeated) and
    sides centre-cropped to multiples of the spatial compression; returns the frame count kept."""
    s, t = model.cfg.spatial_compression, model.cfg.temporal_compression
    h, w = frames.shape[1] // s * s, frames.shape[2] // s * s
    if h == 0 or w == 0:
        raise TokenizerError(f"frames of {frames.shape[1]}x{frames.shape[2]} are smaller than the "
                             f"{model.cfg.kind} tokenizer's {s}x{s} patch")
    y0, x0 = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
    kept = frames.shape[0]
    frames = frames[:, y0:y0 + h, x0:x0 + w]
    pad = 0 if model.cfg.is_image or t == 1 else (-(kept - 1)) % t
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    return np.ascontiguousarray(frames), kept


def prepare(frames: np.ndarray, model: Tokenizer) -> tuple[torch.Tensor, int]:
    """uint8 (T, H, W, 3) -> (1, 3, T', H', W') in [-1, 1] with frames padded to 1 + k*t (last frame
    repeated) and sides cropped to multiples of the spatial compression; returns the frame count kept."""
    from openwfm.video.transforms import to_tensor

    frames, kept = prepare_frames(frames, model)
    return to_tensor(frames)[None], kept


def plan_for(model: Tokenizer, frames: np.ndarray | tuple[int, int, int], max_memory: str | int = DEFAULT_MAX_MEMORY,
             chunk_frames: int = 0, tile: int = 0, overlap: int = 0) -> Plan:
    """The chunking and tiling that code prepared uint8 ``frames`` (or their (T, H, W)) within
    ``max_memory`` for the whole process (what it holds now, the weights' inference caches, the frames in
    and out included). Given ``chunk_frames`` or ``tile``, that plan is checked instead of chosen. Raises
    MemoryBudgetError, naming the memory needed, before any work."""
    t, h, w = frames.shape[:3] if isinstance(frames, np.ndarray) else frames
    budget = parse_memory(max_memory)
    # what the process holds, the inference weight caches, the frames in and out, 64 MiB of slack
    fixed = process_bytes() + weight_bytes(model) + 2 * t * h * w * 3 + 2 ** 26
    fixed += 2 * model.cfg.latent_channels * t * h * w * 4 // (model.cfg.spatial_compression ** 2)  # latents
    if not (chunk_frames or tile):
        return plan(model.cfg, t, h, w, budget, fixed)
    cfg, s = model.cfg, model.cfg.spatial_compression
    n = chunk_frames or t
    th, tw = (min(tile, h), min(tile, w)) if tile else (h, w)
    need = fixed + piece_bytes(cfg, n, th, tw)
    if need > budget:
        raise MemoryBudgetError(f"coding {t} frames of {w}x{h} in pieces of {n} frames x {tw}x{th} needs "
                                f"about {gib(need)}; the budget is {gib(budget)} (raise --max-memory, or leave "
                                "--chunk / --tile unset to let the budget choose them)")
    return Plan(chunk_frames, tile, overlap if tile else 0, need, cfg.temporal_compression, s)


@torch.no_grad()
def encode_frames(model: Tokenizer, frames: np.ndarray, p: Plan,
                  progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Latent or FSQ indices of prepared uint8 frames (``prepare_frames``), coded window by window as ``p``
    says; only one window is ever held as float. ``progress(done, total)`` after each window."""
    from openwfm.video.transforms import to_tensor

    t = model.cfg.temporal_compression
    windows = temporal_windows(len(frames), p.chunk_frames or len(frames), t)
    parts = []
    for i, (a, b) in enumerate(windows):
        z = encode(model, to_tensor(frames[a:b])[None], 0, p.tile, p.overlap)
        parts.append(z if i == 0 else z[:, :, 1:] if z.is_floating_point() else z[:, 1:])
        if progress is not None:
            progress(i + 1, len(windows))
    return torch.cat(parts, dim=2 if parts[0].is_floating_point() else 1)


@torch.no_grad()
def decode_frames(model: Tokenizer, z: torch.Tensor, p: Plan,
                  visit: Callable[[int, torch.Tensor], None] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """uint8 frames (T, H, W, 3) of a latent or FSQ indices, decoded window by window as ``p`` says into one
    uint8 array; ``visit(first_frame, window)`` sees each window's frames as float (1, 3, n, H, W) in
    [-1, 1] (clamped), e.g. to score them against the input; ``progress(done, total)`` after each window."""
    from openwfm.video.transforms import from_tensor

    time_dim = 2 if z.is_floating_point() else 1
    latents = z.shape[time_dim]
    windows = temporal_windows(latents, p.chunk_latents or latents, 1)
    out, at = None, 0
    for i, (a, b) in enumerate(windows):
        x = decode(model, z.narrow(time_dim, a, b - a), 0, p.tile_latent, p.overlap_latent).clamp(-1, 1)
        if i:
            x = x[:, :, 1:]
        if out is None:
            frames = 1 + (latents - 1) * model.cfg.temporal_compression if not model.cfg.is_image else latents
            out = np.empty((frames, x.shape[3], x.shape[4], 3), np.uint8)
        if visit is not None:
            visit(at, x)
        out[at:at + x.shape[2]] = from_tensor(x[0])
        at += x.shape[2]
        if progress is not None:
            progress(i + 1, len(windows))
    return out[:at]


def save_latent(path: str | os.PathLike, z: torch.Tensor, model: Tokenizer, meta: dict) -> Path:
    key = "indices" if not z.is_floating_point() else "latent"
    info = {"tokenizer": model.cfg.kind, "config": model.cfg.__dict__, **meta}
    save_safetensors({key: z.contiguous().cpu()}, str(path), metadata={"openwfm": json.dumps(info, default=str)})
    return Path(path)


def load_latent(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: no such latent file")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("openwfm", "{}"))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise TokenizerError(f"{path}: not a latent file written by wfm tokenizer encode ({e})") from e
    z = tensors.get("latent", tensors.get("indices"))
    if z is None:
        raise TokenizerError(f"{path}: holds neither 'latent' nor 'indices'")
    return z, meta
