"""Sampling latents from a trained world model: the guided denoiser handed to a sampler (samplers.py).

Both guidance branches run as one batch. Video2World keeps its condition frames: the network sees them
(noised by sigma_aug, with one fixed noise draw per run) in the conditional branch, the unconditional
branch sees neither text nor condition frames, and the guided output is reset to the condition there.
Condition guidance (``cond_guidance``, ``null_kw``) adds ``w (D(x; net_kw) - D(x; null_kw))``: the same
text and frames with a post-training condition replaced by its null (robot actions by zero actions), a
separate guidance scale per condition as in InstructPix2Pix (Brooks et al. 2023, eq. 3).
"""

from __future__ import annotations

from typing import Callable

import torch

from openwfm.diffusion.model import WorldModel
from openwfm.diffusion.samplers import get_sampler, guided, karras_sigmas


@torch.no_grad()
def sample_latents(model: WorldModel, text: torch.Tensor, shape: tuple[int, ...], *,
                   uncond: torch.Tensor | None = None, guidance: float = 0.0, guidance_form: str = "cosmos",
                   sampler: str = "2ab", steps: int = 35, sigma_min: float = 0.002, sigma_max: float = 80.0,
                   rho: float = 7.0, churn: float = 0.0, cond: torch.Tensor | None = None, num_cond: int = 0,
                   sigma_aug: float | None = None, fps: float | None = None, t_offset: int = 0,
                   generator: torch.Generator | None = None, net_kw: dict | None = None,
                   callback: Callable[[float], None] | None = None, held: torch.Tensor | None = None,
                   cond_guidance: float = 0.0, null_kw: dict | None = None) -> torch.Tensor:
    """Latents of ``shape`` (B, C, T, H, W) for text embeddings ``text`` (B, L, D); ``net_kw``: more
    per-sample network inputs (B, ...) for both guidance branches — ``extra`` (the AR diffusion decoder's
    embedded tokens), ``action`` (robot actions).

    ``guidance`` > 0 (Cosmos form) or != 1 (standard form) needs ``uncond`` (the embedding of the
    negative prompt, or zeros). ``cond`` (B, C, >= num_cond, H, W) holds the condition latents; ``held``
    (B, C, T, H, W) the held input's latents, the prior of a ``residual_prior="hold"`` model.
    ``cond_guidance`` != 0 needs ``null_kw``: ``net_kw`` with the guided condition at its null value.
    ``callback(sigma)`` runs after each denoiser evaluation (progress bars: ``denoiser_calls``)."""
    device = text.device
    run = get_sampler(sampler)
    x = torch.randn(shape, generator=generator).to(device) * sigma_max
    use_cfg = guidance != (0.0 if guidance_form == "cosmos" else 1.0)  # otherwise the conditional model alone
    if use_cfg and uncond is None:
        raise ValueError("guidance needs the unconditional embedding (uncond): zeros or a negative prompt's")
    if cond_guidance and null_kw is None:
        raise ValueError("condition guidance needs the null conditions (null_kw)")
    aug_noise = None
    if num_cond:
        if cond is None or cond.shape[2] < num_cond:
            raise ValueError(f"num_cond={num_cond} needs that many condition latent frames")
        cond = cond[:, :, :num_cond]
        pad = torch.zeros(*cond.shape[:2], shape[2] - num_cond, *cond.shape[3:], device=device, dtype=cond.dtype)
        cond = torch.cat([cond, pad], dim=2)
        aug_noise = torch.randn(cond.shape, generator=generator).to(device)
        prior = model.prior(cond, num_cond, held)
        if prior is not None:  # a residual model's ODE starts around "nothing moves", not around zero
            x = x + prior
    b = shape[0]

    kw = dict(net_kw or {})
    kw2 = {k: torch.cat([v, v]) for k, v in kw.items()}
    null = dict(null_kw or {})

    def denoise(x: torch.Tensor, s: float) -> torch.Tensor:
        sig = torch.full((b,), s, device=device)

        def conditional(kw: dict) -> torch.Tensor:
            return model.denoise(x, sig, text, cond=cond, num_cond=num_cond, sigma_aug=sigma_aug,
                                 aug_noise=aug_noise, held=held, fps=fps, t_offset=t_offset, **kw)

        if not use_cfg and not cond_guidance:
            return conditional(kw)
        if not use_cfg:
            c = out = conditional(kw)
        elif num_cond:  # the branches differ in their condition: two calls
            c = conditional(kw)
            out = guided(c, model.denoise(x, sig, uncond, fps=fps, t_offset=t_offset, **kw), guidance, guidance_form)
        else:  # one batch of both branches
            both = model.denoise(torch.cat([x, x]), torch.cat([sig, sig]), torch.cat([text, uncond]), fps=fps,
                                 t_offset=t_offset, **kw2)
            c, u = both.chunk(2)
            out = guided(c, u, guidance, guidance_form)
        if cond_guidance:
            out = out + cond_guidance * (c - conditional(null))
        if num_cond:
            out[:, :, :num_cond] = cond[:, :, :num_cond]
        return out

    def counted(x: torch.Tensor, s: float) -> torch.Tensor:
        out = denoise(x, s)
        if callback is not None:
            callback(s)
        return out

    return run(counted, x, karras_sigmas(steps, sigma_min, sigma_max, rho), churn=churn, generator=generator)


def denoiser_calls(sampler: str, steps: int) -> int:
    """Network evaluations of one sampling run: Heun corrects every step but the last (to sigma 0)."""
    return 2 * steps - 1 if sampler == "heun" else steps
