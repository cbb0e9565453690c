"""Tokenizer training (task, two-stage loss, overfitting), chunking / tiling, and latent files."""

from __future__ import annotations

import pytest
import torch
from conftest import moving_frames

from openwfm.config import ConfigError, get_preset, make_config
from openwfm.evaluate.metrics import psnr
from openwfm.tasks.tokenizer import TokenizerRunConfig, TokenizerTask
from openwfm.tokenizer import Tokenizer, TokenizerConfig, api
from openwfm.tokenizer.chunking import decode_chunked, encode_chunked, temporal_windows, tiled
from openwfm.tokenizer.losses import TokenizerLossConfig, tokenizer_loss
from openwfm.train.loop import Trainer
from openwfm.train.metrics import read_metrics
from openwfm.video.transforms import to_tensor


def _model(name: str = "tiny-CV4x8x8", seed: int = 0) -> Tokenizer:
    torch.manual_seed(seed)
    return Tokenizer(get_preset(TokenizerConfig, name)).eval()


def test_tiny_tokenizer_overfits_one_clip():
    """L1 on one 9-frame 32x32 clip: PSNR climbs above 30 dB (about 30 s on 2 cores)."""
    torch.manual_seed(0)
    model = Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8"))
    x = to_tensor(moving_frames(9, 32, 32))[None]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = TokenizerLossConfig(perceptual=0.0)
    for _ in range(700):
        loss, _ = tokenizer_loss(x, model(x)[0], cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(psnr(x, model(x)[0])[0]) > 30.0


def test_temporal_windows_share_one_frame():
    assert temporal_windows(33, 17, 8) == [(0, 17), (16, 33)]
    assert temporal_windows(41, 17, 8) == [(0, 17), (16, 33), (32, 41)]
    assert temporal_windows(9, 17, 8) == [(0, 9)]


def test_chunked_encoding_keeps_counts_and_first_window_exact():
    model = _model()
    x = to_tensor(moving_frames(25, 24, 24))[None]
    with torch.no_grad():
        whole = model.encode_latent(x)
        chunked = encode_chunked(model.encode_latent, x, 4, 9)
        assert chunked.shape == whole.shape  # 1 + 24/4 = 7 latent frames either way
        torch.testing.assert_close(chunked[:, :, :3], whole[:, :, :3], atol=1e-5, rtol=1e-5)  # causality
        video = decode_chunked(model.decode, whole, 3)
        assert video.shape == x.shape
        torch.testing.assert_close(video[:, :, :9], model.decode(whole[:, :, :3]), atol=1e-5, rtol=1e-5)


def test_tiling_blends_exactly_where_the_math_allows():
    x = torch.randn(1, 3, 1, 40, 56)
    pointwise = torch.nn.Conv3d(3, 5, 1)
    with torch.no_grad():
        torch.testing.assert_close(tiled(pointwise, x, 16, 8, 1.0), pointwise(x), atol=1e-6, rtol=1e-6)
        model = _model()
        v = to_tensor(moving_frames(5, 32, 32))[None]
        assert torch.equal(tiled(model.encode_latent, v, 32, 16, 1 / 8), model.encode_latent(v))  # one tile
        z = model.encode_latent(v)
        near = tiled(model.decode, z, 2, 1, 8)  # per-frame attention sees only its tile: close, not equal
        assert near.shape == v.shape and torch.isfinite(near).all()
    with pytest.raises(ValueError, match="whole output pixels"):
        tiled(pointwise, x, 12, 4, 1 / 8)


def test_latent_files_round_trip_for_discrete_tokens(tmp_path):
    model = _model("tiny-DV4x8x8")
    x = to_tensor(moving_frames(9, 24, 24))[None]
    idx = api.encode(model, x)
    assert idx.dtype == torch.int64 and idx.shape == (1, 3, 3, 3)
    api.save_latent(tmp_path / "z.safetensors", idx, model, {"frames": 9, "fps": 12.0})
    back, meta = api.load_latent(tmp_path / "z.safetensors")
    assert torch.equal(back, idx) and meta["tokenizer"] == "DV4x8x8" and meta["frames"] == 9
    torch.testing.assert_close(api.decode(model, back), model.decode(idx), atol=0, rtol=0)
    with pytest.raises(Exception, match="not a latent file"):
        (tmp_path / "bad.safetensors").write_bytes(b"junk")
        api.load_latent(tmp_path / "bad.safetensors")


def test_task_trains_through_the_trainer_with_two_stages(tmp_path):
    cfg = make_config(TokenizerRunConfig, "tiny-CV4x8x8", overrides=[
        "train.steps=2", "train.log_every=1", "stage2_start=1", "data.num_frames=5", "data.resolution=32"])
    task = TokenizerTask(cfg)
    task.make_loader = lambda data_cfg, env, epoch, position: [  # one fixed batch per epoch
        {"video": to_tensor(moving_frames(5, 32, 32))[None], "mask": torch.ones(1, 1, 32, 32)}][position:]
    Trainer(task, tmp_path, progress=False).fit()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert "gram" not in rows[0] and rows[1]["gram"] > 0 and rows[1]["perceptual"] > 0
    loaded = api.load_tokenizer(tmp_path)
    assert loaded.cfg.kind == "CV4x8x8"


def test_run_config_rejects_frame_counts_the_tokenizer_cannot_take():
    with pytest.raises(ConfigError, match="takes 1 \\+ k·4 frames, e.g. 13 or 17"):
        make_config(TokenizerRunConfig, "tiny-CV4x8x8", overrides=["data.num_frames=16"])


def test_cli_export_of_a_4x8x8_shortcut_run_keeps_one_shared_latent_std(tmp_path):
    """`wfm tokenizer train` of a CV4x8x8 with the linear shortcut starts from the PCA of its shards' clips;
    `wfm tokenizer export` then writes one std shared by all latent channels (the PCA-like channels keep their
    relative scales, as `wfm recipe default` exports them), and the export loads by path."""
    import json

    from typer.testing import CliRunner

    from openwfm.cli import app
    from openwfm.data import pack_samples
    from openwfm.video.io import write_video

    def samples():
        for n in range(3):
            mp4 = write_video(tmp_path / f"v{n}.mp4", moving_frames(9, 32, 32, seed=n), fps=12, preset="ultrafast")
            yield f"clip{n}", {"mp4": mp4.read_bytes(), "json": json.dumps({"caption": ""}).encode()}

    pack_samples(samples(), tmp_path / "shards")
    run = CliRunner().invoke(app, ["tokenizer", "train", "--preset", "tiny-CV4x8x8", "--out", str(tmp_path / "run"),
                                   f"data.shards={tmp_path / 'shards'}", "data.resolution=32", "data.num_frames=9",
                                   "data.batch_size=1", "train.steps=2", "model.shortcut=true",
                                   "shortcut_init_clips=3", "loss.perceptual=0"])
    assert run.exit_code == 0, run.output
    res = CliRunner().invoke(app, ["tokenizer", "export", str(tmp_path / "run"), "-o", str(tmp_path / "tok"),
                                   "--stats-shards", str(tmp_path / "shards"), "--stats-clips", "3"])
    assert res.exit_code == 0, res.output
    model = json.loads((tmp_path / "tok" / "config.json").read_text())["model"]
    assert model["shortcut"] and len(set(model["latents_std"])) == 1 and len(model["latents_std"]) == 16
    assert api.load_tokenizer(tmp_path / "tok").cfg.spatial_compression == 8
    half = CliRunner().invoke(app, ["tokenizer", "export", str(tmp_path / "run"), "-o", str(tmp_path / "half"), "--half"])
    assert half.exit_code == 0, half.output  # float16 on disk, the same network within its rounding
    size = [(tmp_path / d / "model.safetensors").stat().st_size for d in ("tok", "half")]
    assert size[1] < 0.6 * size[0]
    a, b = api.load_tokenizer(tmp_path / "tok"), api.load_tokenizer(tmp_path / "half")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert y.dtype == x.dtype and torch.allclose(x, y, rtol=1e-3, atol=1e-4), k


def test_decoder_fine_tune_keeps_the_encoder_and_its_latent_statistics(tmp_path):
    """`init=` + `freeze_encoder=true` trains the decoder only: the latents (and their statistics) stay the
    start's, so world models trained on them keep working; the EMA, which holds only the trained parameters,
    loads together with the frozen ones."""
    from openwfm.tokenizer.pretrained import export

    clip = to_tensor(moving_frames(5, 32, 32))[None]
    start = _model()
    export(start, {}, tmp_path / "start", {"steps": 0}, clips=[clip])
    base = ["train.steps=2", "train.log_every=1", "data.num_frames=5", "data.resolution=32"]
    cfg = make_config(TokenizerRunConfig, "tiny-CV4x8x8",
                      overrides=base + [f"init={tmp_path / 'start'}", "freeze_encoder=true"])
    task = TokenizerTask(cfg)
    task.make_loader = lambda data_cfg, env, epoch, position: [{"video": clip, "mask": torch.ones(1, 1, 32, 32)}][position:]
    Trainer(task, tmp_path / "run", progress=False).fit()
    before, after = api.load_tokenizer(tmp_path / "start"), api.load_tokenizer(tmp_path / "run")
    with torch.no_grad():
        assert torch.equal(before.encode(clip), after.encode(clip))
        assert not torch.equal(before.decode(before.encode(clip)), after.decode(after.encode(clip)))
    assert after.cfg.latents_mean == before.cfg.latents_mean and after.cfg.latents_std == before.cfg.latents_std
    with pytest.raises(ConfigError, match="freeze_encoder=true keeps an encoder that init= names"):
        make_config(TokenizerRunConfig, "tiny-CV4x8x8", overrides=base + ["freeze_encoder=true"])
    other = make_config(TokenizerRunConfig, "tiny-CV4x8x8", overrides=base + [f"init={tmp_path / 'start'}",
                                                                             "model.channels=8"])
    with pytest.raises(ConfigError, match="differs from this run's model config in channels"):
        TokenizerTask(other).init_weights(Tokenizer(other.model))
