"""Memory-bounded tokenizer inference: how much memory an encode or decode takes, and the temporal chunking
and spatial tiling (chunking.py) that keep a whole video within a budget.

The estimate runs the model on *meta* tensors (shapes only: no memory, no arithmetic) and counts the bytes
of the tensors it holds at once (``openwfm.memory.peak_bytes``). Real peaks measured on
this project's tokenizers are 1.14-1.22x that count (kernel scratch space, the allocator), hence
``SAFETY``; ``benchmarks/tokenizer.py --memory`` prints the estimate beside the measured peak RSS.

``plan`` picks, for a video of T x H x W frames, the largest pieces that fit: the whole clip if it can,
else causal windows of ``1 + m*t`` frames (down to ``1 + t``), else spatial tiles (halving down to 4 latent
pixels and 2 of overlap) with such windows. A budget even the smallest piece cannot meet is refused before
any work, naming the memory it would need. Cosmos's tokenizer inference cuts long videos into windows the
same way (17 or 121 frames) and tiles large frames spatially.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from openwfm.memory import SAFETY, MemoryBudgetError, gib, peak_bytes
from openwfm.tokenizer.model import Tokenizer
from openwfm.tokenizer.presets import TokenizerConfig

_MODELS: dict[str, Tokenizer] = {}
_PEAKS: dict[tuple, int] = {}


def _peak(cfg: TokenizerConfig, part: str, shape: tuple[int, ...]) -> int:
    key = (repr(cfg), part, shape)
    if key not in _PEAKS:
        if repr(cfg) not in _MODELS:
            with torch.device("meta"):
                _MODELS[repr(cfg)] = Tokenizer(cfg).eval()
        model = _MODELS[repr(cfg)]
        _PEAKS[key] = peak_bytes(model.encode_latent if part == "encode" else model.decode,
                                 torch.empty(shape, device="meta"))
    return _PEAKS[key]


def estimate(cfg: TokenizerConfig, part: str, shape: tuple[int, ...]) -> int:
    """Estimated peak bytes (with ``SAFETY``) of ``encode`` of a video (B, C, T, H, W) or ``decode`` of a
    latent (B, C', T', H', W'), its input included, its weights not."""
    if part not in ("encode", "decode"):
        raise ValueError(f"part must be 'encode' or 'decode', got {part!r}")
    return int(SAFETY * _peak(cfg, part, tuple(int(v) for v in shape)))


@dataclass(frozen=True)
class Plan:
    """How to code one video: ``chunk_frames`` (0: whole clip) and ``tile`` / ``overlap`` in pixels (0: whole
    frame), with the latent-side equivalents for decoding; ``peak_bytes`` is the estimated peak."""

    chunk_frames: int
    tile: int
    overlap: int
    peak_bytes: int
    temporal_compression: int
    spatial_compression: int

    @property
    def chunk_latents(self) -> int:
        return (self.chunk_frames - 1) // self.temporal_compression + 1 if self.chunk_frames else 0

    @property
    def tile_latent(self) -> int:
        return self.tile // self.spatial_compression

    @property
    def overlap_latent(self) -> int:
        return self.overlap // self.spatial_compression

    def describe(self) -> str:
        chunk = f"windows of {self.chunk_frames} frames" if self.chunk_frames else "the whole clip"
        tile = f", {self.tile} px tiles overlapping by {self.overlap}" if self.tile else ""
        return f"{chunk}{tile}, about {gib(self.peak_bytes)} at peak"


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def piece_bytes(cfg: TokenizerConfig, frames: int, height: int, width: int) -> int:
    """Peak of coding one piece of ``frames`` x ``height`` x ``width`` pixels: the larger of its encode and
    decode (``plan`` adds the float buffers of the window its tiles are blended into)."""
    s, t, c = cfg.spatial_compression, cfg.temporal_compression, cfg.latent_channels
    lat = (1, c, 1 + (frames - 1) // t if not cfg.is_image else frames, height // s, width // s)
    enc = estimate(cfg, "encode", (1, cfg.in_channels, frames, height, width))
    dec = estimate(cfg, "decode", lat)
    return max(enc, dec)


def plan(cfg: TokenizerConfig, frames: int, height: int, width: int, max_bytes: int, fixed: int = 0) -> Plan:
    """The least-cut way to code a (``frames`` x ``height`` x ``width``) video within ``max_bytes``, where
    ``fixed`` bytes (weights, the frames in and out, the process itself) are already spoken for. ``frames``
    is 1 + k*t and the sides multiples of the spatial compression (``api.prepare``)."""
    s, t = cfg.spatial_compression, 1 if cfg.is_image else cfg.temporal_compression
    window_bytes = 2 * cfg.out_channels * height * width * 4  # a decoded float window and its blend weights

    chunks = [0] + [1 + m * t for m in (32, 16, 8, 4, 2, 1) if 1 + m * t < frames]
    overlap = 2 * s if min(height, width) >= 16 * s else 0
    tiles = [0] + [p for p in (512, 384, 256, 192, 128, 96, 64, 48, 32) if p % s == 0 and p > 2 * overlap
                   and p < max(height, width) and p >= 4 * s]
    smallest = None
    for tile in tiles:
        th, tw = (min(tile, height), min(tile, width)) if tile else (height, width)
        for chunk in chunks:
            n = chunk or frames
            need = fixed + piece_bytes(cfg, n, th, tw) + (window_bytes * n if tile else 0)
            if need <= max_bytes:
                return Plan(chunk, tile, overlap if tile else 0, need, t, s)
            smallest = need
    raise MemoryBudgetError(
        f"a {frames}-frame {width}x{height} clip needs at least {gib(smallest)} to code with the "
        f"{cfg.kind} tokenizer even in windows of {1 + t} frames and {tiles[-1] or height} px tiles; the budget "
        f"is {gib(max_bytes)} (raise --max-memory, or use fewer frames or a smaller size)")


