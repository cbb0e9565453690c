"""NVIDIA's released Cosmos tokenizers (Cosmos-Tokenizer / Cosmos-1.0-Tokenizer), read from a local folder of
TorchScript files: ``encoder.jit``, ``decoder.jit``, ``autoencoder.jit`` and, for some continuous models,
``mean_std.pt``. Nothing here downloads anything. ``load_jit`` runs NVIDIA's own modules behind
``Tokenizer``'s ``encode`` / ``decode``; ``extract_weights`` gives a ``TokenizerConfig`` + openwfm state dict.

Trust: ``torch.jit.load`` executes the TorchScript code stored in the file; open only directories you trust
as much as running NVIDIA's code. (``mean_std.pt`` is read with ``weights_only=True``.)

Names follow NVIDIA's ``cosmos_tokenizer`` (github.com/NVIDIA/Cosmos-Tokenizer: ``modules/layers3d.py``
EncoderFactorized / DecoderFactorized; ``networks/*_video.py``: ``encoder_jit`` = Sequential(encoder,
quant_conv, distribution | quantizer), ``decoder_jit`` = Sequential([inv_quant,] post_quant_conv, decoder))
and agree with ``VAE_KEYS_RENAME_DICT`` of diffusers' ``scripts/convert_cosmos_to_diffusers.py``. Only the
3D (video) tokenizers share our layers; NVIDIA's image tokenizers (CI/DI) use 2D ones.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from openwfm.config import ConfigError
from openwfm.tokenizer.fsq import codes_to_indices
from openwfm.tokenizer.model import Tokenizer, TokenizerError
from openwfm.tokenizer.presets import TokenizerConfig

ENCODER, DECODER, AUTOENCODER, MEAN_STD = "encoder.jit", "decoder.jit", "autoencoder.jit", "mean_std.pt"
PAPER_LEVELS = [8, 8, 8, 5, 5, 5]
# Constant tensors of NVIDIA's Haar patcher and FSQ quantizer: non-persistent buffers, but a TorchScript
# module's state_dict() lists them anyway. They are not weights.
_BUFFERS = {"wavelets", "_arange", "patch_size_buffer", "_levels", "_basis", "implicit_codebook"}

# (regex, replacement) applied in order to "." + NVIDIA key; each fragment starts at a segment boundary.
_RULES: list[tuple[str, str]] = [
    (r"\.conv3d\.", "."),  # CausalConv3d keeps its nn.Conv3d in .conv3d
    (r"\.(norm\w*)\.norm\.", r".\1."),  # CausalNormalize keeps its GroupNorm in .norm
    (r"\.downsample\.conv1\.", ".resample.spatial."),  # CausalHybridDownsample3d
    (r"\.downsample\.conv2\.", ".resample.temporal."),
    (r"\.downsample\.conv3\.", ".resample.proj."),
    (r"\.upsample\.conv1\.", ".resample.temporal."),  # CausalHybridUpsample3d
    (r"\.upsample\.conv2\.", ".resample.spatial."),
    (r"\.upsample\.conv3\.", ".resample.proj."),
    (r"\.(conv_in|conv_out|conv1|conv2)\.0\.", r".\1.spatial."),  # Sequential((1,3,3) conv, (3,1,1) conv)
    (r"\.(conv_in|conv_out|conv1|conv2)\.1\.", r".\1.temporal."),
    (r"\.mid\.block_1\.", ".mid.block1."),
    (r"\.mid\.block_2\.", ".mid.block2."),
    (r"\.mid\.attn_1\.0\.", ".mid.space_attn."),  # Sequential(CausalAttnBlock, CausalTemporalAttnBlock)
    (r"\.mid\.attn_1\.1\.", ".mid.time_attn."),
    (r"\.attn\.(\d+)\.0\.", r".space_attn.\1."),
    (r"\.attn\.(\d+)\.1\.", r".time_attn.\1."),
    (r"\.block\.(\d+)\.", r".blocks.\1."),
    (r"\.nin_shortcut\.", ".skip."),
    (r"\.proj_out\.", ".out."),
]


def from_nvidia_key(key: str, num_levels: int) -> str:
    """One NVIDIA parameter name -> ours. NVIDIA's ``decoder.up[k]`` is level k counted from the highest
    resolution (built with ``insert(0, ...)``); ours runs lowest resolution first."""
    k = "." + key
    for pattern, repl in _RULES:
        k = re.sub(pattern, repl, k)
    k = k[1:]
    m = re.match(r"decoder\.up\.(\d+)\.", k)
    if m:
        k = f"decoder.up.{num_levels - 1 - int(m.group(1))}." + k[m.end():]
    return k


# ---------------------------------------------------------------------- running NVIDIA's modules
@dataclass
class JITTokenizer:
    """NVIDIA's TorchScript encoder / decoder with ``Tokenizer``'s API. Continuous: ``encode`` -> latent.
    Discrete: ``encode`` -> (indices int64, codes); ``decode`` takes indices or FSQ codes. No gradients."""

    directory: Path
    encoder: nn.Module | None
    decoder: nn.Module | None
    discrete: bool
    levels: list[int] | None  # FSQ levels (discrete only)
    latents_mean: torch.Tensor | None  # from mean_std.pt, as stored
    latents_std: torch.Tensor | None

    def encode(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.encoder is None:
            raise TokenizerError(f"{self.directory}: no {ENCODER}, so this tokenizer can only decode")
        with torch.no_grad():
            out = self.encoder(x)
        if isinstance(out, torch.Tensor):
            return out
        if self.discrete:  # FSQuantizer: (indices, codes, dummy loss)
            return out[0].long(), out[1]
        return out[0]  # IdentityDistribution: (latent, (zeros, zeros))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise TokenizerError(f"{self.directory}: no {DECODER}, so this tokenizer can only encode")
        if self.discrete and z.is_floating_point():  # NVIDIA's discrete decoder takes indices
            if self.levels is None:
                raise TokenizerError(f"{self.directory}: FSQ levels unknown; decode indices, not codes")
            z = codes_to_indices(z.movedim(1, -1), self.levels)
        with torch.no_grad():
            return self.decoder(z)


def load_jit(directory: str | Path, device: str | torch.device = "cpu") -> JITTokenizer:
    """Load ``encoder.jit`` and/or ``decoder.jit`` (whichever exist) from a trusted local directory."""
    d = _check_dir(directory)
    enc = _load(d / ENCODER, device) if (d / ENCODER).is_file() else None
    dec = _load(d / DECODER, device) if (d / DECODER).is_file() else None
    if enc is None and dec is None:
        raise TokenizerError(f"{d}: neither {ENCODER} nor {DECODER} found; point at the folder of a released "
                             f"Cosmos tokenizer (e.g. a local copy of nvidia/Cosmos-1.0-Tokenizer-CV8x8x8)")
    roots = [m for m in (enc, dec) if m is not None]
    discrete = any(name in ("quantizer", "inv_quant") for m in roots for name, _ in m.named_children())
    levels = next((b.tolist() for m in roots for n, b in m.named_buffers() if n.endswith("._levels")), None)
    mean, std = load_mean_std(d)
    return JITTokenizer(d, enc, dec, discrete, levels if discrete else None,
                        None if mean is None else mean.to(device), None if std is None else std.to(device))


def load_mean_std(directory: str | Path) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(mean, std) latent statistics from ``mean_std.pt`` (read with ``weights_only=True``), or (None, None)."""
    path = Path(directory) / MEAN_STD
    if not path.is_file():
        return None, None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise TokenizerError(f"{path}: cannot read it with torch.load(weights_only=True): {e}") from e
    if isinstance(obj, dict):
        obj = (obj.get("mean"), obj.get("std"))
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj)):
        raise TokenizerError(f"{path}: expected a (mean, std) pair of tensors, got {type(obj).__name__}")
    return obj[0].float(), obj[1].float()


