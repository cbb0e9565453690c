"""Reading NVIDIA's released Cosmos tokenizers (TorchScript folders) without the real files.

The stand-ins rebuild NVIDIA's module tree (github.com/NVIDIA/Cosmos-Tokenizer,
cosmos_tokenizer/modules/layers3d.py: EncoderFactorized / DecoderFactorized, and networks/*_video.py:
encoder_jit / decoder_jit) around a tiny openwfm tokenizer's own tensors, following NVIDIA's constructor
logic (not openwfm's plans), then trace or script it to .jit files.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from openwfm.config import get_preset
from openwfm.tokenizer import Tokenizer, TokenizerConfig, TokenizerError, from_diffusers, indices_to_codes
from openwfm.tokenizer.nvidia import extract_weights, from_nvidia_key, load_jit

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # NVIDIA ships TorchScript
KERNELS = {"spatial": (1, 3, 3), "temporal": (3, 1, 1), "proj": (1, 1, 1)}


# ---------------------------------------------------------------------- NVIDIA's tree around our tensors
def _holder(**tensors: nn.Parameter) -> nn.Module:
    m = nn.Module()
    for name, t in tensors.items():
        setattr(m, name, t)
    return m


def _conv(ours: nn.Conv3d | None, channels: int = 0, axis: str = "proj") -> nn.Module:
    """CausalConv3d keeps an nn.Conv3d in .conv3d; ``ours=None``: a conv NVIDIA builds but never runs."""
    m = nn.Module()
    m.conv3d = nn.Conv3d(channels, channels, KERNELS[axis]) if ours is None else _holder(weight=ours.weight,
                                                                                         bias=ours.bias)
    return m


def _norm(ours: nn.GroupNorm) -> nn.Module:  # CausalNormalize keeps a GroupNorm in .norm
    m = nn.Module()
    m.norm = _holder(weight=ours.weight, bias=ours.bias)
    return m


def _seq(*mods: nn.Module) -> nn.ModuleList:  # NVIDIA's nn.Sequential (same child names; scriptable here)
    return nn.ModuleList(mods)


def _factorized(ours) -> nn.ModuleList:
    return _seq(_conv(ours.spatial), _conv(ours.temporal))


def _res(ours) -> nn.Module:  # CausalResnetBlockFactorized3d
    m = nn.Module()
    m.norm1, m.conv1, m.norm2, m.conv2 = _norm(ours.norm1), _factorized(ours.conv1), _norm(ours.norm2), \
        _factorized(ours.conv2)
    if ours.skip is not None:
        m.nin_shortcut = _conv(ours.skip)
    return m


def _attn(space, time) -> nn.ModuleList:  # Sequential(CausalAttnBlock, CausalTemporalAttnBlock)
    def block(ours):
        m = nn.Module()
        m.norm, m.q, m.k, m.v, m.proj_out = _norm(ours.norm), _conv(ours.q), _conv(ours.k), _conv(ours.v), \
            _conv(ours.out)
        return m
    return _seq(block(space), block(time))


def _mid(ours) -> nn.Module:
    m = nn.Module()
    m.block_1, m.attn_1, m.block_2 = _res(ours.block1), _attn(ours.space_attn, ours.time_attn), _res(ours.block2)
    return m


def _hybrid(ours, channels: int, order: tuple[str, ...], used: dict[str, bool], **flags: bool) -> nn.Module:
    """CausalHybridDown/Upsample3d: conv1..conv3 always exist; only the used ones hold our tensors."""
    m = nn.Module()
    for i, axis in enumerate(order, 1):
        theirs = None if ours is None else getattr(ours, axis)
        assert (theirs is not None) == used[axis], f"openwfm disagrees with NVIDIA on {axis} resampling"
        setattr(m, f"conv{i}", _conv(theirs, channels, axis))
    for name, value in flags.items():
        setattr(m, name, value)
    return m


def _patcher(p: int, with_size: bool) -> nn.Module:
    m = nn.Module()
    m.register_buffer("wavelets", torch.full((2,), 0.5 ** 0.5), persistent=False)
    m.register_buffer("_arange", torch.arange(2), persistent=False)
    if with_size:
        m.register_buffer("patch_size_buffer", torch.full((1,), p, dtype=torch.int32), persistent=False)
    return m


def _quantizer(levels: list[int]) -> nn.Module:  # FSQuantizer: constants only
    m = nn.Module()
    m.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
    m.register_buffer("_basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0).int(), persistent=False)
    m.register_buffer("implicit_codebook", indices_to_codes(torch.arange(math.prod(levels)), levels),
                      persistent=False)
    return m


def _downs(cfg: TokenizerConfig) -> tuple[int, int]:
    log = lambda n: int(math.log2(n))  # noqa: E731
    return log(cfg.spatial_compression) - log(cfg.patch_size), log(cfg.temporal_compression) - log(cfg.patch_size)


def _encoder(tok: Tokenizer) -> nn.Module:
    cfg, enc, n = tok.cfg, tok.encoder, len(tok.cfg.channels_mult)
    n_s, n_t = _downs(cfg)
    m = nn.Module()
    m.patcher3d, m.conv_in, m.down = _patcher(cfg.patch_size, True), _factorized(enc.conv_in), nn.ModuleList()
    for i, stage in enumerate(enc.down):
        level = nn.Module()
        level.block = nn.ModuleList(_res(b) for b in stage.blocks)
        level.attn = nn.ModuleList(_attn(s, t) for s, t in zip(stage.space_attn, stage.time_attn))
        if i != n - 1:
            s, t = i < n_s, i < n_t
            level.downsample = _hybrid(stage.resample, cfg.channels * cfg.channels_mult[i],
                                       ("spatial", "temporal", "proj"), dict(spatial=s, temporal=t, proj=s or t),
                                       spatial_down=s, temporal_down=t)
        m.down.append(level)
    m.mid, m.norm_out, m.conv_out = _mid(enc.mid), _norm(enc.norm_out), _factorized(enc.conv_out)
    return m


def _decoder(tok: Tokenizer) -> nn.Module:
    cfg, dec, n = tok.cfg, tok.decoder, len(tok.cfg.channels_mult)
    n_s, n_t = _downs(cfg)
    m = nn.Module()
    m.conv_in, m.mid, up = _factorized(dec.conv_in), _mid(dec.mid), [None] * n
    for i_level in reversed(range(n)):  # NVIDIA: up[i_level], level 0 = highest resolution
        stage = dec.up[n - 1 - i_level]
        level = nn.Module()
        level.block = nn.ModuleList(_res(b) for b in stage.blocks)
        level.attn = nn.ModuleList(_attn(s, t) for s, t in zip(stage.space_attn, stage.time_attn))
        if i_level != 0:
            rev = n - i_level - 1  # non-legacy mode, as in the released configs
            t = 0 < rev < n_t + 1
            s = t or (rev < n_s and n_s > n_t)
            level.upsample = _hybrid(stage.resample, cfg.channels * cfg.channels_mult[i_level],
                                     ("temporal", "spatial", "proj"), dict(spatial=s, temporal=t, proj=s or t),
                                     spatial_up=s, temporal_up=t)
        up[i_level] = level
    m.up, m.unpatcher3d = nn.ModuleList(up), _patcher(cfg.patch_size, False)
    m.norm_out, m.conv_out = _norm(dec.norm_out), _factorized(dec.conv_out)
    return m


class _EncoderJit(nn.Module):
    """encoder_jit(): encoder, quant_conv, then distribution (continuous) or quantizer (FSQ)."""

    def __init__(self, tok: Tokenizer):
        super().__init__()
        self.encoder, self.quant_conv = _encoder(tok), _conv(tok.quant_conv)
        if tok.cfg.discrete:
            self.quantizer = _quantizer(tok.cfg.levels)
        else:
            self.distribution = nn.Module()
        self.tok = [tok]  # a plain list: its own parameter names stay out of the state dict

    def forward(self, x: torch.Tensor):
        if self.tok[0].cfg.discrete:
            indices, codes = self.tok[0].encode(x)
            return indices.int(), codes, codes.new_zeros(1)
        z = self.tok[0].encode(x)
        return z, (z.new_zeros(1), z.new_zeros(1))


class _DecoderJit(nn.Module):
    """decoder_jit(): [inv_quant,] post_quant_conv, decoder."""

    def __init__(self, tok: Tokenizer):
        super().__init__()
        if tok.cfg.discrete:
            self.inv_quant = nn.Module()
            self.inv_quant.quantizer = _quantizer(tok.cfg.levels)
        self.post_quant_conv, self.decoder = _conv(tok.post_quant_conv), _decoder(tok)
        self.tok = [tok]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tok[0].decode(z)


def save_traced(tok: Tokenizer, directory: Path, x: torch.Tensor) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings from our input checks
        enc = torch.jit.trace(_EncoderJit(tok), x, check_trace=False)
        z = tok.encode(x)
        dec = torch.jit.trace(_DecoderJit(tok), z[0] if tok.cfg.discrete else z, check_trace=False)
    enc.save(str(directory / "encoder.jit"))
    dec.save(str(directory / "decoder.jit"))


def autoencoder(tok: Tokenizer) -> nn.Module:
    """Weights and resampler flags only: scripted, it keeps the bool flags (a traced module would not)."""
    m = nn.Module()
    m.encoder, m.decoder = _encoder(tok), _decoder(tok)
    m.quant_conv, m.post_quant_conv = _conv(tok.quant_conv), _conv(tok.post_quant_conv)
    return m


# ---------------------------------------------------------------------- helpers
def tiny(name: str, seed: int = 0) -> Tokenizer:
    torch.manual_seed(seed)
    tok = Tokenizer(get_preset(TokenizerConfig, f"tiny-{name}")).eval()
    with torch.no_grad():
        for p in tok.parameters():  # norms' affine weights stop being exactly 1 / 0
            p.add_(torch.randn_like(p) * 0.05)
    return tok


def video(t: int, s: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, t, s, s, generator=g) * 2 - 1


def same_shape(cfg: TokenizerConfig, ref: TokenizerConfig) -> None:
    fields = ("kind", "in_channels", "out_channels", "channels", "channels_mult", "num_res_blocks", "patch_size",
              "z_channels", "latent_channels", "discrete")
    assert [getattr(cfg, f) for f in fields] == [getattr(ref, f) for f in fields]
    assert cfg.down_plan() == ref.down_plan() and cfg.up_plan() == ref.up_plan()
    assert not cfg.discrete or cfg.levels == ref.levels


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- tests
def test_key_names_agree_with_diffusers_script():
    # pairs read off diffusers' VAE_KEYS_RENAME_DICT, then through openwfm.tokenizer.convert
    assert from_nvidia_key("encoder.down.0.block.1.conv1.0.conv3d.weight", 3) == \
        "encoder.down.0.blocks.1.conv1.spatial.weight"
    assert from_nvidia_key("decoder.up.0.block.2.nin_shortcut.conv3d.bias", 3) == "decoder.up.2.blocks.2.skip.bias"
    assert from_nvidia_key("decoder.up.2.upsample.conv1.conv3d.weight", 3) == "decoder.up.0.resample.temporal.weight"
    assert from_nvidia_key("encoder.mid.attn_1.1.proj_out.conv3d.weight", 3) == "encoder.mid.time_attn.out.weight"
    assert from_nvidia_key("encoder.mid.attn_1.0.norm.norm.weight", 3) == "encoder.mid.space_attn.norm.weight"
    assert from_nvidia_key("decoder.norm_out.norm.bias", 3) == "decoder.norm_out.bias"
    assert from_nvidia_key("post_quant_conv.conv3d.weight", 3) == "post_quant_conv.weight"


# NVIDIA -> diffusers renames of diffusers' scripts/convert_cosmos_to_diffusers.py (VAE_KEYS_RENAME_DICT),
# applied in this order with str.replace; written for the released 3-level models (no attention in levels).
DIFFUSERS_RENAMES = [
    ("down.0", "down_blocks.0"), ("down.1", "down_blocks.1"), ("down.2", "down_blocks.2"),
    ("up.0", "up_blocks.2"), ("up.1", "up_blocks.1"), ("up.2", "up_blocks.0"), (".block.", ".resnets."),
    ("downsample", "downsamplers.0"), ("upsample", "upsamplers.0"), ("mid.block_1", "mid_block.resnets.0"),
    ("mid.attn_1.0", "mid_block.attentions.0"), ("mid.attn_1.1", "mid_block.temp_attentions.0"),
    ("mid.block_2", "mid_block.resnets.1"), (".q.conv3d", ".to_q"), (".k.conv3d", ".to_k"),
    (".v.conv3d", ".to_v"), (".proj_out.conv3d", ".to_out.0"), (".0.conv3d", ".conv_s"), (".1.conv3d", ".conv_t"),
    ("conv1.conv3d", "conv1"), ("conv2.conv3d", "conv2"), ("conv3.conv3d", "conv3"),
    ("nin_shortcut.conv3d", "conv_shortcut"), ("quant_conv.conv3d", "quant_conv"),
    ("post_quant_conv.conv3d", "post_quant_conv"),
]


def test_key_names_compose_with_diffusers_conversion():
    cfg = get_preset(TokenizerConfig, "tiny-CV8x16x16")
    cfg.attn_resolutions = []  # like the released models: attention only in the mid blocks
    tok = Tokenizer(cfg)
    ours = tok.state_dict()
    seen = set()
    for key in autoencoder(tok).state_dict():
        new = from_nvidia_key(key, 3)
        if new not in ours:  # a conv NVIDIA builds but never runs
            assert ".resample." in new
            continue
        via = key
        for old, rep in DIFFUSERS_RENAMES:
            via = via.replace(old, rep)
        assert from_diffusers({via: ours[new]}) == {new: ours[new]}, key
        seen.add(new)
    assert seen == set(ours)


@pytest.mark.parametrize("name,frames,size", [("CV8x16x16", 9, 32), ("DV4x8x8", 9, 16)])
def test_jit_equals_tokenizer_with_extracted_weights(tmp_path, name, frames, size):
    tok, x = tiny(name), video(frames, size)
    save_traced(tok, tmp_path, x)
    cfg, sd = extract_weights(tmp_path)  # traced files: compression measured by running the encoder
    same_shape(cfg, tok.cfg)
    assert sd.keys() == tok.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in tok.state_dict().items())
    ours = Tokenizer(cfg).eval()
    ours.load_state_dict(sd)
    jit = load_jit(tmp_path)
    assert jit.discrete == tok.cfg.discrete and jit.latents_mean is None
    with torch.no_grad():
        if tok.cfg.discrete:
            (idx, codes), (idx_ref, codes_ref) = jit.encode(x), ours.encode(x)
            assert idx.dtype == torch.int64 and torch.equal(idx, idx_ref) and jit.levels == tok.cfg.levels
            close(codes, codes_ref)
            close(jit.decode(idx_ref), ours.decode(idx_ref))
            close(jit.decode(codes_ref), ours.decode(idx_ref))  # codes go in as their indices
        else:
            z = jit.encode(x)
            close(z, ours.encode(x))
            close(jit.decode(z), ours.decode(z))


def test_scripted_autoencoder_flags_and_mean_std(tmp_path):
    tok = tiny("CV8x16x16")
    torch.jit.script(autoencoder(tok)).save(str(tmp_path / "autoencoder.jit"))
    mean, std = torch.randn(1, 16, 2, 1, 1), torch.rand(1, 16, 2, 1, 1) + 0.5
    torch.save((mean, std), tmp_path / "mean_std.pt")
    cfg, sd = extract_weights(tmp_path)  # scripted: compression read from the resamplers' flags
    same_shape(cfg, tok.cfg)
    assert all(torch.equal(sd[k], v) for k, v in tok.state_dict().items())
    assert cfg.latents_mean == mean.flatten().tolist() and cfg.latents_std == std.flatten().tolist()
    with pytest.raises(TokenizerError, match="neither encoder.jit nor decoder.jit"):
        load_jit(tmp_path)  # running needs encoder.jit / decoder.jit


def test_legacy_decoder_flags_rejected(tmp_path):
    tok = tiny("CV8x16x16")
    m = autoencoder(tok)
    m.decoder.up[1].upsample.temporal_up = False  # NVIDIA's legacy_mode upsamples time elsewhere
    torch.jit.script(m).save(str(tmp_path / "autoencoder.jit"))
    with pytest.raises(TokenizerError, match="legacy_mode"):
        extract_weights(tmp_path)


def test_encoder_only_with_mean_std(tmp_path):
    tok, x = tiny("CV8x16x16"), video(9, 32)
    save_traced(tok, tmp_path, x)
    (tmp_path / "decoder.jit").unlink()
    torch.save({"mean": torch.zeros(16), "std": torch.ones(16)}, tmp_path / "mean_std.pt")
    jit = load_jit(tmp_path)
    assert torch.equal(jit.latents_std, torch.ones(16)) and jit.encode(x).shape == (1, 16, 2, 2, 2)
    with pytest.raises(TokenizerError, match="no decoder.jit"):
        jit.decode(torch.zeros(1, 16, 2, 2, 2))
    with pytest.raises(TokenizerError, match="needs encoder.jit and decoder.jit"):
        extract_weights(tmp_path)
    torch.save({"avg": 1}, tmp_path / "mean_std.pt")
    with pytest.raises(TokenizerError, match=r"\(mean, std\) pair"):
        load_jit(tmp_path)


def test_missing_and_unreadable_inputs(tmp_path):
    for fn in (load_jit, extract_weights):
        with pytest.raises(TokenizerError, match="nope: no such directory"):
            fn(tmp_path / "nope")
    with pytest.raises(TokenizerError, match="neither encoder.jit nor decoder.jit"):
        load_jit(tmp_path)
    (tmp_path / "decoder.jit").write_bytes(b"not a zip archive")
    with pytest.raises(TokenizerError, match="decoder.jit: torch.jit.load cannot read"):
        load_jit(tmp_path)


def _scripted(tensors: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    """A module whose state dict is exactly ``tensors`` (dotted names become submodules)."""
    root = nn.Module()
    for key, value in tensors.items():
        *path, leaf = key.split(".")
        m = root
        for part in path:
            if not hasattr(m, part):
                setattr(m, part, nn.Module())
            m = getattr(m, part)
        if value.is_floating_point():
            setattr(m, leaf, nn.Parameter(value))
        else:
            m.register_buffer(leaf, value)
    return torch.jit.script(root)


@pytest.mark.parametrize("tensors,match", [
    ({"linear.weight": torch.zeros(2, 2)}, "not a Cosmos video tokenizer"),
    ({"encoder.conv_in.0.conv3d.weight": torch.zeros(16, 5, 1, 3, 3)}, "takes 5 channels"),
    ({"encoder.conv_in.0.conv3d.weight": torch.zeros(16, 192, 1, 3, 3),
      "encoder.down.0.block.0.conv1.0.conv3d.weight": torch.zeros(24, 16, 1, 3, 3)}, "not a multiple of 16"),
])
def test_shapes_that_match_no_tokenizer(tmp_path, tensors, match):
    for name in ("encoder.jit", "decoder.jit"):
        _scripted(tensors).save(str(tmp_path / name))
    with pytest.raises(TokenizerError, match=match):
        extract_weights(tmp_path)


def test_mismatched_decoder_rejected(tmp_path):
    tok, other, x = tiny("CV8x16x16"), tiny("DV8x16x16"), video(9, 32)
    save_traced(tok, tmp_path, x)
    sd = {k: v for k, v in torch.jit.load(str(tmp_path / "decoder.jit")).state_dict().items()}
    sd["post_quant_conv.conv3d.weight"] = other.post_quant_conv.weight.detach()  # 6 latent channels, not 16
    _scripted(sd).save(str(tmp_path / "decoder.jit"))
    with pytest.raises(TokenizerError, match="z_factor=1"):
        extract_weights(tmp_path)
