"""Using a trained tokenizer: load it, and encode / decode / round-trip video files.

Latent files are safetensors: ``latent`` (float, continuous) or ``indices`` (int64, discrete) plus
metadata (tokenizer kind, source frames, size, fps) so that ``decode`` needs only the file and the
tokenizer. Long and large videos go through causal temporal chunks and spatial tiles (chunking.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from openwfm.files import save_safetensors
from openwfm.tokenizer.chunking import decode_chunked, encode_chunked, tiled
from openwfm.tokenizer.fsq import indices_to_codes
from openwfm.tokenizer.model import Tokenizer, TokenizerError, pad_frames


def load_tokenizer(checkpoint: str | os.PathLike, ema: bool = True, device: str = "cpu") -> Tokenizer:
    """A tokenizer from a training run or checkpoint directory (EMA weights by default), or a shipped one
    by name (``openwfm.tokenizer.pretrained.shipped()``), in eval mode."""
    from openwfm.tokenizer.pretrained import find
    from openwfm.tokenizer.train import run_config_from_checkpoint
    from openwfm.train.checkpoint import load_weights

    config, weights = load_weights(find(checkpoint), ema=ema)
    cfg = run_config_from_checkpoint(config)
    model = Tokenizer(cfg.model)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise TokenizerError(f"{checkpoint}: weights do not fit a {cfg.model.kind} tokenizer "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval()


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


def prepare(frames: np.ndarray, model: Tokenizer) -> tuple[torch.Tensor, int]:
    """uint8 (T, H, W, 3) -> (1, 3, T', H', W') in [-1, 1] with frames padded to 1 + k*t (last frame
    repeated) and sides cropped to multiples of the spatial compression; returns the frame count kept."""
    from openwfm.video.transforms import to_tensor

    s = model.cfg.spatial_compression
    h, w = frames.shape[1] // s * s, frames.shape[2] // s * s
    if h == 0 or w == 0:
        raise TokenizerError(f"frames of {frames.shape[1]}x{frames.shape[2]} are smaller than the "
                             f"{model.cfg.kind} tokenizer's {s}x{s} patch")
    y0, x0 = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
    x = to_tensor(frames[:, y0:y0 + h, x0:x0 + w])[None]
    return pad_frames(x, model.cfg.temporal_compression), frames.shape[0]


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
