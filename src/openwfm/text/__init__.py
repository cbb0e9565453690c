"""Text encoders for cross-attention: MiniLM (offline default), T5 from a local path, a cache."""

from openwfm.text.encoder import CachedEncoder, MiniLMEncoder, T5Encoder, TextEncoder, TextError, drop_text, make_encoder

__all__ = ["CachedEncoder", "MiniLMEncoder", "T5Encoder", "TextEncoder", "TextError", "drop_text", "make_encoder"]
