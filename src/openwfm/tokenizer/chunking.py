"""Long and large inputs: causal temporal chunking and spatial tiling with overlap blending.

Temporal chunks. A causal tokenizer maps 1 + k*t frames to 1 + k latent frames. A long video is cut into
windows of ``1 + m*t`` frames that share one frame with the previous window: window j covers frames
``[j*m*t, (j+1)*m*t]``. Each window is encoded alone and its first latent (the shared frame's, already
produced by the previous window) is dropped, so the latent count is that of the whole video, 1 + n.
Decoding mirrors it over latent windows ``[j*m, (j+1)*m]``. By causality the first window is exactly the
unchunked result; later windows lose the history before their shared frame (the released Cosmos
tokenizers were trained on 17- and 121-frame windows, so that is the regime they know).

Spatial tiles. Tiles overlap by ``overlap`` pixels (a multiple of the spatial compression) and are
blended with linear ramps whose weights sum to one. Wherever every tile sees its whole receptive field
(convolution-only models, or tiles larger than the input) tiled equals untiled exactly; a model with
per-frame spatial attention sees only its tile, so the result is close but not equal.
"""

from __future__ import annotations

from typing import Callable

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]


def temporal_windows(num: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(start, end)`` of windows of ``window`` items (``1 + m*k``) over ``num = 1 + n*k`` items,
    consecutive windows sharing one item; the last window may be shorter (still ``1 + j*k``)."""
    step = window - 1
    if num <= window:
        return [(0, num)]
    out, start = [], 0
    while start < num - 1:
        end = min(start + window, num)
        out.append((start, end))
        start += step
    return out


def encode_chunked(encode: Fn, x: torch.Tensor, temporal_compression: int, chunk_frames: int) -> torch.Tensor:
    """Encode (B, C, T, H, W) in causal windows of ``chunk_frames`` (= 1 + m*t) frames along T; dim 2 of
    every latent is time. Works for continuous latents and for FSQ indices with a time axis at dim 1 if
    ``encode`` returns them as (B, 1, T', H', W') — callers adapt."""
    t = temporal_compression
    if (chunk_frames - 1) % t:
        raise ValueError(f"chunk_frames={chunk_frames} must be 1 + k*{t} (e.g. {1 + 2 * t} or {1 + 4 * t})")
    parts = []
    for i, (a, b) in enumerate(temporal_windows(x.shape[2], chunk_frames, t)):
        z = encode(x[:, :, a:b])
        parts.append(z if i == 0 else z[:, :, 1:])
    return torch.cat(parts, dim=2)


def decode_chunked(decode: Fn, z: torch.Tensor, chunk_latents: int) -> torch.Tensor:
    """Decode latents (B, C, T', H', W') in windows of ``chunk_latents`` latent frames sharing one latent
    frame, dropping each later window's first decoded frame (the shared frame's)."""
    parts = []
    for i, (a, b) in enumerate(temporal_windows(z.shape[2], chunk_latents, 1)):
        x = decode(z[:, :, a:b])
        parts.append(x if i == 0 else x[:, :, 1:])
    return torch.cat(parts, dim=2)


def _ramp(n: int, overlap: int, first: bool, last: bool, device) -> torch.Tensor:
    """Blend weights along one axis of a tile: rising over the leading overlap, falling over the
    trailing one (flat at the input's borders)."""
    w = torch.ones(n, device=device)
    if overlap > 0:
        ramp = (torch.arange(overlap, device=device, dtype=torch.float32) + 0.5) / overlap
        if not first:
            w[:overlap] = ramp
        if not last:
            w[-overlap:] = ramp.flip(0)
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def tiled(fn: Fn, x: torch.Tensor, tile: int, overlap: int, scale: float) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` (..., H, W) and blend. ``scale`` is the output
    size over the input size (1/s for an encoder, s for a decoder); ``tile`` and ``overlap`` are in input
    pixels and must map to whole output pixels."""
    h, w = x.shape[-2:]
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    for v, name in ((tile, "tile"), (overlap, "overlap")):
        if abs(v * scale - round(v * scale)) > 1e-9:
            raise ValueError(f"{name}={v} does not map to whole output pixels at scale {scale}")
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    out = weight = None
    o = round(overlap * scale)
    for i, y0 in enumerate(ys):
        for j, x0 in enumerate(xs):
            part = fn(x[..., y0:y0 + tile, x0:x0 + tile])
            if out is None:
                shape = list(part.shape[:-2]) + [round(h * scale), round(w * scale)]
                out = part.new_zeros(shape)
                weight = part.new_zeros(shape[-2:])
            ph, pw = part.shape[-2:]
            wy = _ramp(ph, o, i == 0, i == len(ys) - 1, part.device)
            wx = _ramp(pw, o, j == 0, j == len(xs) - 1, part.device)
            wt = wy[:, None] * wx[None, :]
            oy, ox = round(y0 * scale), round(x0 * scale)
            out[..., oy:oy + ph, ox:ox + pw] += part * wt
            weight[oy:oy + ph, ox:ox + pw] += wt
    return out / weight
