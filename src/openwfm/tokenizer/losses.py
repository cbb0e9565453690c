"""Tokenizer training losses on videos (B, 3, T, H, W) in [-1, 1] (images: T = 1).

Cosmos tokenizer (NVIDIA, "Cosmos World Foundation Model Platform for Physical AI", 2025, sec. 4): plain
autoencoder objective, stage 1 = L1 (weight 1.0) + perceptual (0.1); stage 2 adds an optical-flow loss for
temporal smoothness and a Gram-matrix loss (0.062). The released code weighs flow 0.01 and leaves it off.

What is implemented here, honestly:
- perceptual: LPIPS without the learned linear heads (Zhang et al., CVPR 2018, eq. 1 with w_l = 1): unit-
  normalize each position's channel vector at several layers of a frozen backbone, squared difference
  summed over channels, mean over positions, summed over layers with equal weights. Backbone: the packaged
  EfficientNet-Lite0 (default, offline) or VGG-19 from a local file (the paper's choice). Frames are folded
  into the batch; ``max_frames`` scores a random subset of frames (the same for both videos).
- gram: squared Frobenius distance between Gram matrices (Gatys et al., CVPR 2016) of the same unit-
  normalized features, averaged over positions (so each is PSD with trace 1 and a layer adds at most 2,
  a scale comparable to the perceptual term), summed over layers. Our normalization choice: the paper
  gives the weight (0.062), not the normalization.
- flow: flow is estimated on the INPUT video with OpenCV's Farneback (non-differentiable, low-resolution
  uint8 luma), not with RAFT as in the paper. The reconstruction's frame t is warped to t+1 by backward
  warping (grid_sample, differentiable) and subtracted from its frame t+1; pixels failing the
  forward-backward consistency check (Sundaram et al., ECCV 2010) or sampling outside the frame are masked.
  ``mode="warp"`` penalizes that motion-compensated residual itself (Ruder et al., GCPR 2016);
  ``mode="relative"`` (default) penalizes its difference from the input's own residual, so it is exactly
  zero for a perfect reconstruction and does not punish real brightness changes or flow errors.
- l2 (ours, not the paper's; weight 0 by default): mean squared error. A decoder fine-tuned on a frozen
  encoder's latents (``freeze_encoder``) is scored by PSNR, i.e. by this; L1 drives it to the median of an
  error that is mostly symmetric compression noise, and it learned nothing (docs/default-model.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openwfm.config import ConfigError

BACKBONES = ("efficientnet-lite0", "vgg19")
FLOW_MODES = ("relative", "warp")


def l1_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (x_hat - x).abs().mean()


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frames of a clip consecutive."""
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def load_backbone(name: str, weights: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A frozen, cached feature backbone with ``features(x, layers)`` and ``DEFAULT_LAYERS`` semantics."""
    if name == "efficientnet-lite0":
        from openwfm.features.efficientnet import load_efficientnet_lite0
        return load_efficientnet_lite0(weights, device)
    if name == "vgg19":
        from openwfm.features.vgg import load_vgg19
        return load_vgg19(weights, device)
    raise ConfigError(f"unknown perceptual backbone '{name}'; choose from {BACKBONES}")


def default_layers(name: str) -> tuple[str, ...]:
    if name == "vgg19":
        from openwfm.features.vgg import DEFAULT_LAYERS
    else:
        from openwfm.features.efficientnet import DEFAULT_LAYERS
    return DEFAULT_LAYERS


def normalize_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalize the channel vector at every position (LPIPS eq. 1)."""
    return f * torch.rsqrt((f * f).sum(dim=1, keepdim=True) + eps)


def lpips_distance(feats_x: list[torch.Tensor], feats_y: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (N,) LPIPS-style distance between matching lists of (N, C, h, w) feature maps."""
    total = 0.0
    for fx, fy in zip(feats_x, feats_y, strict=True):
        diff = normalize_channels(fx.float()) - normalize_channels(fy.float())
        total = total + (diff * diff).sum(dim=1).mean(dim=(1, 2))
    return total


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, C): channel products averaged over positions, F F^T / (h w)."""
    n, c = f.shape[:2]
    flat = f.float().reshape(n, c, -1)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def gram_distance(feats_x: list[torch.Tensor], feats_y: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (N,) squared Frobenius distance between Gram matrices of unit-normalized features, summed
    over layers. Each Gram matrix is then PSD with trace 1, so every layer contributes at most 2."""
    total = 0.0
    for fx, fy in zip(feats_x, feats_y, strict=True):
        diff = gram_matrix(normalize_channels(fx.float())) - gram_matrix(normalize_channels(fy.float()))
        total = total + (diff * diff).sum(dim=(1, 2))
    return total


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on a frozen backbone, for videos (B, 3, T, H, W) in [-1, 1].

    The backbone is looked up (cached) on the input's device at every call rather than registered as a
    submodule, so ``.to()`` / ``.train()`` on a parent model never touch the shared frozen network.
    """

    def __init__(self, backbone: str = "efficientnet-lite0", weights: str | None = None,
                 layers: tuple[str, ...] | list[str] | None = None, max_frames: int | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"unknown perceptual backbone '{backbone}'; choose from {BACKBONES}")
        self.backbone, self.weights = backbone, weights
        self.layers = tuple(layers) if layers else default_layers(backbone)
        self.max_frames = max_frames
        load_backbone(backbone, weights)  # fail early, with the install hint, if it cannot be loaded

    def frame_subset(self, num_frames: int, device: torch.device) -> torch.Tensor | None:
        """Sorted random frame indices when ``max_frames`` bounds the cost, else None (all frames)."""
        if self.max_frames is None or num_frames <= self.max_frames:
            return None
        return torch.randperm(num_frames)[: self.max_frames].sort().values.to(device)

    def features(self, video: torch.Tensor, frames: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Backbone features of every (or the selected) frame, frames folded into the batch."""
        if video.ndim != 5:
            raise ValueError(f"expected a video (B, C, T, H, W), got shape {tuple(video.shape)}")
        if frames is not None:
            video = video.index_select(2, frames)
        net = load_backbone(self.backbone, self.weights, video.device)
        return net.features(fold_frames(video), self.layers)

    def pair_features(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features of the target (no gradient) and of the reconstruction on the same frames."""
        frames = self.frame_subset(x.shape[2], x.device)
        with torch.no_grad():
            fx = self.features(x, frames)
        return fx, self.features(x_hat, frames)

    def distance(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Per-clip (B,) distance: the per-frame distance averaged over the scored frames."""
        fx, fy = self.pair_features(x, x_hat)
        return lpips_distance(fx, fy).view(x.shape[0], -1).mean(dim=1)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.distance(x, x_hat).mean()


def gram_loss(x: torch.Tensor, x_hat: torch.Tensor, perceptual: PerceptualLoss | None = None) -> torch.Tensor:
    """Gram-matrix (style) loss on the perceptual backbone's features of videos (B, 3, T, H, W)."""
    perceptual = perceptual or PerceptualLoss()
    fx, fy = perceptual.pair_features(x, x_hat)
    return gram_distance(fx, fy).mean()


# ---------------------------------------------------------------------------------------------- flow


def _luma_uint8(video: torch.Tensor, size: int) -> tuple[np.ndarray, float, float]:
    """(B, 3, T, H, W) in [-1, 1] -> uint8 luma (B, T, h, w) with the longer side <= ``size``, and the scales."""
    v = video.detach().float().cpu()
    luma = 0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]
    frames = ((luma.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    h, w = frames.shape[-2:]
    scale = min(1.0, size / max(h, w))
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    if (sh, sw) != (h, w):
        frames = np.stack([[cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA) for f in clip] for clip in frames])
    return frames, w / sw, h / sh


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow (h, w, 2) in pixels from frame a to frame b (Farneback, SCIA 2003)."""
    win = max(5, min(15, min(a.shape) // 4 | 1))
    return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=win, iterations=3,
                                        poly_n=5, poly_sigma=1.1, flags=0)


@torch.no_grad()
def farneback_flow(video: torch.Tensor, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (t -> t+1) and backward (t+1 -> t) flow of a video, each (B, T-1, 2, H, W) in pixels (x, y).

    Estimated on uint8 luma with the longer side at most ``size``, then upsampled to the video's size.
    """
    b, _, t, h, w = video.shape
    frames, sx, sy = _luma_uint8(video, size)
    fwd = np.stack([[_farneback(clip[i], clip[i + 1]) for i in range(t - 1)] for clip in frames])
    bwd = np.stack([[_farneback(clip[i + 1], clip[i]) for i in range(t - 1)] for clip in frames])

    def to_full(flow: np.ndarray) -> torch.Tensor:
        f = torch.from_numpy(flow).float().permute(0, 1, 4, 2, 3).reshape(b * (t - 1), 2, *flow.shape[2:4])
        f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)
        f = f * torch.tensor([sx, sy]).view(1, 2, 1, 1)
        return f.view(b, t - 1, 2, h, w).to(video.device)

    return to_full(fwd), to_full(bwd)


def backward_warp(img: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``img`` (N, C, H, W) at p + flow(p) (bilinear); also the (N, 1, H, W) in-frame mask."""
    n, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=img.device, dtype=flow.dtype),
                            torch.arange(w, device=img.device, dtype=flow.dtype), indexing="ij")
    px, py = xs + flow[:, 0], ys + flow[:, 1]
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    return warped, inside.unsqueeze(1).to(img.dtype)


def consistency_mask(fwd: torch.Tensor, bwd: torch.Tensor, alpha: float = 0.01, beta: float = 0.5) -> torch.Tensor:
    """(N, 1, H, W) mask of frame t+1's pixels that pass the forward-backward check (Sundaram et al. 2010).

    ``bwd`` maps t+1 -> t and ``fwd`` t -> t+1; at a visible pixel, bwd(p) + fwd(p + bwd(p)) ~ 0:
    |b + f_w|^2 <= alpha (|b|^2 + |f_w|^2) + beta. Pixels warped from outside frame t are masked too.
    """
    fwd_at, inside = backward_warp(fwd, bwd)
    err = ((bwd + fwd_at) ** 2).sum(dim=1, keepdim=True)
    bound = alpha * ((bwd ** 2).sum(dim=1, keepdim=True) + (fwd_at ** 2).sum(dim=1, keepdim=True)) + beta
    return (err <= bound).to(fwd.dtype) * inside


def flow_loss(x: torch.Tensor, x_hat: torch.Tensor, size: int = 64, mode: str = "relative") -> torch.Tensor:
    """Occlusion-masked, flow-compensated temporal loss of ``x_hat`` (flow from ``x``); 0 for T = 1."""
    if mode not in FLOW_MODES:
        raise ConfigError(f"unknown flow loss mode '{mode}'; choose from {FLOW_MODES}")
    b, c, t, h, w = x.shape
    if t < 2:
        return x_hat.sum() * 0.0
    fwd, bwd = farneback_flow(x, size)
    fwd, bwd = fwd.flatten(0, 1), bwd.flatten(0, 1)
    mask = consistency_mask(fwd, bwd)

    def residual(video: torch.Tensor) -> torch.Tensor:
        prev, nxt = fold_frames(video[:, :, :-1]), fold_frames(video[:, :, 1:])
        return nxt - backward_warp(prev, bwd.to(prev.dtype))[0]

    diff = residual(x_hat)
    if mode == "relative":
        with torch.no_grad():
            diff = diff - residual(x)
    return (mask * diff.abs()).sum() / (mask.sum() * c).clamp_min(1.0)


# ---------------------------------------------------------------------------------------------- total


@dataclass
class TokenizerLossConfig:
    """Loss weights (Cosmos tokenizer; references.md) and how the perceptual/flow terms are computed."""

    l1: float = 1.0
    l2: float = 0.0  # mean squared error, PSNR's own measure (a decoder fine-tune on fixed latents uses it)
    perceptual: float = 0.1
    gram: float = 0.062  # stage 2 only
    flow: float = 0.01  # stage 2 only, and only when flow_enabled (off in the released code)
    flow_enabled: bool = False
    flow_mode: str = "relative"  # "relative" | "warp", see the module docstring
    flow_size: int = 64  # longer side of the frames Farneback sees
    backbone: str = "efficientnet-lite0"  # or "vgg19" with backbone_weights = a local file
    backbone_weights: str | None = None
    layers: list[str] | None = None  # None: the backbone's DEFAULT_LAYERS
    max_frames: int | None = 8  # frames per clip scored by the perceptual / Gram terms (None: all)


_PERCEPTUAL: dict[tuple, PerceptualLoss] = {}


def _perceptual_for(cfg: TokenizerLossConfig) -> PerceptualLoss:
    key = (cfg.backbone, cfg.backbone_weights, tuple(cfg.layers or ()), cfg.max_frames)
    if key not in _PERCEPTUAL:
        _PERCEPTUAL[key] = PerceptualLoss(cfg.backbone, cfg.backbone_weights, cfg.layers, cfg.max_frames)
    return _PERCEPTUAL[key]


def tokenizer_loss(x: torch.Tensor, x_hat: torch.Tensor, cfg: TokenizerLossConfig | None = None,
                   stage: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total and the unweighted, detached parts. Stage 1: L1 + perceptual; stage 2 adds Gram
    and (when ``cfg.flow_enabled``) flow. Terms with weight 0 are not computed."""
    cfg = cfg or TokenizerLossConfig()
    if stage not in (1, 2):
        raise ConfigError(f"tokenizer loss stage must be 1 or 2, got {stage}")
    if x.shape != x_hat.shape or x.ndim != 5:
        raise ValueError(f"expected two videos (B, C, T, H, W) of one shape, got {tuple(x.shape)} and "
                         f"{tuple(x_hat.shape)}")
    parts = {"l1": l1_loss(x, x_hat)}
    total = cfg.l1 * parts["l1"]
    if cfg.l2 > 0:
        parts["l2"] = (x_hat - x).pow(2).mean()
        total = total + cfg.l2 * parts["l2"]
    use_gram = stage == 2 and cfg.gram > 0
    if cfg.perceptual > 0 or use_gram:
        perceptual = _perceptual_for(cfg)
        fx, fy = perceptual.pair_features(x, x_hat)
        if cfg.perceptual > 0:
            parts["perceptual"] = lpips_distance(fx, fy).mean()
            total = total + cfg.perceptual * parts["perceptual"]
        if use_gram:
            parts["gram"] = gram_distance(fx, fy).mean()
            total = total + cfg.gram * parts["gram"]
    if stage == 2 and cfg.flow_enabled and cfg.flow > 0 and x.shape[2] > 1:
        parts["flow"] = flow_loss(x, x_hat, cfg.flow_size, cfg.flow_mode)
        total = total + cfg.flow * parts["flow"]
    return total, {name: value.detach() for name, value in parts.items()}
