"""The main job: the training recipe end to end (tiny), exported world models, the demo report, and the
shipped default model used when no checkpoint is given."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from openwfm.cli import app
from openwfm.diffusion import pretrained
from openwfm.recipe import RecipeConfig, run_recipe

runner = CliRunner()

TINY = RecipeConfig(falling=1, orbit=1, push=2, resolution=32, tokenizer_steps=3, v2w_steps=3, action_steps=3,
                    decoder_steps=1, workers=1)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe")
    return out, run_recipe(out, TINY, quiet=True)


def test_recipe_runs_every_step_and_resumes(recipe):
    out, report = recipe
    assert list(report["steps"]) == ["simulate", "pack", "tokenizer", "export-tokenizer", "latents", "push-latents",
                                     "v2w", "action", "decoder", "export"]
    for path in report["exports"].values():
        assert (Path(path) / "index.json").is_file() and Path(path).is_relative_to(out)
    card = pretrained.read_card(report["exports"]["default-v2w"])
    assert card["steps"] == 3 and "1 falling, 1 orbit, 2 push" in card["data"]
    facts = card["training"]  # seeds, steps, batch, wall time and machine (issue 19's cards)
    assert facts["seed"] == 0 and facts["batch_size"] == 8 and facts["steps"] == 3 and facts["train_seconds"] >= 0
    assert "CPU cores" in facts["machine"]
    tok_card = pretrained.read_card(report["exports"]["tokenizer"])  # the decoder fine-tune, nesting the tokenizer's
    assert tok_card["training"]["batch_size"] == 8 and tok_card["encoder"]["training"]["batch_size"] == 4
    cfg = json.loads((out / "export/world/default-action/config.json").read_text())
    assert cfg["base"] == "" and cfg["data"]["shards"] == "" and cfg["tokenizer"].endswith("cv4x4x4-sim32")
    again = run_recipe(out, TINY, quiet=True)  # every step is stamped done: nothing reruns
    assert again["steps"] == report["steps"]
    # a changed field reruns its step and the later ones only (the tokenizer's stamp still holds)
    stamp = (out / ".done" / "tokenizer").stat().st_mtime_ns
    more = run_recipe(out, replace(TINY, action_steps=4), quiet=True)
    assert more["steps"]["action"]["inputs"]["action_steps"] == 4
    assert (out / ".done" / "tokenizer").stat().st_mtime_ns == stamp
    assert more["steps"]["decoder"] == report["steps"]["decoder"]  # the decoder depends on the tokenizer only
    assert json.loads((out / "action/checkpoints/step-00000004/trainer.json").read_text())["step"] == 4
    # any other change trains that step from the start; its old run is kept aside, not lost
    fresh = run_recipe(out, replace(TINY, action_steps=4, action=TINY.action + ["data.seed=1"]), quiet=True)
    assert "action" in fresh["steps"] and (out / "action.previous-1/checkpoints/step-00000004").is_dir()
    assert sorted(p.name for p in (out / "action/checkpoints").iterdir()) == ["step-00000004"]


def test_warm_start_takes_the_weights_and_refuses_another_network(recipe, tmp_path):
    out, report = recipe
    from openwfm.config import ConfigError
    from openwfm.hub import load_world_model
    from openwfm.tasks.diffusion import DiffusionTask

    start, cfg = load_world_model(report["exports"]["default-v2w"])
    task = DiffusionTask(replace(cfg, init=report["exports"]["default-v2w"]))
    model = task.build_model()
    task.init_weights(model)
    for k, v in start.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    wider = replace(cfg, init=report["exports"]["default-v2w"], model=replace(cfg.model, model_channels=96))
    with pytest.raises(ConfigError, match="init=.*same network"):
        DiffusionTask(wider).init_weights(DiffusionTask(wider).build_model())
    # a finer spatial patch starts from the coarser model (dit.repatch_state): the blocks are the same weights
    finer = DiffusionTask(replace(cfg, init=report["exports"]["default-v2w"], model=replace(cfg.model, patch_spatial=1)))
    fine = finer.build_model()
    finer.init_weights(fine)
    assert all(torch.equal(fine.state_dict()[k], v) for k, v in start.state_dict().items() if ".blocks." in k)
    assert fine.net.x_embedder.weight.shape[1] * 4 == start.net.x_embedder.weight.shape[1]
    # the recipe reuses a tokenizer and warm-starts Video2World, and the cards say so
    again = run_recipe(tmp_path / "warm", replace(TINY, push=0, tokenizer_from=report["exports"]["tokenizer"],
                                                  v2w_init=report["exports"]["default-v2w"]), quiet=True)
    card = pretrained.read_card(again["exports"]["default-v2w"])
    assert card["v2w_init"]["card"]["steps"] == 3 and card["tokenizer_from"] == report["exports"]["tokenizer"]
    assert not (tmp_path / "warm" / "tokenizer").exists()
    # the decoder fine-tune (decoder_steps) keeps the encoder: the world models' latents are the same, and
    # their export decodes with the new decoder
    from openwfm.tokenizer.api import load_tokenizer
    from openwfm.tokenizer.pretrained import read_card

    tuned, start = again["exports"]["tokenizer"], report["exports"]["tokenizer"]
    assert Path(tuned).parent.name == "decoder" and read_card(tuned)["encoder"] == read_card(start)
    assert read_card(tuned)["steps"] == 1
    assert json.loads((Path(again["exports"]["default-v2w"]) / "config.json").read_text())["tokenizer"] == tuned
    a, b = load_tokenizer(start), load_tokenizer(tuned)
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(a.encode(x), b.encode(x)) and a.cfg.latents_std == b.cfg.latents_std
    # the action run continues an action model (action_init) instead of starting from the v2w run
    cont = run_recipe(tmp_path / "cont", replace(TINY, falling=0, orbit=0, tokenizer_from=report["exports"]["tokenizer"],
                                                 action_init=report["exports"]["default-action"], action_steps=1),
                      quiet=True)
    card = pretrained.read_card(cont["exports"]["default-action"])
    assert card["action_init"]["card"] == pretrained.read_card(report["exports"]["default-action"]) and card["steps"] == 1
    run_cfg = json.loads((tmp_path / "cont" / "action" / "checkpoints" / "step-00000001" / "config.json").read_text())
    assert run_cfg["base"] == str(pretrained.find(report["exports"]["default-action"]))


def test_exported_model_generates_from_its_directory(recipe, tmp_path):
    out, report = recipe
    from openwfm.pipelines.world import GenerateConfig, WorldPipeline

    pipe = WorldPipeline.from_run(report["exports"]["default-v2w"])
    assert pipe.cfg.v2w.input_frame_choices == [0, 1, 1, 9] and pipe.cfg.v2w.residual  # 0: Text2World
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    video = pipe.video2world(frames, "a cube falls", GenerateConfig(steps=2, guidance=0.0, num_input_frames=9))
    assert video.shape == (17, 32, 32, 3)
    np.testing.assert_array_equal(video[:9], frames)  # the input frames come back as they were given


def test_demo_writes_the_report(recipe, tmp_path):
    from openwfm.demo import DemoConfig, run_demo

    _, report = recipe
    doc = run_demo(tmp_path, DemoConfig(num=1, steps=2, v2w=report["exports"]["default-v2w"],
                                        action=report["exports"]["default-action"], workers=1))
    html = (tmp_path / "report.html").read_text()
    assert "Quality floors" in html and "Verdict" in html and "metrics.png" in html
    assert "gifs/push_900000-push___actions.gif" in html and "gifs/falling_900000-9_frames.gif" in html
    for f in ["results.json", "metrics.png", "psnr_1_frame.png", "gifs/falling_900000-1_frame.gif",
              "gifs/orbit_900000-9_frames.gif"]:
        assert (tmp_path / f).is_file(), f
    assert set(doc["results"]) == {"1 frame", "9 frames", "push + actions"}
    floors = {(r["setting"], r["model"]) for r in doc["floors"]}
    assert ("push + actions", "default-action") in floors and ("1 frame", "default-v2w") in floors
    # every predictor was scored on every kept scene; the baselines are there to compare with
    one = doc["results"]["1 frame"]["summary"]
    assert {r["predictor"] for r in one} == {"truth", "copy_last", "default-v2w", "default-v2w-mean", "tokenizer"}
    assert all(f["verdict"].startswith(f["setting"]) for f in doc["floors"])
    assert doc["curation"]["counts"]["clip"].get("kept", 0) == len(doc["scenes"]) == 3
    from browser import check_page

    assert check_page(tmp_path / "report.html") >= 10  # plots and GIFs load in a browser, no console errors


def test_input_frame_choices_are_checked():
    from openwfm.config import ConfigError, make_config
    from openwfm.tasks.diffusion import DiffusionRunConfig

    with pytest.raises(ConfigError, match="17 input frames leave nothing to predict"):
        make_config(DiffusionRunConfig, preset="tiny-v2w", overrides=["v2w.input_frame_choices=[1,17]"]).validate()


def test_no_default_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="no default-v2w world model"):
        pretrained.find(None)
    assert pretrained.find("some/run") == "some/run"


@pytest.mark.skipif(not pretrained.shipped(), reason="the default model is not installed in this checkout")
def test_generate_video2world_without_checkpoint_uses_the_shipped_default(tmp_path):
    from openwfm.video import read_video, write_video

    src = tmp_path / "in.mp4"
    write_video(src, np.full((9, 64, 64, 3), 90, np.uint8), 12.0)
    res = runner.invoke(app, ["generate", "video2world", "-i", str(src), "-o", str(tmp_path / "out.mp4"),
                              "--steps", "2", "--no-guardrail"])
    assert res.exit_code == 0, res.output
    assert len(read_video(tmp_path / "out.mp4").frames) == 9 + 17 - 1  # the input, then one clip's continuation
    assert set(pretrained.shipped()) >= {pretrained.DEFAULT_V2W, pretrained.DEFAULT_ACTION}


@pytest.mark.skipif(not pretrained.shipped(), reason="the default model is not installed in this checkout")
def test_public_api_and_the_cli_give_the_same_video(tmp_path, monkeypatch):
    """``WorldPipeline.from_pretrained(...)(video=..., prompt=...)`` and ``wfm generate video2world`` fit the
    input the same way and return the same frames: the CLI is a thin layer over the API."""
    from openwfm import WorldPipeline
    from openwfm.pipelines.world import GenerateConfig
    from openwfm.video import read_video, write_video

    x = np.zeros((13, 96, 128, 3), np.uint8)
    x[..., 2] = 120
    for t in range(13):
        x[t, 30:50, 20 + 3 * t:40 + 3 * t] = (200, 40, 40)  # a red square moving right
    src = tmp_path / "in.mp4"
    write_video(src, x, 12.0)
    pipe = WorldPipeline.from_pretrained(pretrained.DEFAULT_V2W)
    frames = read_video(src).frames
    out = pipe(video=frames, prompt="a red cube slides", num_inference_steps=2, seed=3)
    side, clip = pipe.cfg.data.resolution, pipe.clip_frames(GenerateConfig())
    n_in = pipe.cfg.v2w.num_input_frames
    assert out.frames.dtype == np.uint8 and out.frames.shape == (13 + clip - n_in, side, side, 3)
    assert np.array_equal(out.frames[:13], pipe.fit_frames(frames))  # the input comes back as it was fitted
    assert np.array_equal(pipe(video=frames, prompt="a red cube slides", num_inference_steps=2, seed=3).frames,
                          out.frames)  # seeded
    import openwfm.video

    written = []  # the frames the CLI hands to the encoder (two H.264 encodes of one clip need not match)
    monkeypatch.setattr(openwfm.video, "write_video", lambda path, frames, fps, **kw: written.append(frames))
    res = runner.invoke(app, ["generate", "video2world", "-i", str(src), "-o", str(tmp_path / "cli.mp4"),
                              "-p", "a red cube slides", "--steps", "2", "--seed", "3", "--no-guardrail"])
    assert res.exit_code == 0, res.output
    assert len(written) == 1 and np.array_equal(written[0], out.frames)
    t2w = pipe(prompt="a red cube falls", num_inference_steps=2)
    assert t2w.frames.shape == (clip, side, side, 3)
    with pytest.raises(ValueError, match="uint8 frames"):
        pipe(video=np.zeros((3, 8, 8), np.float32))


@pytest.mark.skipif(not pretrained.shipped(), reason="the default model is not installed in this checkout")
def test_generate_text2world_without_checkpoint_uses_the_shipped_default(tmp_path):
    """The shipped Video2World model serves 0 input frames too (Text2World), so no --checkpoint is needed."""
    from openwfm.video import read_video

    res = runner.invoke(app, ["generate", "text2world", "-p", "a red cube falls onto a tan floor", "-o",
                              str(tmp_path / "t2w.mp4"), "--steps", "2", "--no-guardrail"])
    assert res.exit_code == 0, res.output
    assert read_video(tmp_path / "t2w.mp4").frames.shape == (17, 64, 64, 3)


def test_progress_hook_counts_denoiser_evaluations():
    from openwfm.pipelines.world import GenerateConfig, WorldPipeline

    pipe = WorldPipeline.from_pretrained(pretrained.DEFAULT_V2W)
    seen = []
    pipe.progress = lambda done, total: seen.append((done, total))
    pipe.video2world(np.zeros((9, 64, 64, 3), np.uint8), "", GenerateConfig(steps=2, sampler="heun", num_input_frames=9))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]  # Heun: two evaluations per step, one for the last


def test_a_stamp_from_before_a_new_recipe_field_still_holds(tmp_path):
    """Old runs keep resuming: a field added to RecipeConfig later (tokenizer_from, v2w_init) counts as its
    default in a stamp written without it, so the step is not redone."""
    from openwfm.recipe import _step

    (tmp_path / ".done").mkdir()
    (tmp_path / ".done" / "tokenizer").write_text(json.dumps({"seconds": 1, "inputs": {"resolution": 64}}))
    ran = []
    _step(tmp_path, "tokenizer", lambda: ran.append(1), {"resolution": 64, "tokenizer_from": ""}, {"steps": {}})
    assert not ran
    _step(tmp_path, "tokenizer", lambda: ran.append(1), {"resolution": 64, "tokenizer_from": "x"}, {"steps": {}})
    assert ran == [1]
    # a field whose default changed behaviour counts as the value runs had before it existed
    (tmp_path / ".done" / "latents").write_text(json.dumps({"seconds": 1, "inputs": {"clip_step": 4}}))
    _step(tmp_path, "latents", lambda: ran.append(2), {"clip_step": 4, "residual_prior": "last"}, {"steps": {}})
    assert ran == [1]
    _step(tmp_path, "latents", lambda: ran.append(2), {"clip_step": 4, "residual_prior": "hold"}, {"steps": {}})
    assert ran == [1, 2]


def test_shipped_assets_fit_the_size_budget():
    """Issue 19: everything under openwfm/assets, the world models, tokenizers, guardrail and curator
    weights, stays <= 60 MB (10^6 bytes)."""
    root = pretrained.ASSETS.parent
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size <= 60e6, f"{size / 1e6:.1f} MB"


def test_half_precision_exports_load_as_float32(tmp_path):
    """A float16 export is half the size and loads as float32 tensors equal to the float16 rounding; the
    shipped world models are stored that way and verify."""
    from safetensors import safe_open

    from openwfm.weights import load_weights, publish_model, verify

    state = {"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(0)), "n": torch.tensor([3, 2049])}
    full = publish_model(tmp_path / "full", state, {"task": "diffusion"}, {}, 7)
    half = publish_model(tmp_path / "half", state, {"task": "diffusion"}, {}, 7, dtype=torch.float16)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    _, w = load_weights(half)
    assert w["w"].dtype == torch.float32 and torch.equal(w["w"], state["w"].half().float())
    assert torch.equal(w["n"], torch.tensor([3.0, 2049.0]))  # not floating: stored as float32, exactly
    with pytest.raises(ValueError, match="int8"):
        publish_model(tmp_path / "bad", state, {}, {}, 0, dtype=torch.int8)
    for name in ("default-v2w", "default-action"):
        path = pretrained.ASSETS / name
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            assert all(f.get_slice(k).get_dtype() == "F16" for k in f.keys())
        assert not verify(path) and all(v.dtype == torch.float32 for v in load_weights(path)[1].values())
