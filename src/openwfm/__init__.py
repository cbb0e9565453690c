"""openwfm: an open platform for world foundation models (after NVIDIA Cosmos, 2025)."""

from openwfm.errors import OpenWFMError
from openwfm.version import __version__

__all__ = ["ARPipeline", "OpenWFMError", "WorldPipeline", "__version__", "from_pretrained"]


def __getattr__(name: str):
    """The public entry points, imported on first use (``import openwfm`` stays light): ``WorldPipeline``,
    ``ARPipeline`` and ``from_pretrained`` (any model by shipped name or path, ``openwfm.hub``)."""
    if name == "WorldPipeline":
        from openwfm.pipelines.world import WorldPipeline

        return WorldPipeline
    if name == "ARPipeline":
        from openwfm.pipelines.autoregressive import ARPipeline

        return ARPipeline
    if name == "from_pretrained":
        from openwfm.hub import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'openwfm' has no attribute {name!r}")
