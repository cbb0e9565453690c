"""EDM preconditioning and loss, and the samplers, checked against closed forms: for Gaussian data the
ideal denoiser and the probability-flow ODE's solution are known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from openwfm.diffusion.edm import EDMConfig, Uncertainty, edm_loss, loss_weight, precondition, sample_sigma, scalings
from openwfm.diffusion.samplers import SAMPLERS, euler, guided, heun, karras_sigmas, multistep_2ab

MU, S = 0.3, 0.5  # data ~ N(MU, S^2) per element


def gaussian_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x0 | x] for x0 ~ N(MU, S^2) and x = x0 + sigma n."""
    return MU + S ** 2 / (S ** 2 + sigma ** 2) * (x - MU)


def ode_solution(x_T: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """The probability-flow ODE maps N(MU, S^2 + sigma^2) to N(MU, S^2) by rescaling about MU."""
    return MU + (x_T - MU) * S / math.sqrt(S ** 2 + sigma_max ** 2)


def test_scalings_limits_and_identities():
    d = 0.5
    c_skip, c_out, c_in, c_noise = scalings(torch.tensor([1e-6, 1.0, 1e4]), d)
    assert c_skip[0] == pytest.approx(1, abs=1e-9) and c_out[0] == pytest.approx(0, abs=1e-5)  # sigma -> 0: D = x
    assert c_skip[2] == pytest.approx(0, abs=1e-8) and c_out[2] == pytest.approx(d, rel=1e-6)  # sigma -> inf
    s = torch.tensor([0.1, 1.0, 10.0])
    c_skip, c_out, c_in, c_noise = scalings(s, d)
    torch.testing.assert_close(c_in * (s ** 2 + d ** 2).sqrt(), torch.ones(3))  # unit-variance network input
    # EDM Table 1, written out independently: c_skip = d^2/(s^2+d^2), c_out = s d / sqrt(s^2+d^2)
    torch.testing.assert_close(c_skip, d ** 2 / (s ** 2 + d ** 2))
    torch.testing.assert_close(c_out, s * d / (s ** 2 + d ** 2).sqrt())
    torch.testing.assert_close(c_skip + c_out ** 2 / d ** 2, torch.ones(3))  # skip and residual weights sum to 1
    # EDM's effective training target F* = (x0 - c_skip x) / c_out has unit variance at every sigma
    torch.testing.assert_close((1 - c_skip) ** 2 * d ** 2 + c_skip ** 2 * s ** 2, c_out ** 2)
    torch.testing.assert_close(c_noise, s.log() / 4)
    torch.testing.assert_close(loss_weight(s, d), 1 / c_out ** 2)


def test_precondition_with_zero_network_is_the_skip_path():
    x, sigma = torch.randn(3, 4), torch.tensor([0.2, 1.0, 5.0])
    out = precondition(lambda xin, c_noise: torch.zeros_like(xin), x, sigma, 0.5)
    torch.testing.assert_close(out, x * scalings(sigma, 0.5)[0][:, None])


def test_sigma_distribution_and_video_scaling():
    cfg = EDMConfig(P_mean=-1.2, P_std=1.2)
    g = torch.Generator().manual_seed(0)
    ln = sample_sigma(200_000, cfg, generator=g).log()
    assert ln.mean().item() == pytest.approx(-1.2, abs=0.01) and ln.std().item() == pytest.approx(1.2, abs=0.01)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(sample_sigma(8, cfg, 16, generator=g1), 4 * sample_sigma(8, cfg, 1, generator=g2))


def test_loss_uncertainty_and_mask():
    x0, d = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    sigma = torch.tensor([1.0, 2.0])
    plain = edm_loss(d, x0, sigma, 0.5)
    torch.testing.assert_close(plain, loss_weight(sigma, 0.5))
    u = torch.tensor([0.0, math.log(2)])
    torch.testing.assert_close(edm_loss(d, x0, sigma, 0.5, u=u), plain / u.exp() + u)
    mask = torch.zeros(2, 3, 4)
    mask[:, :, :2] = 1
    d2 = d.clone()
    d2[:, :, 2:] = 100  # masked-out elements do not count
    torch.testing.assert_close(edm_loss(d2, x0, sigma, 0.5, mask=mask), plain)
    # the uncertainty head starts at u = 0 and is minimized at u = ln(loss)
    head = Uncertainty()
    assert torch.all(head(scalings(sigma, 0.5)[3]) == 0)


def test_karras_schedule():
    s = karras_sigmas(10, 0.002, 80.0)
    assert len(s) == 11 and s[0] == pytest.approx(80) and s[-2] == pytest.approx(0.002) and s[-1] == 0
    assert all(a > b for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError):
        karras_sigmas(0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_perfect_denoiser_returns_the_data(name):
    """Data is one point: the ideal denoiser returns it, and every sampler lands on it."""
    target = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 4) * 80
    out = SAMPLERS[name](lambda x, s: target, x, karras_sigmas(12))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)


def test_samplers_converge_to_the_ode_solution():
    """Gaussian data: the exact ODE solution is known. Euler converges at first order, Heun and 2AB at second
    order (far more accurate at the same number of steps); all agree as steps grow."""
    sigma_max = 80.0
    x_T = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * math.sqrt(sigma_max ** 2 + S ** 2) + MU
    exact = ode_solution(x_T, sigma_max)

    def err(sampler, n: int) -> float:
        # sigma_min small enough that the final jump to 0 costs nothing measurable
        return (sampler(gaussian_denoiser, x_T.clone(), karras_sigmas(n, 1e-4, sigma_max)) - exact).abs().max().item()

    # order of convergence: doubling the steps halves Euler's error and quarters the others'
    assert 1.8 < err(euler, 64) / err(euler, 128) < 2.2
    for sampler in (heun, multistep_2ab):
        assert 3.5 < err(sampler, 64) / err(sampler, 128) < 4.5
        assert err(sampler, 64) < 0.15 * err(euler, 64)
    assert max(err(s, 256) for s in (euler, heun, multistep_2ab)) < 0.03


def test_churn_is_seeded_and_only_for_stochastic_samplers():
    x = torch.randn(4, 5)
    a = euler(gaussian_denoiser, x, karras_sigmas(8), churn=10, generator=torch.Generator().manual_seed(3))
    b = euler(gaussian_denoiser, x, karras_sigmas(8), churn=10, generator=torch.Generator().manual_seed(3))
    c = euler(gaussian_denoiser, x, karras_sigmas(8))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="churn"):
        multistep_2ab(gaussian_denoiser, x, karras_sigmas(8), churn=1)


def test_guidance_forms():
    cond, uncond = torch.randn(3), torch.randn(3)
    torch.testing.assert_close(guided(cond, uncond, 0.0, "cosmos"), cond)
    torch.testing.assert_close(guided(cond, uncond, 1.0, "standard"), cond)
    torch.testing.assert_close(guided(cond, uncond, 7.0, "cosmos"), guided(cond, uncond, 8.0, "standard"))
    with pytest.raises(ValueError, match="guidance form"):
        guided(cond, uncond, 1.0, "other")
