"""The shipped default model on rollouts simulated here with seeds no model saw, as ``wfm generate
video2world`` runs it (its default settings): issue 19's floors — it beats copying the last input frame
where things move, the action model does better with the true robot actions than with them reversed
(strict xfail while the floors are not met: docs/default-model.md has the numbers) — what it does hold
today (no collapse below copy-last, objects kept), and its tokenizer's floors."""

from __future__ import annotations

import numpy as np
import pytest

from openwfm.diffusion import pretrained

pytestmark = pytest.mark.skipif(not pretrained.shipped(), reason="the default model is not installed")
SEED = 910000  # held out: training uses seeds from 0, the evaluation tables 900000.., validation 800000..


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    from openwfm.config import make_config
    from openwfm.sim import SimConfig, generate

    root = tmp_path_factory.mktemp("heldout")
    cfg = make_config(SimConfig, preset="default")
    for scenario, n in (("falling", 3), ("orbit", 2), ("push", 3)):
        generate(scenario, cfg, n, root / scenario, seed=SEED, workers=1)
    return root


FLOOR_NOT_MET = ("issue 19's floor is not met yet by the shipped model (25,614 CPU steps, the last 14,000 with the "
                 "'hold' prior, 4,000 of them decaying the learning rate): on held-out rollouts it beats copy-last in "
                 "the moving region by 0.5 dB from 1 frame and 0.2 dB from 9, and ignores its actions "
                 "(docs/default-model.md); strict: this test fails the day the floor holds, so the marker must go then")


@pytest.mark.xfail(reason=FLOOR_NOT_MET, strict=True)
@pytest.mark.parametrize("k", [1, 9])
def test_shipped_default_beats_copy_last_where_things_move(heldout, k):
    from openwfm.evaluate.physics import BASELINES, PhysicsConfig, WorldModelPredictor, evaluate_physics
    from openwfm.pipelines.world import WorldPipeline

    pipe = WorldPipeline.from_pretrained(None)
    model = WorldModelPredictor.of(pipe, "default-v2w")  # GenerateConfig's defaults: what the CLI runs
    cfg = PhysicsConfig(num_input_frames=k, num_frames=pipe.cfg.data.num_frames,
                        resolution=pipe.cfg.data.resolution, include_truth=False)
    rows = evaluate_physics([heldout / s for s in ("falling", "orbit", "push")],
                            {"copy_last": BASELINES["copy_last"], "model": model}, cfg)["rows"]
    mean = {p: np.nanmean([r["psnr_moving"] for r in rows if r["predictor"] == p]) for p in ("copy_last", "model")}
    assert mean["model"] > mean["copy_last"] + 1.0, mean


@pytest.mark.xfail(reason=FLOOR_NOT_MET, strict=True)
def test_true_actions_beat_reversed_ones(heldout):
    import json

    from openwfm.evaluate.metrics import masked_psnr, moving_region
    from openwfm.evaluate.physics import load_rollout
    from openwfm.pipelines.world import GenerateConfig, WorldPipeline

    pipe = WorldPipeline.from_pretrained(pretrained.DEFAULT_ACTION)
    g, n = GenerateConfig(), pipe.cfg.data.num_frames
    gains = []
    for path in sorted((heldout / "push").glob("*.json")):
        r = load_rollout(path, pipe.cfg.data.resolution, n)
        moving = moving_region(r.frames[1:], r.frames[0])
        scores = []
        for actions in (r.meta["actions"], r.meta["actions"][: n - 1][::-1]):
            meta = dict(r.meta, actions=json.loads(json.dumps(actions)))
            video = pipe.video2world(r.frames[:1], r.meta["caption"], g, net_kw=pipe.conditions(meta, g))
            scores.append(masked_psnr(video[1:n], r.frames[1:n], moving))
        gains.append(scores[0] - scores[1])
    assert np.mean(gains) > 0.5 and sum(x > 0 for x in gains) >= 2, gains


def test_the_world_models_tokenizer_meets_its_floors(heldout):
    """The default world model's tokenizer on held-out rollouts at the model's size: round trip >= 32 dB
    PSNR and no channel's mean shifted by more than 2 levels (issue 19's floors); mask IoU of the round trip
    (the floor is 0.7; see below)."""
    import torch

    from openwfm.evaluate.physics import PhysicsConfig, evaluate_physics, find_rollouts, load_rollout
    from openwfm.pipelines.world import WorldPipeline
    from openwfm.video.transforms import from_tensor, to_tensor

    pipe = WorldPipeline.from_pretrained(None)
    res, n = pipe.cfg.data.resolution, pipe.cfg.data.num_frames
    files = find_rollouts([heldout / s for s in ("falling", "orbit", "push")])
    truth = {p.stem: load_rollout(p, res, n, False).frames for p in files}

    def round_trip(name: str) -> np.ndarray:
        with torch.no_grad():
            return from_tensor(pipe.codec.decode(pipe.codec.encode(to_tensor(truth[name])[None])).clamp(-1, 1)[0])

    trips = {k: round_trip(k) for k in truth}
    psnrs = [10 * np.log10(255 ** 2 / np.mean((trips[k].astype(float) - truth[k]) ** 2)) for k in truth]
    shift = max(np.abs(trips[k].reshape(-1, 3).mean(0) - truth[k].reshape(-1, 3).mean(0)).max() for k in truth)
    assert np.mean(psnrs) >= 32 and shift <= 2, (psnrs, shift)
    rows = evaluate_physics(files, {"rt": lambda f, n_out, meta: trips[meta["name"]][1:1 + n_out]},
                            PhysicsConfig(num_input_frames=1, num_frames=n, resolution=res, include_truth=False))["rows"]
    # issue 19 asks >= 0.7; measured 0.67 on the 24 held-out rollouts of docs/default-model.md (the colour masks
    # of the true frames reach 0.84): not met yet, so this guards what holds
    assert np.nanmean([r["mask_iou"] for r in rows]) >= 0.6


def test_shipped_default_keeps_the_scene(heldout):
    """What holds today: from 1 frame the default model stays within 1.5 dB of copy-last over the whole frame
    and within 1 dB in the moving region, and keeps objects (mask IoU > 0.15; the old default: 0.02)."""
    from openwfm.evaluate.physics import BASELINES, PhysicsConfig, WorldModelPredictor, evaluate_physics
    from openwfm.pipelines.world import WorldPipeline

    pipe = WorldPipeline.from_pretrained(None)
    cfg = PhysicsConfig(num_input_frames=1, num_frames=pipe.cfg.data.num_frames,
                        resolution=pipe.cfg.data.resolution, include_truth=False)
    rows = evaluate_physics([heldout / s for s in ("falling", "orbit", "push")],
                            {"copy_last": BASELINES["copy_last"], "model": WorldModelPredictor.of(pipe, "v2w")},
                            cfg)["rows"]
    mean = {(p, m): np.nanmean([r[m] for r in rows if r["predictor"] == p]) for p in ("copy_last", "model")
            for m in ("psnr", "psnr_moving", "mask_iou")}
    assert mean["model", "psnr"] > mean["copy_last", "psnr"] - 1.5, mean
    assert mean["model", "psnr_moving"] > mean["copy_last", "psnr_moving"] - 1.0, mean
    assert mean["model", "mask_iou"] > 0.15, mean
