"""EDM (Karras et al. 2022) as the Cosmos diffusion WFM uses it (Cosmos paper sec. 5.1): preconditioning,
the noise-level distribution, the loss weight, and the learned loss uncertainty u(sigma) of EDM2.

The denoiser is D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)), with F the
network. Training draws ln sigma ~ N(P_mean, P_std^2) (times sqrt(T') for a video of T' latent frames),
adds n ~ N(0, sigma^2) and minimizes lambda(sigma) ||D(x + n; sigma) - x||^2, weighted by exp(-u(sigma))
plus u(sigma) when the uncertainty is learned (EDM2, Karras et al. 2024, sec. 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass
class EDMConfig:
    sigma_data: float = 0.5
    P_mean: float = 0.0  # released Cosmos config; the EDM paper uses -1.2
    P_std: float = 1.0  # EDM paper: 1.2
    sigma_min: float = 0.0002
    sigma_max: float = 80.0
    video_sigma_scale: bool = True  # multiply training sigmas by sqrt(latent frames)
    uncertainty: bool = True  # learn u(sigma) and weight the loss by exp(-u)

    def validate(self) -> None:
        from openwfm.config import ConfigError

        if not (self.sigma_data > 0 and self.P_std > 0 and 0 < self.sigma_min < self.sigma_max):
            raise ConfigError(f"edm: need sigma_data > 0, P_std > 0 and 0 < sigma_min < sigma_max; got "
                              f"sigma_data={self.sigma_data}, P_std={self.P_std}, sigma_min={self.sigma_min}, "
                              f"sigma_max={self.sigma_max}")


def scalings(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) of EDM's preconditioning (EDM Table 1)."""
    s2, d2 = sigma ** 2, sigma_data ** 2
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2: unit loss at every noise level."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def sample_sigma(n: int, cfg: EDMConfig, latent_frames: int = 1, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Training noise levels: exp(N(P_mean, P_std^2)), times sqrt(latent_frames) for video when
    ``cfg.video_sigma_scale`` (more frames carry more signal, so they need more noise)."""
    ln = torch.randn(n, generator=generator, device=device) * cfg.P_std + cfg.P_mean
    scale = math.sqrt(latent_frames) if cfg.video_sigma_scale else 1.0
    return ln.exp() * scale


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def precondition(net: Callable[..., torch.Tensor], x: torch.Tensor, sigma: torch.Tensor, sigma_data: float,
                 **cond) -> torch.Tensor:
    """D(x; sigma): the denoised estimate from ``net(c_in x, c_noise, **cond)`` (``sigma`` of shape (B,))."""
    c_skip, c_out, c_in, c_noise = scalings(sigma.float(), sigma_data)
    f = net(x * _bcast(c_in, x), c_noise, **cond)
    return x * _bcast(c_skip, x) + f.to(x.dtype) * _bcast(c_out, x)


class Uncertainty(nn.Module):
    """u(sigma): random Fourier features of c_noise (fixed) -> Linear -> 1 (EDM2's loss uncertainty)."""

    def __init__(self, features: int = 128, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # fixed by the seed, so not saved (EMA files hold parameters only)
        self.register_buffer("freqs", 2 * math.pi * torch.randn(features, generator=g), persistent=False)
        self.register_buffer("phases", 2 * math.pi * torch.rand(features, generator=g), persistent=False)
        self.linear = nn.Linear(features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        feats = torch.cos(c_noise.float()[:, None] * self.freqs + self.phases) * math.sqrt(2)
        return self.linear(feats)[:, 0]


def edm_loss(denoised: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, sigma_data: float,
             u: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample loss: lambda(sigma) * mean ||D - x0||^2 over the masked elements, then
    ``loss / exp(u) + u`` when the uncertainty ``u`` (B,) is given. ``mask`` (broadcastable to x0) marks
    the elements that count (e.g. not the conditioning frames of Video2World)."""
    err = (denoised.float() - x0.float()) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.float().expand_as(err)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    loss = loss_weight(sigma.float(), sigma_data) * mse
    return loss if u is None else loss / u.float().exp() + u.float()
