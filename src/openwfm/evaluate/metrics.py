"""Reconstruction and distribution metrics for videos (tokenizer evaluation, design.md: evaluate/).

Inputs are float videos (B, 3, T, H, W) in [-1, 1] (4-D float (B, 3, H, W) is read as images, T = 1) or
uint8 frames (T, H, W, 3) / (B, T, H, W, 3); uint8 is mapped to [-1, 1], and float values are clipped to
[-1, 1] as they would be when written to uint8. The data range is therefore 2 (= 255 on the uint8 scale;
the same PSNR and SSIM).

- ``psnr``: per clip, 10 log10(range^2 / MSE) with the MSE over the whole clip, capped at 100 dB.
- ``ssim``: Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity", IEEE
  TIP 2004: Gaussian window 11 x 11, sigma 1.5, K1 0.01, K2 0.03, population statistics, over the positions
  whose window lies inside the frame; computed per RGB channel and frame, averaged over channels, frames
  (per clip). Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=2, channel_axis=-1)`` on the same [-1, 1] values (tested). Note:
  SSIM's luminance term is not shift-invariant, so this differs from scikit-image run on raw uint8 values
  (data_range=255) by a few hundredths; the numbers in docs/ all use this definition.
- ``moving_region`` / ``masked_psnr``: PSNR over the pixels whose true value departs from the last input
  frame by more than 10 levels (the region a world model must change; copying the last frame is wrong there).
- ``gradient_magnitude``: mean spatial gradient magnitude, for "neither blurred nor noisy" (ratio to the truth).
- ``perceptual_distance``: the LPIPS-style tokenizer perceptual loss as a metric (no gradient).
- ``frechet_distance``: between two Gaussians (Heusel et al., "GANs Trained by a Two Time-Scale Update
  Rule", NeurIPS 2017), float64, matrix square root by eigendecomposition.
- FD-EffNet: Fréchet distance of clip features built from the packaged EfficientNet-Lite0: per-frame
  1280-d embeddings averaged over time, concatenated with the mean absolute difference of consecutive
  frames' embeddings (a crude motion statistic). It is NOT FVD and its numbers are not comparable to FVD.
- FVD (Unterthiner et al., "Towards Accurate Generative Models of Video", 2018): ``I3DFeatures`` loads the
  standard I3D TorchScript from a local path (none ships offline).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from openwfm.errors import OpenWFMError

DATA_RANGE = 2.0
MAX_PSNR_DB = 100.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


class EvalError(OpenWFMError):
    """An evaluation that cannot run: wrong inputs or a missing local model file."""


def as_video(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Float (B, 3, T, H, W) in [-1, 1] from any accepted input layout (see the module docstring)."""
    t = torch.as_tensor(a)
    if t.dtype == torch.uint8:
        if t.ndim == 4:
            t = t.unsqueeze(0)
        if t.ndim != 5 or t.shape[-1] != 3:
            raise EvalError(f"expected uint8 frames (T, H, W, 3) or (B, T, H, W, 3), got {tuple(t.shape)}")
        return t.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    if t.ndim == 4:
        t = t.unsqueeze(2)
    if t.ndim != 5:
        raise EvalError(f"expected a float video (B, C, T, H, W) in [-1, 1], got {tuple(t.shape)}")
    return (t if t.is_floating_point() else t.float()).clamp(-1.0, 1.0)  # float64 stays float64


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_video(x), as_video(y)
    if x.shape != y.shape:
        raise EvalError(f"videos differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x, y.to(x.device)


def psnr(x, y) -> torch.Tensor:
    """Per-clip PSNR in dB (B,), data range 2 on [-1, 1] (= 255 on uint8), capped at 100 dB."""
    x, y = _pair(x, y)
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(dim=1)
    floor = DATA_RANGE ** 2 * 10 ** (-MAX_PSNR_DB / 10)
    return 10 * torch.log10(DATA_RANGE ** 2 / mse.clamp_min(floor))


def moving_region(true: np.ndarray, last: np.ndarray, threshold: int = 10) -> np.ndarray:
    """(T, H, W) bool: where the true uint8 frames (T, H, W, 3) depart from the last input frame (H, W, 3) by
    more than ``threshold`` levels (of 255) in some channel — the pixels a predictor must change."""
    diff = np.abs(np.asarray(true, dtype=np.int16) - np.asarray(last, dtype=np.int16)[None])
    return diff.max(axis=-1) > threshold


def masked_psnr(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, range 255, capped like ``psnr``) over the pixels of ``mask`` (T, H, W), all channels, of
    uint8 frames (T, H, W, 3); NaN when the mask is empty."""
    if pred.shape != true.shape or mask.shape != true.shape[:3]:
        raise EvalError(f"shapes differ: pred {pred.shape}, true {true.shape}, mask {mask.shape}")
    if not mask.any():
        return float("nan")
    err = (pred.astype(np.float64) - true.astype(np.float64))[mask]
    mse = max(float(np.mean(err ** 2)), 255.0 ** 2 * 10 ** (-MAX_PSNR_DB / 10))
    return float(10 * np.log10(255.0 ** 2 / mse))


def gradient_magnitude(frames: np.ndarray) -> float:
    """Mean spatial gradient magnitude (uint8 levels per pixel) of frames (T, H, W, 3): forward differences
    along x and y, sqrt(dx^2 + dy^2) per channel, averaged. Blur lowers it; noise raises it."""
    f = np.asarray(frames, dtype=np.float64)
    dx, dy = f[:, :-1, 1:] - f[:, :-1, :-1], f[:, 1:, :-1] - f[:, :-1, :-1]
    return float(np.sqrt(dx ** 2 + dy ** 2).mean())


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalized 1-D Gaussian taps, float64."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur(img: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, 1, H, W), 'valid' region only."""
    img = F.conv2d(img, g.view(1, 1, -1, 1))
    return F.conv2d(img, g.view(1, 1, 1, -1))


def ssim_frames(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of single-channel images (N, H, W) in [-1, 1] -> (N,)."""
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise EvalError(f"SSIM needs frames of at least {SSIM_WINDOW} px, got {tuple(a.shape[-2:])}")
    g = gaussian_window().to(a.device)
    a, b = a.double().unsqueeze(1), b.double().unsqueeze(1)
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a ** 2
    var_b = _blur(b * b, g) - mu_b ** 2
    cov = _blur(a * b, g) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


def ssim(x, y) -> torch.Tensor:
    """Per-clip SSIM (B,): per frame and RGB channel, averaged over channels and frames."""
    x, y = _pair(x, y)
    b, c, t, h, w = x.shape
    per = ssim_frames(x.reshape(b * c * t, h, w), y.reshape(b * c * t, h, w))
    return per.view(b, c * t).mean(dim=1)


@torch.no_grad()
def perceptual_distance(x, y, backbone: str = "efficientnet-lite0", weights: str | None = None,
                        layers: list[str] | None = None) -> torch.Tensor:
    """Per-clip (B,) LPIPS-style distance over all frames (the tokenizer's perceptual loss, no gradient)."""
    from openwfm.tokenizer.losses import PerceptualLoss

    x, y = _pair(x, y)
    return PerceptualLoss(backbone, weights, layers, max_frames=None).distance(x, y)


# ---------------------------------------------------------------------------------- Fréchet distances


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped to 0)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), float64.

    tr((S1 S2)^(1/2)) = tr((R S2 R)^(1/2)) with R = S1^(1/2): S1 S2 is similar to R S2 R, which is symmetric
    positive semi-definite, so both square roots come from symmetric eigendecompositions.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise EvalError(f"Gaussians differ in dimension: {mu1.shape}/{s1.shape} vs {mu2.shape}/{s2.shape}")
    root = _sqrtm_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross, 0.0))


