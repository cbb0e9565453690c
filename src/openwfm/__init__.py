"""openwfm: an open platform for world foundation models (after NVIDIA Cosmos, 2025)."""

from openwfm.errors import OpenWFMError

__version__ = "0.1.0"
__all__ = ["OpenWFMError", "WorldPipeline", "__version__"]


def __getattr__(name: str):
    """The public pipeline, imported on first use (``import openwfm`` stays light)."""
    if name == "WorldPipeline":
        from openwfm.diffusion.pipeline import WorldPipeline

        return WorldPipeline
    raise AttributeError(f"module 'openwfm' has no attribute {name!r}")
