"""Reading NVIDIA's released Cosmos tokenizers (TorchScript folders) without the real files: stand-ins
with NVIDIA's module tree (tests/nvidia_standin.py) are traced or scripted to .jit files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nvidia_standin import autoencoder, downs, save_traced
from openwfm.config import get_preset
from openwfm.tokenizer import Tokenizer, TokenizerConfig, TokenizerError, from_diffusers
from openwfm.tokenizer.nvidia import config_from_nvidia, extract_weights, from_nvidia, from_nvidia_key, load_jit

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # NVIDIA ships TorchScript


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


@pytest.mark.parametrize("name", ["CV4x8x8", "CV8x8x8", "CV8x16x16", "DV4x8x8", "DV8x8x8", "DV8x16x16"])
def test_paper_shapes_give_back_the_preset(name):
    ref = get_preset(TokenizerConfig, name)
    with torch.device("meta"):  # shapes only
        tok = Tokenizer(ref)
        sd = autoencoder(tok).state_dict()
    if ref.discrete:  # a scripted file lists FSQ's non-persistent buffers; an nn.Module's state_dict does not
        sd["quantizer._levels"] = torch.tensor(ref.levels, dtype=torch.int32)
    cfg = config_from_nvidia(sd, *downs(ref))
    assert cfg == ref
    assert from_nvidia(sd, cfg).keys() == tok.state_dict().keys()


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
