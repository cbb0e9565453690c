"""The world model: a tiny one overfits one clip, Video2World keeps its condition frames, guidance at
g = 0 is the conditional model, and the diffusion task trains through the trainer."""

from __future__ import annotations

import pytest
import torch

from openwfm.config import get_preset
from openwfm.diffusion.dit import DiTConfig
from openwfm.diffusion.edm import EDMConfig, sample_sigma
from openwfm.diffusion.model import Video2WorldConfig, WorldModel, condition_latent_frames
from openwfm.diffusion.sample import sample_latents


def _model(v2w: bool = False, seed: int = 0, uncertainty: bool = True) -> WorldModel:
    torch.manual_seed(seed)
    cfg = get_preset(DiTConfig, "tiny")
    return WorldModel(cfg, EDMConfig(uncertainty=uncertainty), Video2WorldConfig(enabled=v2w))


def test_tiny_model_overfits_one_clip():
    """The EDM loss on fixed (sigma, noise) pairs falls more than 10x in 300 steps (~15 s on 2 cores)."""
    m = _model(uncertainty=False)
    x0, text = torch.randn(1, 16, 3, 8, 8) * 0.5, torch.randn(1, 4, 384)
    g = torch.Generator().manual_seed(1)
    ev_sigma, ev_noise = sample_sigma(32, m.edm, 3, generator=g), torch.randn(32, 16, 3, 8, 8, generator=g)

    def held_out_loss() -> float:
        with torch.no_grad():
            return m(x0.expand(32, -1, -1, -1, -1), text.expand(32, -1, -1), ev_sigma, ev_noise).mean().item()

    before = held_out_loss()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(300):
        loss = m(x0.expand(8, -1, -1, -1, -1), text.expand(8, -1, -1), sample_sigma(8, m.edm, 3, generator=g),
                 torch.randn(8, 16, 3, 8, 8, generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < before / 10


def test_uncertainty_starts_neutral_and_loss_is_finite():
    m = _model()
    x0 = torch.randn(2, 16, 2, 4, 4)
    loss = m(x0, torch.randn(2, 3, 384), torch.tensor([0.1, 10.0]), torch.randn_like(x0))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert m.uncertainty.linear.weight.grad.abs().sum() > 0  # u(sigma) learns


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_video2world_keeps_the_condition_frames(guidance):
    m = _model(v2w=True).eval()
    cond = torch.randn(1, 16, 3, 4, 4)
    text, uncond = torch.randn(1, 3, 384), torch.zeros(1, 3, 384)
    n = condition_latent_frames(9, 4)
    assert n == 3 and condition_latent_frames(1, 4) == 1
    out = sample_latents(m, text, (1, 16, 5, 4, 4), uncond=uncond, guidance=guidance, steps=4, cond=cond,
                         num_cond=n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :n], cond)
    assert not torch.allclose(out[:, :, n:], torch.zeros_like(out[:, :, n:]))
    with pytest.raises(ValueError, match="1 \\+ k"):
        condition_latent_frames(6, 4)


def test_guidance_zero_is_the_conditional_model():
    m = _model().eval()
    text, uncond = torch.randn(1, 3, 384), torch.zeros(1, 3, 384)

    def run(**kw):
        return sample_latents(m, text, (1, 16, 2, 4, 4), steps=5, generator=torch.Generator().manual_seed(0), **kw)

    plain = run()
    torch.testing.assert_close(run(uncond=uncond, guidance=0.0), plain)
    torch.testing.assert_close(run(uncond=uncond, guidance=1.0, guidance_form="standard"), plain)
    assert not torch.allclose(run(uncond=uncond, guidance=2.0), plain)
    with pytest.raises(ValueError, match="unconditional"):
        run(guidance=2.0)