# ---------------------------------------------------------------------- weights into openwfm
def extract_weights(directory: str | Path) -> tuple[TokenizerConfig, dict[str, torch.Tensor]]:
    """Config and openwfm state dict from ``encoder.jit`` + ``decoder.jit`` (or ``autoencoder.jit``)."""
    d = _check_dir(directory)
    if (d / ENCODER).is_file() and (d / DECODER).is_file():
        roots = [_load(d / ENCODER, "cpu"), _load(d / DECODER, "cpu")]
        encode = roots[0]
    elif (d / AUTOENCODER).is_file():
        roots = [_load(d / AUTOENCODER, "cpu")]
        encode = getattr(roots[0], "encoder", None)
    else:
        raise TokenizerError(f"{d}: extracting weights needs {ENCODER} and {DECODER}, or {AUTOENCODER}; found "
                             f"{sorted(p.name for p in d.glob('*.jit')) or 'no .jit file'}")
    sd: dict[str, torch.Tensor] = {}
    for root in roots:
        sd.update({k: v.detach().cpu() for k, v in root.state_dict().items()})
    arch = _architecture(sd, d)  # first, so that foreign files fail with the clearest message
    downs = _downs_from_flags(roots)
    if downs is None:
        if encode is None:
            raise TokenizerError(f"{d}: cannot tell the compression (no {ENCODER} to run); add {ENCODER}")
        downs = _downs_from_probe(encode, arch, sd["encoder.conv_in.0.conv3d.weight"].dtype, d)
    cfg = config_from_nvidia(sd, *downs, source=d)
    _check_decoder_flags(roots, cfg, d)
    mean, std = load_mean_std(d)
    if mean is not None:  # flattened as stored; diffusers reads them back as view(1, C, -1, 1, 1)
        cfg.latents_mean, cfg.latents_std = mean.flatten().tolist(), std.flatten().tolist()
        _validate(cfg, d)
    return cfg, from_nvidia(sd, cfg, source=d)


