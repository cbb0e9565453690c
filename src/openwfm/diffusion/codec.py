"""Pixels <-> EDM-scale latents: a frozen continuous tokenizer and its per-channel latent statistics
(Cosmos paper sec. 5.1: the diffusion model works on normalized tokenizer latents)."""

from __future__ import annotations

import torch

from openwfm.config import ConfigError


class LatentCodec:
    """A frozen continuous tokenizer plus its latent normalization: pixels <-> EDM-scale latents."""

    def __init__(self, tokenizer: str, sigma_data: float, device: str = "cpu"):
        from openwfm.tokenizer.api import load_tokenizer

        if not tokenizer:
            raise ConfigError("tokenizer is empty: name a shipped tokenizer (e.g. cv4x8x8-real) or a tokenizer run")
        self.model = load_tokenizer(tokenizer, device=device).requires_grad_(False)
        cfg = self.model.cfg
        if cfg.discrete:
            raise ConfigError(f"{tokenizer}: the diffusion model needs a continuous tokenizer, got {cfg.kind}")
        c = cfg.latent_channels
        self.mean = torch.tensor(cfg.latents_mean or [0.0] * c, device=device)[:c].view(1, -1, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std or [1.0] * c, device=device)[:c].view(1, -1, 1, 1, 1)
        self.sigma_data = sigma_data
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of the tokenizer's weights (computed once): precomputed latents must come from it."""
        if self._fingerprint is None:
            from openwfm.diffusion.latents import fingerprint

            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw tokenizer latents -> EDM scale (zero mean, std sigma_data per channel)."""
        return (z - self.mean) / self.std * self.sigma_data

    @torch.no_grad()
    def encode(self, video: torch.Tensor, plan=None) -> torch.Tensor:
        """EDM-scale latents of video (B, 3, T, H, W) in [-1, 1]; ``plan`` (``openwfm.tokenizer.memory.Plan``):
        the temporal windows and spatial tiles that keep it within a memory budget."""
        from openwfm.tokenizer import api

        video = video.to(self.mean.device)
        if plan is None:
            return self.normalize(self.model.encode_latent(video))
        return self.normalize(api.encode(self.model, video, plan.chunk_frames, plan.tile, plan.overlap))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, plan=None) -> torch.Tensor:
        from openwfm.tokenizer import api

        z = z / self.sigma_data * self.std + self.mean
        if plan is None:
            return self.model.decode(z)
        return api.decode(self.model, z, plan.chunk_latents, plan.tile_latent, plan.overlap_latent)
