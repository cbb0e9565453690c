"""VGG-19 convolutional features from a LOCAL weights file (Simonyan & Zisserman, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", ICLR 2015; configuration E: 16 conv layers).

The paper's perceptual loss uses VGG-19 (Johnson et al. 2016; Zhang et al., LPIPS, CVPR 2018). No VGG
weights ship in any offline package, so the user passes a file: torchvision's ``vgg19-dcbb9e9d.pth`` layout
(``features.<i>.weight`` / ``.bias``; ``classifier.*`` is ignored) or the same keys without the
``features.`` prefix, as a ``.safetensors`` file or a torch file read with ``weights_only=True``. The network
is rebuilt here (torchvision is not a dependency) with the same ``nn.Sequential`` indices. Input: RGB in
[-1, 1], mapped to [0, 1] and normalized with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from openwfm.features.efficientnet import FeaturesError

CONFIG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")  # the last ReLU of each block


def _layer_indices() -> dict[str, int]:
    """``reluB_K`` -> index in the Sequential (block B, K-th conv of the block)."""
    names, index, block, conv = {}, 0, 1, 0
    for item in CONFIG_E:
        if item == "M":
            block, conv = block + 1, 0
            index += 1
        else:
            conv += 1
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


LAYER_INDEX = _layer_indices()
LAYERS = tuple(LAYER_INDEX)


def build_vgg19_features() -> nn.Sequential:
    """Randomly initialized VGG-19 ``features`` (conv 3x3 pad 1 + ReLU, max-pool 2x2), torchvision's indices."""
    layers, channels = [], 3
    for item in CONFIG_E:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


class VGG19Features(nn.Module):
    """Frozen VGG-19 feature extractor with the same ``features(x, layers)`` interface as EfficientNet-Lite0."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)

    def features(self, x: torch.Tensor, layers: tuple[str, ...] | list[str] = DEFAULT_LAYERS) -> list[torch.Tensor]:
        """Feature maps of ``x`` (N, 3, H, W) in [-1, 1] after the ReLUs named in ``layers``, in that order."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise FeaturesError(f"expected images of shape (N, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        unknown = [name for name in layers if name not in LAYER_INDEX]
        if unknown:
            raise FeaturesError(f"unknown VGG-19 layers {unknown}; choose from {LAYERS}")
        wanted = {LAYER_INDEX[name]: name for name in layers}
        h, out = ((x.float() + 1) / 2 - self.mean) / self.std, {}
        for index in range(max(wanted) + 1):
            h = self.body[index](h)
            if index in wanted:
                out[wanted[index]] = h
        return [out[name] for name in layers]


def _read_state(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


_CACHE: dict[tuple[str, str], VGG19Features] = {}


def load_vgg19(weights: str | os.PathLike | None, device: str | torch.device = "cpu") -> VGG19Features:
    """Frozen VGG-19 features from a local file, cached per (file, device)."""
    if weights is None:
        raise FeaturesError("the VGG-19 backbone needs a local weights file (no VGG weights ship offline): "
                            "pass the path of torchvision's vgg19-dcbb9e9d.pth or an equivalent .safetensors, "
                            "or use the packaged 'efficientnet-lite0' backbone")
    path = os.path.realpath(weights)
    key = (path, str(torch.device(device)))
    if key not in _CACHE:
        if not os.path.isfile(path):
            raise FeaturesError(f"VGG-19 weights {path} not found")
        state = _read_state(path)
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        body = build_vgg19_features()
        try:
            body.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise FeaturesError(f"{path} is not a VGG-19 state dict (torchvision layout expected): {e}") from e
        _CACHE[key] = VGG19Features(body).to(device)
    return _CACHE[key]
