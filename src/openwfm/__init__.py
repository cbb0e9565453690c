"""openwfm: an open platform for world foundation models (after NVIDIA Cosmos, 2025)."""

from openwfm.errors import OpenWFMError
from openwfm.version import __version__

__all__ = ["OpenWFMError", "WorldPipeline", "__version__"]


def __getattr__(name: str):
    """The public pipeline, imported on first use (``import openwfm`` stays light)."""
    if name == "WorldPipeline":
        from openwfm.pipelines.world import WorldPipeline

        return WorldPipeline
    raise AttributeError(f"module 'openwfm' has no attribute {name!r}")