def config_from_nvidia(state_dict: dict[str, torch.Tensor], spatial_downs: int, temporal_downs: int,
                       source: object = "state dict") -> TokenizerConfig:
    """Our config from NVIDIA's tensor shapes plus the number of spatial / temporal downsampling steps
    (which shapes cannot show: a hybrid resampler has the same convs whichever axes it uses)."""
    cfg = _architecture(state_dict, source)
    p = cfg.patch_size
    cfg.spatial_compression, cfg.temporal_compression = p * 2 ** spatial_downs, p * 2 ** temporal_downs
    attn = {i for i in range(len(cfg.channels_mult)) if f"encoder.down.{i}.attn.0.0.q.conv3d.weight" in state_dict}
    if {i for i, plan in enumerate(cfg.down_plan()) if plan.attention} != attn:
        base = 2 ** (len(cfg.channels_mult) + 4)  # a nominal size that puts attention exactly where it is
        cfg.resolution = base * p
        cfg.attn_resolutions = sorted((base >> i for i in attn), reverse=True)
    _validate(cfg, source)
    return cfg


def from_nvidia(state_dict: dict[str, torch.Tensor], cfg: TokenizerConfig,
                source: object = "state dict") -> dict[str, torch.Tensor]:
    """NVIDIA state dict -> ``Tokenizer(cfg)`` state dict (same tensors). Drops the patcher / FSQ constants
    and the convs of hybrid resamplers that skip an axis (NVIDIA builds all three convs regardless)."""
    with torch.device("meta"):
        ref = Tokenizer(cfg).state_dict()
    out, unexpected = {}, []
    for key, value in state_dict.items():
        if key.rsplit(".", 1)[-1] in _BUFFERS:
            continue
        new = from_nvidia_key(key, len(cfg.channels_mult))
        if new in ref:
            if ref[new].shape != value.shape:
                raise TokenizerError(f"{source}: {key} has shape {tuple(value.shape)}, the inferred {cfg.kind} "
                                     f"needs {tuple(ref[new].shape)} for {new}")
            out[new] = value
        elif ".resample." not in new:
            unexpected.append(key)
    missing = sorted(set(ref) - set(out))
    if unexpected or missing:
        raise TokenizerError(f"{source}: weights do not fit the inferred {cfg.kind} tokenizer; unexpected "
                             f"{unexpected[:5]}, missing {missing[:5]} ({len(unexpected)} / {len(missing)} in all)")
    return out


# ---------------------------------------------------------------------- helpers
def _check_dir(directory: str | Path) -> Path:
    d = Path(directory)
    if not d.is_dir():
        raise TokenizerError(f"{d}: no such directory; pass the local folder that holds NVIDIA's {ENCODER} / "
                             f"{DECODER} (openwfm never downloads them)")
    return d


def _load(path: Path, device: str | torch.device) -> nn.Module:
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in torch, but it is what NVIDIA released
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:  # noqa: BLE001 - torch raises several types for a bad archive
        raise TokenizerError(f"{path}: torch.jit.load cannot read it ({type(e).__name__}: {e})") from e


def _need(sd: dict[str, torch.Tensor], key: str, source: object) -> torch.Tensor:
    if key not in sd:
        raise TokenizerError(f"{source}: no tensor '{key}'; this is not a Cosmos video tokenizer in NVIDIA's "
                             f"EncoderFactorized / DecoderFactorized layout (image tokenizers CI/DI use 2D layers)")
    return sd[key]


