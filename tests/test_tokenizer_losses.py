"""Tokenizer losses: zero at a perfect reconstruction, gradients only into the reconstruction, and the
behaviour each term is meant to have (blur, spatial rearrangement, temporal order)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from openwfm.config import ConfigError
from openwfm.errors import OpenWFMError
from openwfm.features import load_efficientnet_lite0
from openwfm.tokenizer.losses import (PerceptualLoss, TokenizerLossConfig, flow_loss, gram_distance, gram_loss,
                                      gram_matrix, tokenizer_loss)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def translating(t: int = 5, size: int = 48, speed: int = 2, seed: int = 0) -> torch.Tensor:
    """(1, 3, T, size, size) in [-1, 1]: a smooth random texture sliding left by ``speed`` px per frame."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.uniform(0, 1, (size, size + speed * t, 3)).astype(np.float32), (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min()) * 2 - 1
    frames = np.stack([big[:, i * speed:i * speed + size] for i in range(t)])
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].contiguous()


def image_video(name: str, size: int = 64, blur: float = 0.0) -> torch.Tensor:
    """A real image as a one-frame video (1, 3, 1, size, size), optionally Gaussian-blurred."""
    path = OPENCV_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not installed (Debian opencv-doc)")
    img = cv2.resize(cv2.imread(str(path))[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    return torch.from_numpy(img / 127.5 - 1).permute(2, 0, 1)[None, :, None].contiguous()


def stage2_config() -> TokenizerLossConfig:
    return TokenizerLossConfig(flow_enabled=True, max_frames=3)


def test_zero_for_identical_and_positive_otherwise():
    torch.manual_seed(0)
    x = translating(t=5, size=32)
    total, parts = tokenizer_loss(x, x.clone(), stage2_config(), stage=2)
    assert set(parts) == {"l1", "perceptual", "gram", "flow"}
    assert float(total) == 0.0 and all(float(v) == 0.0 for v in parts.values())
    x_hat = x + 0.1 * torch.randn_like(x)
    total, parts = tokenizer_loss(x, x_hat, stage2_config(), stage=2)
    assert all(float(v) > 0 for v in parts.values())
    cfg = stage2_config()
    expected = cfg.l1 * parts["l1"] + cfg.perceptual * parts["perceptual"] + cfg.gram * parts["gram"] \
        + cfg.flow * parts["flow"]
    torch.testing.assert_close(total.detach(), expected)


def test_stages_and_config():
    x = translating(t=3, size=32)
    assert set(tokenizer_loss(x, x, stage=1)[1]) == {"l1", "perceptual"}
    assert set(tokenizer_loss(x, x, stage=2)[1]) == {"l1", "perceptual", "gram"}  # flow off by default
    assert set(tokenizer_loss(x[:, :, :1], x[:, :, :1], stage2_config(), stage=2)[1]) == {
        "l1", "perceptual", "gram"}  # images: no flow term
    assert set(tokenizer_loss(x, x, TokenizerLossConfig(perceptual=0.0), stage=1)[1]) == {"l1"}
    y = x + 0.1 * torch.randn_like(x)  # the l2 term is the mean squared error; l1 is still logged at weight 0
    total, parts = tokenizer_loss(x, y, TokenizerLossConfig(l1=0.0, l2=1.0, perceptual=0.0), stage=1)
    assert set(parts) == {"l1", "l2"} and torch.allclose(total, (y - x).pow(2).mean())
    with pytest.raises(ConfigError):
        tokenizer_loss(x, x, stage=3)
    with pytest.raises(OpenWFMError, match="local weights file"):
        tokenizer_loss(x, x + 0.1, TokenizerLossConfig(backbone="vgg19"), stage=1)


def test_gradients_reach_only_the_reconstruction():
    torch.manual_seed(0)
    x = translating(t=3, size=32).requires_grad_(True)
    x_hat = (x.detach() + 0.1 * torch.randn_like(x)).requires_grad_(True)
    perceptual = PerceptualLoss()
    (perceptual(x, x_hat) + gram_loss(x, x_hat, perceptual) + flow_loss(x, x_hat)).backward()
    assert x.grad is None  # targets go through the backbone and the flow without a graph
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in load_efficientnet_lite0().parameters())


def test_frame_subset_bounds_cost():
    torch.manual_seed(0)
    x = translating(t=5, size=32).repeat(2, 1, 1, 1, 1)
    fx, fy = PerceptualLoss(max_frames=2).pair_features(x, x + 0.1)
    assert fx[0].shape[0] == fy[0].shape[0] == 2 * 2
    assert PerceptualLoss().pair_features(x, x)[0][0].shape[0] == 2 * 5


def test_perceptual_distance_grows_with_blur():
    perceptual = PerceptualLoss()
    x = image_video("baboon.jpg")
    with torch.no_grad():
        d = [float(perceptual(x, image_video("baboon.jpg", blur=s))) for s in (0.5, 1.0, 2.0, 3.0)]
    assert d == sorted(d) and d[0] > 0


def test_gram_ignores_arrangement():
    """What holds: the Gram matrix of a feature map is exactly invariant to permuting its positions. On
    images, convolutions are not permutation-equivariant, so only approximately: a mirrored image is far
    away in the perceptual distance but close in the Gram distance (relative to another image)."""
    torch.manual_seed(0)
    f = torch.randn(2, 8, 5, 7)
    perm = torch.randperm(35)
    shuffled = f.flatten(2)[:, :, perm].view_as(f)
    torch.testing.assert_close(gram_matrix(shuffled), gram_matrix(f))
    assert float(gram_distance([f], [shuffled]).max()) < 1e-10
    perceptual = PerceptualLoss()
    x, other = image_video("baboon.jpg"), image_video("fruits.jpg")
    mirrored = x.flip(-1)
    with torch.no_grad():
        assert float(gram_loss(x, mirrored, perceptual)) < 0.25 * float(gram_loss(x, other, perceptual))
        assert float(perceptual(x, mirrored)) > 0.25 * float(perceptual(x, other))


def test_flow_loss_follows_temporal_order():
    x = translating(t=5, size=48)
    shuffled = x[:, :, [0, 3, 1, 4, 2]]
    assert float(flow_loss(x, x)) == 0.0  # relative mode: exactly zero at a perfect reconstruction
    warp_same = float(flow_loss(x, x, mode="warp"))  # the flow itself compensates the translation
    warp_shuffled = float(flow_loss(x, shuffled, mode="warp"))
    assert warp_same < 0.01 and warp_shuffled > 10 * warp_same + 0.05
    assert float(flow_loss(x, shuffled)) > 0.05
    assert float(flow_loss(x[:, :, :1], x[:, :, :1] + 1)) == 0.0
    with pytest.raises(ConfigError):
        flow_loss(x, x, mode="raft")
