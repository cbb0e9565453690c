"""The diffusion decoder of the autoregressive WFM (Cosmos paper sec. 5.2.3): discrete tokens -> a
continuous tokenizer's latents, restoring the detail the DV tokenizer's small codebook loses.

A diffusion world model (the DiT of ``openwfm.diffusion``) whose input gets ``token_dim`` extra channels:
the DV indices embedded by a zero-initialized ``Embedding(vocab, token_dim)`` (Cosmos: 64,000 -> 32) and
resized to the continuous latent grid (Cosmos: DV8x16x16 -> CV8x8x8 is 2x spatially; here both are
4x8x8). It denoises CV latents (EDM loss, text dropout as in the diffusion task) and samples with few
steps (Cosmos: 15 2AB steps, guidance 1.8). Long token sequences are decoded in chunks of latent frames
that overlap; decoded pixel chunks are blended linearly over the overlap (``blend_chunks``).

    wfm train ar-decoder --preset tiny --out runs/ar-decoder data.shards=SHARDS
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openwfm.diffusion.dit import DiTConfig
from openwfm.diffusion.edm import EDMConfig
from openwfm.diffusion.model import WorldModel


class DecoderModel(WorldModel):
    """A ``WorldModel`` whose DiT also reads the embedded discrete tokens."""

    def __init__(self, dit_cfg: DiTConfig, edm: EDMConfig, vocab_size: int, token_dim: int):
        import dataclasses

        super().__init__(dataclasses.replace(dit_cfg, extra_channels=token_dim), edm)
        self.token_embed = nn.Embedding(vocab_size, token_dim)
        nn.init.zeros_(self.token_embed.weight)

    def token_features(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, T', H', W') indices -> (B, token_dim, *grid) features on the continuous latent grid."""
        f = self.token_embed(tokens).movedim(-1, 1)
        return f if tuple(f.shape[2:]) == tuple(grid) else F.interpolate(f, size=grid, mode="trilinear")


def blend_chunks(chunks: list[np.ndarray], starts: list[int], total: int) -> np.ndarray:
    """uint8 frames of decoded chunks placed at frame ``starts``: where two chunks share m frames, the earlier
    fades out and the later fades in linearly ((j + 1) / (m + 1)), so the weights sum to 1 everywhere."""
    acc = np.zeros((total, *chunks[0].shape[1:]), np.float64)
    wsum = np.zeros(total)
    for k, (c, s) in enumerate(zip(chunks, starts)):
        n = min(len(c), total - s)
        w = np.ones(n)
        if k > 0 and (m := min(n, starts[k - 1] + len(chunks[k - 1]) - s)) > 0:
            w[:m] = (np.arange(m) + 1) / (m + 1)
        if k + 1 < len(chunks) and (m := min(n, s + n - starts[k + 1])) > 0:
            w[n - m:] = np.minimum(w[n - m:], 1 - (np.arange(m) + 1) / (m + 1))
        acc[s:s + n] += w[:, None, None, None] * c[:n]
        wsum[s:s + n] += w
    return np.clip(acc / np.maximum(wsum, 1e-12)[:, None, None, None] + 0.5, 0, 255).astype(np.uint8)


@torch.no_grad()
def decode_tokens(model: DecoderModel, codec, tokens: torch.Tensor, text: torch.Tensor, uncond: torch.Tensor,
                  steps: int = 15, guidance: float = 1.8, sigma_max: float = 80.0, sigma_min: float = 0.02,
                  chunk: int = 8, overlap: int = 2, seed: int = 0, spatial_scale: int = 1) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of (1, T', H', W') tokens: CV latents (a grid ``spatial_scale`` times the
    token grid: DV8x16x16 -> CV8x8x8 is 2) sampled chunk by chunk (``chunk`` latent frames, ``overlap``
    shared; both tokenizers compress time alike), decoded by the continuous tokenizer and blended."""
    from openwfm.diffusion.guidance import sample_latents
    from openwfm.video.transforms import from_tensor

    tc, t_lat = codec.model.cfg.temporal_compression, tokens.shape[1]
    starts = list(range(0, max(1, t_lat - overlap), max(1, chunk - overlap))) if t_lat > chunk else [0]
    gen = torch.Generator().manual_seed(seed)
    pieces, pixel_starts = [], []
    for a in starts:
        part = tokens[:, a:a + chunk]
        shape = (1, codec.model.cfg.latent_channels, part.shape[1], part.shape[2] * spatial_scale,
                 part.shape[3] * spatial_scale)
        z = sample_latents(model, text, shape, uncond=uncond, guidance=guidance, sampler="2ab", steps=steps,
                           sigma_min=sigma_min, sigma_max=sigma_max, generator=gen,
                           net_kw={"extra": model.token_features(part, shape[2:])})
        pieces.append(from_tensor(codec.decode(z).clamp(-1, 1)[0].cpu()))
        pixel_starts.append(a * tc)
    total = 1 + (t_lat - 1) * tc
    return blend_chunks(pieces, pixel_starts, total)
