"""Evaluation metrics: closed-form cases, independent references and monotonic behaviour."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from conftest import moving_frames

from openwfm.evaluate import (EvalError, I3DFeatures, fd_effnet, feature_distance, frechet_distance, fvd,
                              gaussian_fit, perceptual_distance, psnr, ssim)
from openwfm.evaluate.metrics import ssim_frames


def test_psnr_known_values():
    x = torch.zeros(2, 3, 2, 8, 8, dtype=torch.float64)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 on a range of 2: 10 log10(4 / 0.01)
    out = psnr(x, y)
    assert out.shape == (2,)
    assert math.isclose(float(out[0]), 10 * math.log10(400), rel_tol=1e-9)
    assert float(out[1]) == pytest.approx(100.0)  # identical clips: capped
    a = np.full((2, 8, 8, 3), 100, np.uint8)  # uint8 (T, H, W, 3): MSE 100 on a range of 255
    assert float(psnr(a, a + 10)[0]) == pytest.approx(10 * math.log10(255 ** 2 / 100), rel=1e-6)
    with pytest.raises(EvalError):
        psnr(x, y[:, :, :1])


def naive_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """Reference: explicit loop over every 11 x 11 window fully inside the image (Wang et al. 2004)."""
    r = np.arange(11) - 5
    g = np.exp(-r ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_reference_cases():
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.uniform(-1, 1, (16, 18)), (0, 0), 1.0)
    b = np.clip(a + rng.normal(0, 0.2, a.shape), -1, 1)
    got = float(ssim_frames(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0])
    assert got == pytest.approx(naive_ssim(a, b), abs=1e-10)
    from skimage.metrics import structural_similarity  # an independent implementation (a test dependency)

    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2.0)
    assert got == pytest.approx(ref, abs=1e-9)
    frames = np.stack([cv2.GaussianBlur(rng.uniform(0, 255, (24, 30, 3)), (0, 0), 1.5) for _ in range(2)])
    noisy = np.clip(frames + rng.normal(0, 12, frames.shape), 0, 255).astype(np.uint8)
    frames = frames.astype(np.uint8)
    clip = float(ssim(noisy, frames)[0])  # uint8 clips: mean over frames of the per-channel SSIM on [-1, 1]
    refs = [structural_similarity(noisy[t] / 127.5 - 1, frames[t] / 127.5 - 1, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=2.0, channel_axis=-1) for t in range(2)]
    assert clip == pytest.approx(float(np.mean(refs)), abs=1e-6)
    ca, cb = 0.2, -0.3  # constant frames: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    const = ssim(torch.full((1, 3, 1, 12, 12), ca, dtype=torch.float64),
                 torch.full((1, 3, 1, 12, 12), cb, dtype=torch.float64))
    c1 = (0.01 * 2) ** 2
    assert float(const[0]) == pytest.approx((2 * ca * cb + c1) / (ca ** 2 + cb ** 2 + c1), abs=1e-12)


def test_ssim_identity_and_noise():
    frames = moving_frames(t=3, h=32, w=40)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert float(ssim(x, x)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(ssim(frames, frames)[0]) == pytest.approx(1.0, abs=1e-12)  # uint8 input
    torch.manual_seed(0)
    noise = torch.randn_like(x)
    values = [float(ssim(x, x + s * noise)[0]) for s in (0.02, 0.05, 0.1, 0.3)]
    assert values == sorted(values, reverse=True) and values[-1] < 0.9
    with pytest.raises(EvalError, match="at least 11"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s = a @ a.T + 0.1 * np.eye(6)
    mu = rng.normal(size=6)
    d = rng.normal(size=6)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu, s, mu + d, s) == pytest.approx(float(d @ d), rel=1e-8)
    b = rng.normal(size=(6, 6))
    s2 = b @ b.T
    assert frechet_distance(mu, s, mu + d, s2) == pytest.approx(frechet_distance(mu + d, s2, mu, s), rel=1e-9)
    v1, v2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)  # commuting (diagonal): sum (sqrt v1 - sqrt v2)^2
    expected = ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu, np.diag(v1), mu, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    singular = np.outer(d, d)  # rank-deficient covariances stay finite and non-negative
    assert frechet_distance(mu, singular, mu, singular) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("n,m,dim", [(8, 6, 20), (40, 30, 5)])
def test_feature_distance_matches_gaussian_fits(n, m, dim):
    """The low-rank route (fewer samples than dimensions) and the covariance route agree."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(n, dim)), rng.normal(0.3, 1.5, size=(m, dim))
    expected = frechet_distance(*gaussian_fit(a), *gaussian_fit(b))
    assert feature_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert feature_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def clips(n: int = 4, blur: float = 0.0) -> torch.Tensor:
    out = []
    for seed in range(n):
        frames = moving_frames(t=3, h=48, w=48, seed=seed)
        if blur > 0:
            frames = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in frames])
        out.append(torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1)
    return torch.stack(out)


def test_fd_effnet_and_perceptual_distance():
    real = clips()
    assert fd_effnet(real, real, size=96) == pytest.approx(0.0, abs=1e-6)
    blurred = clips(blur=2.0)
    assert 1.0 < fd_effnet(real, clips(blur=0.7), size=96) < fd_effnet(real, blurred, size=96)
    d = perceptual_distance(real, blurred)
    assert d.shape == (4,) and (d > 0).all()
    assert float(perceptual_distance(real, real).abs().max()) == 0.0


class FakeI3D(torch.nn.Module):
    """Stands in for i3d_torchscript.pt with its calling convention (checks the input it is given)."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[3] == 224 and x.shape[4] == 224
        assert not rescale and not resize
        pooled = x.mean(dim=(2, 3, 4))
        width = 1024 if return_features else 400
        return torch.cat([pooled, x.std(dim=(2, 3, 4))], dim=1).repeat(1, width // 6 + 1)[:, :width]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script / save
def test_i3d_calling_convention(tmp_path):
    with pytest.raises(EvalError, match="i3d_torchscript.pt"):
        I3DFeatures(None)
    path = tmp_path / "i3d.pt"
    torch.jit.save(torch.jit.script(FakeI3D()), str(path))
    i3d = I3DFeatures(str(path))
    real = clips(n=3)
    assert i3d(real).shape == (3, 1024)
    assert i3d(real, return_features=False).shape == (3, 400)
    assert fvd(real, real, i3d) == pytest.approx(0.0, abs=1e-6)
