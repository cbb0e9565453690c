"""Cosmos tokenizer architecture: Haar, FSQ, shapes, causality, errors, and equivalence with diffusers."""

from __future__ import annotations

import pytest
import torch

from openwfm.config import ConfigError, get_preset, make_config, preset_names
from openwfm.tokenizer import (Tokenizer, TokenizerConfig, TokenizerError, codes_to_indices, config_from_diffusers,
                               config_to_diffusers, fsq_quantize, from_diffusers, haar_dwt3d, haar_idwt3d,
                               haar_patch, haar_unpatch, indices_to_codes, num_params, pad_frames, to_diffusers)

PAPER = ["CI8x8", "CI16x16", "DI8x8", "DI16x16", "CV4x8x8", "CV8x8x8", "CV8x16x16", "DV4x8x8", "DV8x8x8",
         "DV8x16x16"]
CV8X8X8_PARAMS = 105_653_696  # = diffusers AutoencoderKLCosmos() (0.42); see test_param_count_matches_diffusers


def tiny(name: str, seed: int = 0) -> Tokenizer:
    torch.manual_seed(seed)
    return Tokenizer(get_preset(TokenizerConfig, f"tiny-{name}")).eval()


def video(t: int, h: int = 32, w: int = 32, b: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


# ---------------------------------------------------------------------- Haar
def test_haar_inverse_video_and_image():
    x = video(17, 16, 24, b=2)
    y = haar_patch(x, 4)
    assert y.shape == (2, 3 * 64, 5, 4, 6)
    torch.testing.assert_close(haar_unpatch(y, 4), x, atol=1e-5, rtol=0)
    img = video(1, 8, 8)
    assert haar_patch(img, 4).shape == (1, 192, 1, 2, 2)
    torch.testing.assert_close(haar_unpatch(haar_patch(img, 4), 4), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(haar_unpatch(haar_patch(x, 2), 2), x, atol=1e-5, rtol=0)


def test_haar_bands():
    x = video(4, 4, 4)
    y = haar_dwt3d(x)
    # lll band: mean of each 2x2x2 block (filters 1/sqrt2, rescaled by 1/sqrt8 per level)
    torch.testing.assert_close(y[:, :3], torch.nn.functional.avg_pool3d(x, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(haar_idwt3d(y), x, atol=1e-6, rtol=0)
    const = torch.ones(1, 1, 2, 2, 2)
    assert torch.allclose(haar_dwt3d(const)[:, 1:], torch.zeros(1, 7, 1, 1, 1))  # no detail in a constant


# ---------------------------------------------------------------------- FSQ
def test_fsq_index_round_trip_all_codes():
    levels = [8, 8, 8, 5, 5, 5]
    idx = torch.arange(64000)
    codes = indices_to_codes(idx, levels)
    assert codes.shape == (64000, 6) and codes.min() == -1 and codes.max() == 1
    assert torch.equal(codes_to_indices(codes, levels), idx)
    # codes are fixed points of the quantizer's grid: quantizing any input lands on one of them
    z = torch.randn(1000, 6) * 3
    q = fsq_quantize(z, levels)
    assert torch.equal(indices_to_codes(codes_to_indices(q, levels), levels), q)


def test_fsq_straight_through_gradient():
    z = torch.randn(64, 6, requires_grad=True)
    fsq_quantize(z, [8, 8, 8, 5, 5, 5]).pow(2).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    model = tiny("DV4x8x8").train()
    recon, extras = model(video(5))
    recon.square().mean().backward()
    assert model.encoder.conv_in.spatial.weight.grad.abs().sum() > 0  # through the quantizer to the encoder
    assert extras["indices"].dtype == torch.int64 and extras["codes"].shape[1] == 6


# ---------------------------------------------------------------------- shapes and sizes
@pytest.mark.parametrize("name", PAPER)
def test_shape_laws_paper_presets(name):
    cfg = get_preset(TokenizerConfig, name)
    with torch.device("meta"):
        model = Tokenizer(cfg)
        t = 1 if cfg.is_image else 1 + 2 * cfg.temporal_compression
        x = torch.empty(2, 3, t, 2 * cfg.spatial_compression, 3 * cfg.spatial_compression)
        out = model.encode(x)
        lt, lh, lw = cfg.latent_shape(t, x.shape[3], x.shape[4])
        assert (lt, lh, lw) == ((1 if cfg.is_image else 3), 2, 3)
        if cfg.discrete:
            indices, codes = out
            assert indices.shape == (2, lt, lh, lw) and indices.dtype == torch.int64
            assert codes.shape == (2, 6, lt, lh, lw)
            assert model.decode(indices).shape == x.shape
        else:
            assert out.shape == (2, 16, lt, lh, lw)
        assert model.decode(codes if cfg.discrete else out).shape == x.shape


def test_paper_param_counts():
    counts = {}
    for name in PAPER:
        with torch.device("meta"):
            counts[name] = num_params(Tokenizer(get_preset(TokenizerConfig, name)))
    assert counts["CV8x8x8"] == CV8X8X8_PARAMS
    assert all(100e6 < n < 115e6 for n in counts.values()), counts  # ~105M (paper, sec. 4.3)


@pytest.mark.parametrize("name", ["CV4x8x8", "CV8x8x8", "DV8x16x16", "CI8x8", "DI16x16"])
def test_tiny_shapes(name):
    model = tiny(name)
    cfg = model.cfg
    t = 3 if cfg.is_image else 1 + cfg.temporal_compression
    s = cfg.spatial_compression
    x = video(t, 2 * s, s)
    with torch.no_grad():
        recon, extras = model(x)
    assert recon.shape == x.shape
    assert extras["latent"].shape == (1, cfg.latent_channels, *cfg.latent_shape(t, 2 * s, s))
    assert len(model.fsdp_units) == 2 * len(cfg.channels_mult) + 2


# ---------------------------------------------------------------------- causality
def test_causal_continuous():
    model = tiny("CV4x8x8")
    x = video(17, 16, 16)
    with torch.no_grad():
        short, full = model.encode(x[:, :, :9]), model.encode(x)
        assert short.shape[2] == 3 and full.shape[2] == 5
        torch.testing.assert_close(short, full[:, :, :3], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.decode(full[:, :, :3]), model.decode(full)[:, :, :9], atol=1e-5, rtol=0)


def test_causal_discrete():
    model = tiny("DV8x8x8")
    x = video(17, 16, 16)
    with torch.no_grad():
        (short, _), (full, _) = model.encode(x[:, :, :9]), model.encode(x)
    assert short.shape == (1, 2, 2, 2) and full.shape == (1, 3, 2, 2)
    assert torch.equal(short, full[:, :2])


# ---------------------------------------------------------------------- training hooks
def test_grad_checkpointing_same_gradients():
    x = video(5, 16, 16)
    grads = []
    for on in (False, True):
        model = tiny("CV4x8x8").train()
        model.grad_checkpointing = on
        assert model.grad_checkpointing is on
        model(x)[0].square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


# ---------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors():
    model = tiny("CV8x8x8")
    with pytest.raises(TokenizerError, match=r"17 or 25.*pad_frames"):
        model.encode(video(20))
    with pytest.raises(TokenizerError, match="4 channels"):
        model.encode(torch.zeros(1, 4, 9, 32, 32))
    bad = video(9)
    bad[0, 0, 3, 0, 0] = float("nan")
    with pytest.raises(TokenizerError, match="NaN"):
        model.encode(bad)
    with pytest.raises(TokenizerError, match="multiples of 8"):
        model.encode(video(9, 30, 32))
    with pytest.raises(TokenizerError, match="unsqueeze"):
        model.encode(torch.zeros(1, 3, 32, 32))
    padded = pad_frames(video(20), 8)
    assert padded.shape[2] == 25 and torch.equal(padded[:, :, -1], padded[:, :, 19])
    assert model.encode(padded).shape[2] == 4
    with pytest.raises(TokenizerError, match="float latents"):
        model.decode(torch.zeros(1, 2, 4, 4, dtype=torch.long))


def _blocks(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """Rows of t x s x s x C pixels of (B, C, T, H, W), the first frame repeated t times first (causal)."""
    x = torch.cat([x[:, :, :1].expand(-1, -1, t - 1, -1, -1), x], dim=2).movedim(1, -1)
    b, T, h, w, c = x.shape
    return x.reshape(b, T // t, t, h // s, s, w // s, s, c).permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, t * s * s * c)


@pytest.mark.parametrize("spatial,mult", [(4, "[1]"), (8, "[1,1]")])
def test_shortcut_starts_as_the_pca_of_its_clips(spatial, mult):
    """An untrained shortcut tokenizer's round trip equals the PCA round trip of its t x s x s pixel blocks
    (the best linear code of its shape, computed here from raw pixels, independently of the Haar patcher),
    also when the spatial compression goes past the patcher (CV4x8x8); it stays causal, and trains: its
    convolutional paths get gradients."""
    cfg = make_config(TokenizerConfig, preset="tiny-CV4x8x8", overrides=[
        f"spatial_compression={spatial}", f"channels_mult={mult}", "attn_resolutions=[]", "shortcut=true",
        "latent_channels=12", "z_channels=12"])
    m = Tokenizer(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool3d(torch.rand(3, 3, 9, 16, 16, generator=g) * 2 - 1, (1, 3, 3), 1, (0, 1, 1))
    m.init_shortcut(x)
    rows = _blocks(x, 4, spatial).double()
    mean = rows.mean(0)
    basis = torch.linalg.svd(rows - mean, full_matrices=False)[2][:12]
    b, c, t, h, w = x.shape
    pca = ((rows - mean) @ basis.T @ basis + mean).float().reshape(b, -1, h // spatial, w // spatial, 4, spatial,
                                                                   spatial, c)
    pca = pca.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, -1, h, w)[:, :, 3:]  # drop the first frame's copies
    with torch.no_grad():
        y, _ = m(x)
    torch.testing.assert_close(y, pca, atol=1e-4, rtol=0)
    with torch.no_grad():
        y, _ = m(x)
    torch.testing.assert_close(y, pca, atol=1e-5, rtol=0)
    with torch.no_grad():  # causal: changing frames after the first 5 leaves the first 5 decoded frames alone
        x2 = x.clone()
        x2[:, :, 5:] = 0
        torch.testing.assert_close(m(x2)[0][:, :, :5], y[:, :, :5], atol=1e-5, rtol=0)
    (m(x)[0] - x).abs().mean().backward()
    assert m.decoder.conv_out.temporal.weight.grad.abs().sum() > 0 and m.quant_conv.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="shortcut=true needs all temporal compression in the Haar patcher"):
        make_config(TokenizerConfig, preset="tiny-CV8x8x8", overrides=["shortcut=true"])
    with pytest.raises(TokenizerError, match="shortcut=true"):
        Tokenizer(make_config(TokenizerConfig, preset="tiny-CV4x8x8")).init_shortcut(x)


def test_config_validation():
    with pytest.raises(ConfigError, match="latent_channels must equal len"):
        make_config(TokenizerConfig, preset="DV8x8x8", overrides=["latent_channels=16"])
    with pytest.raises(ConfigError, match="downsampling"):
        make_config(TokenizerConfig, preset="CV8x16x16", overrides=["spatial_compression=32"])
    with pytest.raises(ConfigError, match="temporal_compression"):
        make_config(TokenizerConfig, preset="CV8x8x8", overrides=["temporal_compression=2"])
    cfg = make_config(TokenizerConfig, preset="tiny-DV4x8x8", overrides=["channels=8"])
    assert cfg.channels == 8 and cfg.kind == "DV4x8x8" and cfg.codebook_size == 64000
    assert {f"tiny-{n}" for n in PAPER} | set(PAPER) <= set(preset_names(TokenizerConfig))


# ---------------------------------------------------------------------- diffusers equivalence
def _diffusers_twin(cfg: TokenizerConfig, seed: int = 0):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    ref = diffusers.AutoencoderKLCosmos(**config_to_diffusers(cfg)).eval()
    with torch.no_grad():  # random norms too, so a swapped weight/bias would show
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
    ours = Tokenizer(cfg).eval()
    ours.load_state_dict(from_diffusers(ref.state_dict()), strict=True)
    return ref, ours


@pytest.mark.parametrize("name,frames", [("CV8x8x8", 9), ("CV8x16x16", 17), ("CI8x8", 1)])
def test_diffusers_equivalence(name, frames):
    cfg = get_preset(TokenizerConfig, f"tiny-{name}")
    ref, ours = _diffusers_twin(cfg)
    x = video(frames, 32, 32)
    with torch.no_grad():
        z_ref = ref.encode(x).latent_dist.mode()
        z = ours.encode(x)
        assert (z - z_ref).abs().max() <= 1e-4
        out_ref, out = ref.decode(z_ref).sample, ours.decode(z_ref)
        assert out.shape == x.shape and (out - out_ref).abs().max() <= 1e-4
    back = to_diffusers(ours.state_dict())
    twin = type(ref)(**config_to_diffusers(cfg))
    twin.load_state_dict(back, strict=True)
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
    assert config_from_diffusers(ref.config) == cfg


def test_diffusers_directory_loads_by_path_with_diffusers_output(tmp_path):
    """A directory written by diffusers' own ``save_pretrained`` works wherever -c takes a tokenizer: the CLI's
    latents and the loaded model's decode equal diffusers' on the same frames; pickle-only weights are refused."""
    import numpy as np
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.tokenizer.api import load_tokenizer
    from openwfm.video import read_video, write_video
    from openwfm.video.transforms import to_tensor

    ref, _ = _diffusers_twin(get_preset(TokenizerConfig, "tiny-CV8x8x8"), seed=3)
    ref.save_pretrained(tmp_path / "vae")
    frames = (np.random.default_rng(0).random((9, 32, 32, 3)) * 255).astype(np.uint8)
    write_video(tmp_path / "in.mp4", frames, fps=8)
    x = to_tensor(read_video(tmp_path / "in.mp4").frames)[None]
    runner = CliRunner()
    r = runner.invoke(app, ["tokenizer", "encode", str(tmp_path / "in.mp4"), str(tmp_path / "z.safetensors"),
                            "-c", str(tmp_path / "vae")])
    assert r.exit_code == 0, r.output
    with torch.no_grad():
        z_ref = ref.encode(x).latent_dist.mode()
        out_ref = ref.decode(z_ref).sample
        z = load_file(tmp_path / "z.safetensors")["latent"]
        assert z.shape == z_ref.shape and (z - z_ref).abs().max() <= 1e-4
        ours = load_tokenizer(tmp_path / "vae")
        assert (ours.decode(z_ref) - out_ref).abs().max() <= 1e-4
    r = runner.invoke(app, ["tokenizer", "roundtrip", str(tmp_path / "in.mp4"), str(tmp_path / "rt.mp4"),
                            "-c", str(tmp_path / "vae")])
    assert r.exit_code == 0 and "PSNR" in r.output, r.output
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").rename(tmp_path / "vae" / "diffusion_pytorch_model.bin")
    r = runner.invoke(app, ["tokenizer", "encode", str(tmp_path / "in.mp4"), str(tmp_path / "z2.safetensors"),
                            "-c", str(tmp_path / "vae")])
    from openwfm.errors import OpenWFMError  # wfm prints these as one line

    assert isinstance(r.exception, OpenWFMError) and "pickle" in str(r.exception) and "\n" not in str(r.exception)


def test_convert_to_and_from_diffusers(tmp_path):
    """``wfm convert``: an openwfm tokenizer written in diffusers' layout is read by diffusers' own
    ``from_pretrained`` with equal outputs; that directory converted back is an openwfm export with the same
    weights. An NVIDIA TorchScript folder needs --trust-torchscript."""
    diffusers = pytest.importorskip("diffusers")
    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.tokenizer.api import load_tokenizer
    from openwfm.tokenizer.pretrained import export

    ours = tiny("CV8x8x8", seed=5)
    export(ours, {}, tmp_path / "ours", {"steps": 1})
    runner = CliRunner()
    r = runner.invoke(app, ["convert", str(tmp_path / "ours"), "--to", "diffusers", "-o", str(tmp_path / "dif")])
    assert r.exit_code == 0, r.output
    ref = diffusers.AutoencoderKLCosmos.from_pretrained(tmp_path / "dif").eval()
    x = video(9, 32, 32)
    with torch.no_grad():
        z = ours.encode(x)
        assert (ref.encode(x).latent_dist.mode() - z).abs().max() <= 1e-4
        assert (ref.decode(z).sample - ours.decode(z)).abs().max() <= 1e-4
    r = runner.invoke(app, ["convert", str(tmp_path / "dif"), "-o", str(tmp_path / "back")])
    assert r.exit_code == 0, r.output
    back = load_tokenizer(tmp_path / "back")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in ours.state_dict().items())
    (tmp_path / "nv").mkdir()
    (tmp_path / "nv" / "encoder.jit").write_bytes(b"not really")
    r = runner.invoke(app, ["convert", str(tmp_path / "nv"), "-o", str(tmp_path / "nv-out")])
    assert "trust-torchscript" in str(r.exception) and not (tmp_path / "nv-out").exists()
    with pytest.raises(TokenizerError, match="wfm convert .* --trust-torchscript"):
        load_tokenizer(tmp_path / "nv")  # -c on an NVIDIA folder: one line that says how


def test_param_count_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLCosmos()  # CV8x8x8 defaults
    cfg = config_from_diffusers(ref.config)
    assert cfg.kind == "CV8x8x8" and cfg.latents_mean is not None
    assert sum(p.numel() for p in ref.parameters()) == CV8X8X8_PARAMS
    with pytest.raises(ConfigError, match="FSQ"):
        to_diffusers(tiny("DV4x8x8").state_dict())


def test_a_discrete_shortcut_tokenizer_starts_with_unit_spread_before_fsq():
    """FSQ squashes each channel with tanh: the PCA directions of a discrete shortcut tokenizer are scaled to
    unit standard deviation on the init clips (else the first components saturate), and the decoding
    shortcut undoes the scale (a code decodes to the PCA reconstruction of its unquantized value)."""
    from openwfm.tokenizer.haar import haar_patch, haar_unpatch
    from openwfm.tokenizer.model import pca_basis

    cfg = make_config(TokenizerConfig, preset="tiny-DV4x8x8", overrides=[
        "spatial_compression=4", "channels_mult=[1]", "attn_resolutions=[]", "shortcut=true"])
    m = Tokenizer(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool3d(torch.rand(3, 3, 9, 16, 16, generator=g) * 2 - 1, (1, 3, 3), 1, (0, 1, 1))
    m.init_shortcut(x)
    with torch.no_grad():
        z = m.encode_latent(x)
        std = z.movedim(1, -1).reshape(-1, z.shape[1]).std(0)
        torch.testing.assert_close(std, torch.ones_like(std), atol=1e-3, rtol=0)
        mean, basis = pca_basis(haar_patch(x, 4), len(cfg.levels))
        pca = haar_unpatch(((haar_patch(x, 4).movedim(1, -1) - mean) @ basis.T @ basis + mean).movedim(-1, 1), 4)
        torch.testing.assert_close(m.decode(z), pca, atol=1e-4, rtol=0)


def test_a_shortcut_tokenizer_has_no_diffusers_counterpart():
    """diffusers' AutoencoderKLCosmos has no linear shortcut: exporting one would silently drop half the
    model, so it is refused with the reason (config and weights alike)."""
    cfg = make_config(TokenizerConfig, preset="tiny-CV4x8x8", overrides=["shortcut=true"])
    with pytest.raises(ConfigError, match="no linear shortcut"):
        config_to_diffusers(cfg)
    with pytest.raises(ConfigError, match="no diffusers counterpart"):
        to_diffusers(Tokenizer(cfg).state_dict())
