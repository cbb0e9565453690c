"""Text: encoders for cross-attention (MiniLM offline default, T5 from a local path, a cache) and the
prompt upsampler (caption retrieval by default, a local LLM/VLM as the alternative)."""

from openwfm.text.caption_index import CaptionIndex, CaptionIndexError
from openwfm.text.encoder import (CachedEncoder, MiniLMEncoder, T5Encoder, TextEncoder, TextError, drop_text,
                                  make_encoder, mean_pool, sentence_embeddings)
from openwfm.text.upsampler import (LLMUpsampler, RetrievalUpsampler, UpsampleResult, upsample_video2world,
                                    video_caption)

__all__ = ["CachedEncoder", "CaptionIndex", "CaptionIndexError", "LLMUpsampler", "MiniLMEncoder", "RetrievalUpsampler",
           "T5Encoder", "TextEncoder", "TextError", "UpsampleResult", "drop_text", "make_encoder", "mean_pool",
           "sentence_embeddings", "upsample_video2world", "video_caption"]
