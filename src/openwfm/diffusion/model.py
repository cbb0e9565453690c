"""The diffusion world model: EDM denoiser around the DiT, with Video2World conditioning (Cosmos paper
sec. 5.1 and 5.2).

Latents enter normalized: ``(z - latents_mean) / latents_std * sigma_data``, so the data have EDM's
assumed scale. With ``v2w.residual`` a conditioned denoiser works on the change from the last condition
frame (``WorldModel.prior``). Text2World denoises every latent frame. Video2World keeps the first ``k`` latent frames
(the tokenized input frames: 1 frame -> 1 latent frame, 9 frames -> 1 + 8/t) as a condition: the network
sees them, slightly noised by sigma_aug, in place of the noisy frames, plus a mask channel marking them;
its output there is replaced by the condition itself, so samplers never change those frames, and the loss
counts only the generated frames. The unconditional (guidance) branch zeroes the condition frames too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from openwfm.config import ConfigError
from openwfm.diffusion.dit import DiT, DiTConfig
from openwfm.diffusion.edm import EDMConfig, Uncertainty, edm_loss, precondition, scalings


@dataclass
class Video2WorldConfig:
    enabled: bool = False
    num_input_frames: int = 1  # 1 or 9 pixel frames -> condition latent frames
    # training: each batch conditions on one of these pixel-frame counts, drawn uniformly (Cosmos trains
    # one model for 1 and 9 input frames; 0 adds Text2World, as Cosmos-Predict2.5 serves 0, 1 or 9 frames
    # with one model); empty: always num_input_frames
    input_frame_choices: list[int] = dataclasses.field(default_factory=list)
    aug_P_mean: float = -3.0  # training: ln sigma_aug ~ N(-3, 2^2)
    aug_P_std: float = 2.0
    sigma_aug: float = 0.001  # inference
    # diffuse the change from the last condition frame instead of the frames themselves: the denoiser is
    # D(x) = p + D_r(x - p) with p the last condition latent frame repeated over time, so an untrained model
    # already predicts "nothing moves" and training learns the motion (residual video diffusion: Yang,
    # Srivastava & Mandt 2022, sec. 3). Text2World (no condition frames) stays plain diffusion.
    residual: bool = False
    residual_sigma_data: float = 0.0  # sigma_data of the residual (EDM scalings, loss weight); 0: edm.sigma_data
    # what "nothing moves" is: "last" = the last condition latent frame repeated over time; "hold" = the
    # tokenizer's latents of the input frames with the last one held to the clip's end (``hold_last_frame``),
    # which decode to copy-last-frame itself. A causal tokenizer's latent frame covers several pixel frames,
    # so repeating the last one replays the input's last frames' motion; "hold" does not. Training reads them
    # precomputed (``wfm data latents --priors 1,9``) or encodes them from the clip.
    residual_prior: str = "last"

    def validate(self) -> None:
        if self.residual_prior not in ("last", "hold"):
            raise ConfigError(f"v2w.residual_prior={self.residual_prior!r}: one of last, hold")


def hold_last_frame(video: torch.Tensor, num_input_frames: int, num_frames: int = 0) -> torch.Tensor:
    """Copy-last-frame as a video (B, C, T, H, W): the first ``num_input_frames`` frames, then the last of them
    repeated up to ``num_frames`` (0: the video's length). Its latents are the "hold" residual prior."""
    n, t = num_input_frames, num_frames or video.shape[2]
    if not 1 <= n <= min(t, video.shape[2]):
        raise ValueError(f"hold_last_frame: {n} input frames of a {video.shape[2]}-frame video, {t} out")
    return torch.cat([video[:, :, :n], video[:, :, n - 1:n].expand(-1, -1, t - n, -1, -1)], dim=2)


def condition_latent_frames(num_input_frames: int, temporal_compression: int) -> int:
    """Latent frames a causal tokenizer makes of the input frames: 1 + (n - 1) / t."""
    if num_input_frames < 1 or (num_input_frames - 1) % temporal_compression:
        raise ValueError(f"{num_input_frames} input frames: a causal tokenizer with temporal compression "
                         f"{temporal_compression} takes 1 + k*{temporal_compression} frames (e.g. 1 or "
                         f"{1 + temporal_compression})")
    return 1 + (num_input_frames - 1) // temporal_compression


class WorldModel(nn.Module):
    """DiT + EDM preconditioning + learned loss uncertainty."""

    def __init__(self, dit_cfg: DiTConfig, edm: EDMConfig, v2w: Video2WorldConfig | None = None):
        super().__init__()
        self.v2w = v2w or Video2WorldConfig()
        if self.v2w.enabled:  # a copy: the caller's config stays as it was
            dit_cfg = dataclasses.replace(dit_cfg, condition_mask=True)
        self.edm, self.net = edm, DiT(dit_cfg)
        self.uncertainty = Uncertainty() if edm.uncertainty else None

    def prior(self, cond: torch.Tensor | None, num_cond: int, held: torch.Tensor | None = None) -> torch.Tensor | None:
        """The residual model's prior: the last of ``num_cond`` condition latent frames (B, C, 1, H, W), or with
        ``residual_prior="hold"`` the held input's latents ``held`` (B, C, T, H, W); None for plain diffusion
        (not residual, or no condition)."""
        if not (self.v2w.residual and num_cond and cond is not None):
            return None
        if self.v2w.residual_prior == "hold":
            if held is None:
                raise ValueError("v2w.residual_prior=hold needs the latents of the held input (held)")
            return held
        return cond[:, :, num_cond - 1:num_cond]

    def sigma_data(self, num_cond: int) -> float:
        """The data scale the EDM scalings and loss weight assume: the residual's when conditioned."""
        if self.v2w.residual and num_cond and self.v2w.residual_sigma_data > 0:
            return self.v2w.residual_sigma_data
        return self.edm.sigma_data

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor, cond: torch.Tensor | None = None,
                num_cond: int = 0, sigma_aug: torch.Tensor | float | None = None, aug_noise: torch.Tensor | None = None,
                held: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """D(x; sigma) for noisy latents x (B, C, T, H, W) and sigma (B,). Video2World: ``cond`` holds the
        clean latents whose first ``num_cond`` frames condition (0 = none, e.g. the unconditional branch);
        ``held``: the "hold" residual prior (``prior``)."""
        b, _, t = x.shape[:3]
        sd = self.edm.sigma_data
        extra, aug = {}, None
        if self.net.cfg.condition_mask:
            mask = torch.zeros(b, 1, t, *x.shape[3:], dtype=x.dtype, device=x.device)
            if num_cond:
                if cond is None:
                    raise ValueError("num_cond > 0 needs the condition latents")
                mask[:, :, :num_cond] = 1
                s_aug = torch.as_tensor(sigma_aug if sigma_aug is not None else self.v2w.sigma_aug,
                                        dtype=x.dtype, device=x.device).expand(b).reshape(-1, 1, 1, 1, 1)
                noise = aug_noise if aug_noise is not None else torch.randn_like(cond)
                # the condition enters scaled as its own noise level asks (c_in(sigma_aug)), not as x's
                aug = (cond + s_aug * noise) / (s_aug ** 2 + sd ** 2).sqrt()
            extra["condition_mask"] = mask

        def net(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            if aug is not None:
                x_in = torch.where(extra["condition_mask"].bool(), aug, x_in)
            return self.net(x_in, c_noise, text, **extra, **kw)

        prior = self.prior(cond, num_cond, held)
        if prior is None:
            out = precondition(net, x, sigma, sd)
        else:  # the network sees (and its skip carries) the noisy change from the prior
            out = prior + precondition(net, x - prior, sigma, self.sigma_data(num_cond))
        if num_cond:
            out = torch.cat([cond[:, :, :num_cond], out[:, :, num_cond:]], dim=2)
        return out

    def forward(self, x0: torch.Tensor, text: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                num_cond: int = 0, sigma_aug: torch.Tensor | None = None, cp_group=None,
                held: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """Training: per-sample EDM loss (with the learned uncertainty when enabled) on the generated frames;
        under context parallelism (``cp_group``) on this rank's tokens, so the mean over ranks is the loss."""
        x = x0 + noise * sigma.view(-1, 1, 1, 1, 1).to(x0.dtype)
        d = self.denoise(x, sigma, text, cond=x0 if num_cond else None, num_cond=num_cond, sigma_aug=sigma_aug,
                         cp_group=cp_group, held=held, **kw)
        mask = None
        if num_cond:
            mask = torch.ones_like(x0[:, :1])
            mask[:, :, :num_cond] = 0
        if cp_group is not None:  # this rank's share: its tokens' elements
            local = self.net.local_mask(x0, cp_group)
            mask = local if mask is None else mask * local
        u = self.uncertainty(scalings(sigma.float(), self.edm.sigma_data)[3]) if self.uncertainty is not None else None
        return edm_loss(d, x0, sigma, self.sigma_data(num_cond), u=u, mask=mask)
