"""Samplers of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (EDM sec. 3), as pure
functions with one signature::

    sampler(denoise, x, sigmas, churn=0.0, generator=None) -> x0

``denoise(x, sigma)`` returns D(x; sigma) for a batch and a float ``sigma``; ``x`` starts as noise at
``sigmas[0]`` (i.e. ``randn * sigmas[0]``); ``sigmas`` falls to a final 0 (``karras_sigmas``).
- ``euler``: EDM's first-order step (one network call per step);
- ``heun``: EDM Algorithm 1/2 (second order, two calls per step, Euler on the last step to 0);
- ``multistep_2ab``: second-order Adams-Bashforth on the data prediction in log-sigma time (the
  exponential-integrator form, as DPM-Solver++(2M) with EDM's alpha = 1): one call per step, second order.
``churn`` (EDM Algorithm 2, S_churn) adds fresh noise before each step: Euler and Heun only.
Guidance (Cosmos vs standard) combines two denoiser outputs: ``guided``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """n noise levels from sigma_max to sigma_min, evenly spaced in sigma^(1/rho) (EDM eq. 5), then 0."""
    if n < 1:
        raise ValueError(f"need at least one step, got {n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    steps = [(a + i / max(n - 1, 1) * (b - a)) ** rho for i in range(n)]
    return steps + [0.0]


def _churn(x: torch.Tensor, sigma: float, churn: float, n: int, generator) -> tuple[torch.Tensor, float]:
    if churn <= 0:
        return x, sigma
    gamma = min(churn / n, math.sqrt(2) - 1)
    hat = sigma * (1 + gamma)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + math.sqrt(hat ** 2 - sigma ** 2) * noise, hat


def euler(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], churn: float = 0.0,
          generator: torch.Generator | None = None) -> torch.Tensor:
    n = len(sigmas) - 1
    for i in range(n):
        x, s = _churn(x, sigmas[i], churn, n, generator)
        d = (x - denoise(x, s)) / s
        x = x + (sigmas[i + 1] - s) * d
    return x


def heun(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], churn: float = 0.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    n = len(sigmas) - 1
    for i in range(n):
        x, s = _churn(x, sigmas[i], churn, n, generator)
        nxt = sigmas[i + 1]
        d = (x - denoise(x, s)) / s
        x_next = x + (nxt - s) * d
        if nxt > 0:  # trapezoid correction
            d2 = (x_next - denoise(x_next, nxt)) / nxt
            x_next = x + (nxt - s) * (d + d2) / 2
        x = x_next
    return x


def multistep_2ab(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], churn: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    if churn:
        raise ValueError("multistep_2ab is deterministic: churn is for euler and heun")
    prev, h_prev = None, None
    for i in range(len(sigmas) - 1):
        s, nxt = sigmas[i], sigmas[i + 1]
        d0 = denoise(x, s)
        if nxt == 0:  # the last step lands on the data prediction
            return d0
        h = math.log(s / nxt)  # step in t = -ln sigma
        est = d0
        if prev is not None:  # second-order extrapolation of the data prediction over the step
            r = h_prev / h
            est = (1 + 1 / (2 * r)) * d0 - (1 / (2 * r)) * prev
        x = (nxt / s) * x + (1 - nxt / s) * est
        prev, h_prev = d0, h
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"euler": euler, "heun": heun, "2ab": multistep_2ab}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler '{name}': choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float, form: str = "cosmos") -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022). ``"cosmos"`` (the released Cosmos code):
    ``cond + g (cond - uncond)``, so g = 0 is the conditional model and Cosmos's g = 7 is standard w = 8.
    ``"standard"``: ``uncond + w (cond - uncond)``, so w = 1 is the conditional model."""
    if form == "cosmos":
        return cond + scale * (cond - uncond)
    if form == "standard":
        return uncond + scale * (cond - uncond)
    raise ValueError(f"unknown guidance form '{form}': 'cosmos' or 'standard'")
