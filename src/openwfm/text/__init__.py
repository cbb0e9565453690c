"""Text encoders for cross-attention: MiniLM (offline default), T5 from a local path, a cache."""

from openwfm.text.encoder import (CachedEncoder, MiniLMEncoder, T5Encoder, TextEncoder, TextError, drop_text,
                                  make_encoder, sentence_embeddings)

__all__ = ["CachedEncoder", "MiniLMEncoder", "T5Encoder", "TextEncoder", "TextError", "drop_text", "make_encoder",
           "sentence_embeddings"]
