"""Cosmos causal tokenizers (design.md section 2: tokenizer/): Haar patcher, causal 3D blocks, encoder /
decoder, FSQ, presets CI/CV/DI/DV, and diffusers weight conversion."""

from openwfm.tokenizer.convert import config_from_diffusers, config_to_diffusers, from_diffusers, to_diffusers
from openwfm.tokenizer.fsq import codebook_size, codes_to_indices, fsq_bound, fsq_quantize, indices_to_codes
from openwfm.tokenizer.haar import haar_dwt3d, haar_idwt3d, haar_patch, haar_unpatch
from openwfm.tokenizer.model import Decoder, Encoder, Tokenizer, TokenizerError, num_params, pad_frames
from openwfm.tokenizer.nvidia import JITTokenizer, extract_weights, load_jit
from openwfm.tokenizer.presets import TokenizerConfig

__all__ = ["TokenizerConfig", "Tokenizer", "Encoder", "Decoder", "TokenizerError", "pad_frames", "num_params",
           "haar_patch", "haar_unpatch", "haar_dwt3d", "haar_idwt3d", "fsq_quantize", "fsq_bound",
           "codes_to_indices", "indices_to_codes", "codebook_size", "from_diffusers", "to_diffusers",
           "config_from_diffusers", "config_to_diffusers", "load_jit", "extract_weights", "JITTokenizer"]
