"""openwfm: an open platform for world foundation models (after NVIDIA Cosmos, 2025)."""

from openwfm.errors import OpenWFMError

__version__ = "0.1.0"
__all__ = ["OpenWFMError", "__version__"]
