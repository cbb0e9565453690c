"""The shipped default model predicts something: on rollouts simulated here with seeds no model saw, the
default Video2World model (as ``wfm generate video2world`` runs it, with its default settings) beats
copying the last input frame where things move, and the action model does better with the true robot
actions than with the same actions reversed in time."""

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


@pytest.mark.parametrize("k", [1, 9])
def test_shipped_default_beats_copy_last_where_things_move(heldout, k):
    from openwfm.diffusion.pipeline import WorldPipeline
    from openwfm.evaluate.physics import BASELINES, PhysicsConfig, WorldModelPredictor, evaluate_physics

    pipe = WorldPipeline.from_pretrained(None)
    model = WorldModelPredictor.of(pipe, "default-v2w")  # GenerateConfig's defaults: what the CLI runs
    cfg = PhysicsConfig(num_input_frames=k, num_frames=pipe.cfg.data.num_frames,
                        resolution=pipe.cfg.data.resolution, include_truth=False)
    rows = evaluate_physics([heldout / s for s in ("falling", "orbit", "push")],
                            {"copy_last": BASELINES["copy_last"], "model": model}, cfg)["rows"]
    mean = {p: np.nanmean([r["psnr_moving"] for r in rows if r["predictor"] == p]) for p in ("copy_last", "model")}
    assert mean["model"] > mean["copy_last"] + 1.0, mean


def test_true_actions_beat_reversed_ones(heldout):
    import json

    from openwfm.diffusion.pipeline import GenerateConfig, WorldPipeline
    from openwfm.evaluate.metrics import masked_psnr, moving_region
    from openwfm.evaluate.physics import load_rollout

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