def _architecture(sd: dict[str, torch.Tensor], source: object) -> TokenizerConfig:
    """Everything but the compression, from tensor shapes."""
    w_in = _need(sd, "encoder.conv_in.0.conv3d.weight", source)
    channels, packed = w_in.shape[0], w_in.shape[1]
    if "encoder.patcher3d.patch_size_buffer" in sd:
        p = int(sd["encoder.patcher3d.patch_size_buffer"].flatten()[0])
    else:  # released models take RGB: packed = 3·p³
        p = next((q for q in (1, 2, 4, 8, 16) if 3 * q ** 3 == packed), 0)
    if p < 1 or packed % p ** 3:
        raise TokenizerError(f"{source}: encoder.conv_in takes {packed} channels, which is not "
                             f"in_channels·patch_size³ for any patch size; not a Cosmos tokenizer")
    n_levels = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))), default=-1)
    mult = []
    for i in range(n_levels):
        width = _need(sd, f"encoder.down.{i}.block.0.conv1.0.conv3d.weight", source).shape[0]
        if width % channels:
            raise TokenizerError(f"{source}: level {i} width {width} is not a multiple of {channels}")
        mult.append(width // channels)
    blocks = len({m.group(1) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))})
    z = _need(sd, "encoder.conv_out.1.conv3d.weight", source).shape[0]
    latent = _need(sd, "quant_conv.conv3d.weight", source).shape[0]
    post = _need(sd, "post_quant_conv.conv3d.weight", source).shape
    dec_z = _need(sd, "decoder.conv_in.0.conv3d.weight", source).shape[1]
    if post[1] != latent or post[0] != z or dec_z != z:
        raise TokenizerError(f"{source}: encoder gives {z} channels but the decoder takes {dec_z} (post_quant_conv "
                             f"{tuple(post[:2])}); only z_factor=1 tokenizers (all released ones) are supported")
    out = _need(sd, "decoder.conv_out.1.conv3d.weight", source).shape[0]
    if any(k.startswith("quantizer.layers.") for k in sd):
        raise TokenizerError(f"{source}: residual FSQ (several quantizer layers) is not supported")
    lv = sd.get("quantizer._levels", sd.get("inv_quant.quantizer._levels"))
    discrete = lv is not None or any(k.startswith(("quantizer.", "inv_quant.")) for k in sd)
    levels = [int(v) for v in lv.tolist()] if lv is not None else list(PAPER_LEVELS)
    return TokenizerConfig(in_channels=packed // p ** 3, out_channels=out // p ** 3, channels=channels,
                           channels_mult=mult, num_res_blocks=blocks, patch_size=p, spatial_compression=p,
                           temporal_compression=p, z_channels=z, latent_channels=latent, discrete=discrete,
                           levels=levels)


def _downs_from_flags(roots: list[nn.Module]) -> tuple[int, int] | None:
    """(spatial, temporal) downsampling steps from the resamplers' flags; scripted files keep them,
    traced ones do not (then None)."""
    flags = [(bool(m.spatial_down), bool(m.temporal_down)) for root in roots for name, m in root.named_modules()
             if re.fullmatch(r"encoder\.down\.\d+\.downsample", name) and hasattr(m, "spatial_down")]
    return (sum(s for s, _ in flags), sum(t for _, t in flags)) if flags else None


def _downs_from_probe(encode: Callable, cfg: TokenizerConfig, dtype: torch.dtype | None,
                      source: object) -> tuple[int, int]:
    """Run the encoder once on zeros and read the compression off the latent's shape."""
    reach = cfg.patch_size * 2 ** (len(cfg.channels_mult) - 1)  # the largest compression the levels allow
    x = torch.zeros(1, cfg.in_channels, 1 + reach, 2 * reach, 2 * reach, dtype=dtype)
    try:
        with torch.no_grad():
            out = encode(x)
    except Exception as e:  # noqa: BLE001 - whatever the TorchScript code raises
        raise TokenizerError(f"{source}: running the encoder to measure its compression failed: {e}") from e
    y = out if isinstance(out, torch.Tensor) else out[0]  # latent (B,C,T,H,W) or FSQ indices (B,T,H,W)
    s, t = 2 * reach // y.shape[-1], reach // max(1, y.shape[-3] - 1)
    log_p = int(math.log2(cfg.patch_size))
    return int(math.log2(s)) - log_p, int(math.log2(t)) - log_p


def _check_decoder_flags(roots: list[nn.Module], cfg: TokenizerConfig, source: object) -> None:
    """Where the decoder's resampler flags survive, they must match ``up_plan`` (NVIDIA's legacy_mode
    decoders upsample time at other levels and are not supported)."""
    plan = cfg.up_plan()
    for root in roots:
        for name, m in root.named_modules():
            mt = re.fullmatch(r"decoder\.up\.(\d+)\.upsample", name)
            if mt and hasattr(m, "spatial_up"):
                want = plan[len(plan) - 1 - int(mt.group(1))]
                if (bool(m.spatial_up), bool(m.temporal_up)) != (want.spatial, want.temporal):
                    raise TokenizerError(f"{source}: {name} upsamples (spatial={bool(m.spatial_up)}, temporal="
                                         f"{bool(m.temporal_up)}), not as openwfm's {cfg.kind} decoder does "
                                         f"(a legacy_mode decoder?)")


def _validate(cfg: TokenizerConfig, source: object) -> None:
    try:
        cfg.validate()
    except ConfigError as e:
        raise TokenizerError(f"{source}: the tensor shapes give no valid tokenizer: {e}") from e
