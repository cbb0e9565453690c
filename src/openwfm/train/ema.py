"""Exponential moving averages of the weights: classic (constant decay) and EDM2's power function.

Power-function EMA (Karras et al., "Analyzing and Improving the Training Dynamics of Diffusion Models",
2024, sec. 3.1 and appendix C): after t steps the average weighs step tau by tau^gamma, which the running
update beta_t = (1 - 1/t)^(gamma + 1) realizes exactly. The profile's relative standard deviation is
sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))); ``gamma_from_sigma_rel`` inverts it.
Unlike a constant decay, its length scales with training time, so it needs no warm-up heuristics.
"""

from __future__ import annotations

import numpy as np
import torch

from openwfm.training_config import EMAConfig


def gamma_from_sigma_rel(sigma_rel: float) -> float:
    """Exponent gamma of the power profile with relative width ``sigma_rel``.

    sigma_rel^2 = (g+1)/((g+2)^2 (g+3))  <=>  g^3 + 7g^2 + (16 - s^-2) g + (12 - s^-2) = 0, largest real root.
    """
    inv = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
    return float(roots.real[np.abs(roots.imag) < 1e-9].max())


def sigma_rel_from_gamma(gamma: float) -> float:
    return float(np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))))


def ema_beta(cfg: EMAConfig, t: int) -> float:
    """Weight of the old average at update number ``t`` (1-based: the first update copies the weights)."""
    if cfg.kind == "classic":
        return cfg.decay if t > 1 else 0.0
    gamma = gamma_from_sigma_rel(cfg.sigma_rel)
    return (1.0 - 1.0 / t) ** (gamma + 1.0)


class EMA:
    """fp32 shadow copies of a model's trainable parameters, keyed by parameter name.

    Works on plain tensors and on FSDP2's sharded DTensors alike (each rank averages its own shard).
    """

    def __init__(self, model: torch.nn.Module, cfg: EMAConfig):
        self.cfg = cfg
        self.params = {name: p.detach().clone().float() for name, p in _named_trainable(model)}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, t: int) -> None:
        beta = ema_beta(self.cfg, t)
        for name, p in _named_trainable(model):
            self.params[name].lerp_(p.detach().float(), 1.0 - beta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.params)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.params) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[0]}")
        with torch.no_grad():
            for name, value in self.params.items():
                value.copy_(state[name])


def _named_trainable(model: torch.nn.Module):
    """Trainable parameters of the bare model (the trainer passes it unwrapped: no ``module.`` prefixes)."""
    for name, p in model.named_parameters():
        if p.requires_grad:
            yield name, p