def gaussian_fit(feats: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of features (N, D); needs N >= 2."""
    f = np.asarray(torch.as_tensor(feats).double().cpu())
    if f.ndim != 2 or f.shape[0] < 2:
        raise EvalError(f"a Gaussian fit needs features (N >= 2, D), got {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def feature_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N, D) and (M, D).

    With fewer samples than dimensions it avoids the D x D matrices: for centered features A, B,
    S1 = A^T A / (N-1), S2 = B^T B / (M-1), the non-zero eigenvalues of S1 S2 are the squared singular
    values of A B^T / sqrt((N-1)(M-1)), so tr((S1 S2)^(1/2)) is that matrix's nuclear norm (exact).
    """
    a, b = (np.asarray(torch.as_tensor(f).double().cpu()) for f in (real, fake))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise EvalError(f"expected two feature sets (N >= 2, D) of one width, got {a.shape} and {b.shape}")
    if max(len(a), len(b)) > a.shape[1]:
        return frechet_distance(*gaussian_fit(a), *gaussian_fit(b))
    ca, cb = a - a.mean(axis=0), b - b.mean(axis=0)
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(max(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2.0 * cross, 0.0))


@torch.no_grad()
def effnet_video_features(videos, size: int | None = 224, batch_size: int = 32) -> torch.Tensor:
    """FD-EffNet clip features (N, 2560): [time-mean of frame embeddings, mean |embedding_t+1 - embedding_t|].

    Frames are resized to ``size`` x ``size`` (EfficientNet-Lite0's training resolution; None keeps them).
    """
    from openwfm.features.efficientnet import load_efficientnet_lite0

    v = as_video(videos)
    b, _, t, h, w = v.shape
    net = load_efficientnet_lite0(device=v.device)
    frames = v.transpose(1, 2).reshape(b * t, 3, h, w)
    emb = torch.cat([net.embed(frames[i:i + batch_size], size) for i in range(0, b * t, batch_size)])
    emb = emb.view(b, t, -1).double()
    motion = (emb[:, 1:] - emb[:, :-1]).abs().mean(dim=1) if t > 1 else torch.zeros_like(emb[:, 0])
    return torch.cat([emb.mean(dim=1), motion], dim=1).cpu()


def fd_effnet(real, fake, size: int | None = 224) -> float:
    """FD-EffNet between a set of real clips and a set of reconstructed/generated clips (not FVD)."""
    return feature_distance(effnet_video_features(real, size), effnet_video_features(fake, size))


class I3DFeatures:
    """The standard FVD I3D network from a local TorchScript file (e.g. ``i3d_torchscript.pt``).

    Called as ``model(x, rescale=False, resize=False, return_features=True)`` on (N, 3, T, 224, 224) in
    [-1, 1], it returns 1024-d features (with ``return_features=False``: 400 Kinetics logits).
    """

    def __init__(self, path: str | os.PathLike | None, device: str | torch.device = "cpu"):
        if path is None:
            raise EvalError("FVD needs the I3D TorchScript file (none ships offline): pass the local path of "
                            "i3d_torchscript.pt (the StyleGAN-V / common FVD detector), or use fd_effnet")
        if not os.path.isfile(path):
            raise EvalError(f"I3D TorchScript file {path} not found")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format this file ships in
                warnings.simplefilter("ignore", DeprecationWarning)
                self.model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as e:
            raise EvalError(f"{path} is not a TorchScript module: {e}") from e
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, videos, return_features: bool = True) -> torch.Tensor:
        """(N, 1024) features (or (N, 400) logits) of clips; frames are resized to 224 x 224."""
        v = as_video(videos).to(self.device)
        b, c, t, h, w = v.shape
        if (h, w) != (224, 224):
            frames = v.transpose(1, 2).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=(224, 224), mode="bilinear", align_corners=False,
                                   antialias=min(h, w) > 224)
            v = frames.view(b, t, c, 224, 224).transpose(1, 2)
        out = self.model(v.contiguous(), rescale=False, resize=False, return_features=return_features)
        return out.double().cpu()


def fvd(real, fake, i3d: I3DFeatures) -> float:
    """Fréchet Video Distance with the I3D features of two clip sets."""
    return feature_distance(i3d(real), i3d(fake))
