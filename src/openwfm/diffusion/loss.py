"""The diffusion world model's training objective as one callable, in the style of NVlabs/edm's ``EDMLoss``
(Karras et al. 2022, sec. 5; Cosmos paper sec. 5.1): it draws the noise level (log-normal, times sqrt(T') for
video) and the noise, drops prompts for classifier-free guidance, chooses the Video2World conditioning (how
many input frames, the condition's augmentation noise, the residual prior) and returns the per-sample loss."""

from __future__ import annotations

from typing import Callable

import torch

from openwfm.diffusion.edm import EDMConfig, sample_sigma
from openwfm.diffusion.model import Video2WorldConfig, condition_latent_frames
from openwfm.text.encoder import drop_text


class EDMLoss:
    """``loss(model, x0, emb, ...) -> (per-sample loss (B,), stats)`` for a ``WorldModel`` (or a subclass).

    ``generator`` drives every random draw, in a fixed order (prompt dropout, sigma, noise, input frame
    count, sigma_aug), so a resumed run draws what an uninterrupted one would."""

    def __init__(self, edm: EDMConfig, v2w: Video2WorldConfig, text_dropout: float, generator: torch.Generator):
        self.edm, self.v2w, self.text_dropout, self.gen = edm, v2w, text_dropout, generator

    def input_frames(self) -> int:
        """Pixel input frames of this batch's Video2World condition (0: none / Text2World), drawn uniformly
        from ``v2w.input_frame_choices``."""
        choices = self.v2w.input_frame_choices or [self.v2w.num_input_frames]
        return choices[int(torch.randint(len(choices), (1,), generator=self.gen))] if len(choices) > 1 else choices[0]

    def __call__(self, model, x0: torch.Tensor, emb: torch.Tensor, *, temporal_compression: int,
                 held: Callable[[int], torch.Tensor] | None = None, fps: float | None = None, cp_group=None,
                 **net_kw) -> tuple[torch.Tensor, dict[str, float]]:
        """Clean EDM-scale latents ``x0`` (B, C, T', H', W'), text states ``emb`` (B, L, D); ``held(k)``: the
        held-input latents of the clips' first k frames (a ``residual_prior="hold"`` model); ``net_kw`` go to
        the network (post-training conditions: ``extra`` channels, ``action``)."""
        b, _, t_lat = x0.shape[:3]
        emb = drop_text(emb.to(x0.device), self.text_dropout, self.gen)
        sigma = sample_sigma(b, self.edm, t_lat, generator=self.gen).to(x0.device)
        noise = torch.randn(x0.shape, generator=self.gen).to(x0.device)
        num_cond, sigma_aug, prior = 0, None, None
        if self.v2w.enabled and t_lat > 1:
            k = self.input_frames()
            num_cond = condition_latent_frames(k, temporal_compression) if k else 0
            sigma_aug = (torch.randn(b, generator=self.gen) * self.v2w.aug_P_std + self.v2w.aug_P_mean).exp()
            sigma_aug = sigma_aug.to(x0.device)
            if num_cond and self.v2w.residual and self.v2w.residual_prior == "hold":
                if held is None:
                    raise ValueError("v2w.residual_prior=hold: the loss needs the held-input latents (held)")
                prior = held(k)
        losses = model(x0, emb, sigma, noise, num_cond=num_cond, sigma_aug=sigma_aug, fps=fps, cp_group=cp_group,
                       held=prior, **net_kw)
        return losses, {"sigma_mean": float(sigma.mean())}
