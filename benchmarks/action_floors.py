"""Issue 19's action floors on held-out push rollouts, in one run: does the action model follow its actions?

    python benchmarks/action_floors.py --sim HELDOUT/push [-c default-action] [--max-rollouts 8]

For each rollout, the first frame (``--num-input-frames 9``: the first 9) and the caption go in with four
action inputs for the frames to come: the true actions, zero actions, the true actions reversed in time, and
the true actions again with another seed (the input frames keep their own actions). Scored over the moving
region (pixels whose true value departs from the last input frame: the arm and what it pushes):
- true vs zero and true vs reversed: the mean gain in moving-region PSNR (floor: >= 1 dB) and the share of
  rollouts where the true actions win (floor: >= 80 %);
- counterfactuals vs seeds: the RMS difference between the prediction under the true actions and under
  reversed ones, next to the RMS difference between two seeds under the true actions (counterfactual
  actions must change the future more than a new seed does).
Sampling uses GenerateConfig's defaults (what ``wfm generate video2world --actions`` runs); ``--steps`` changes
the number of sampler steps (2: the conditional mean, see docs/default-model.md), ``--action-guidance`` the
weight of action guidance (0: none; each variant steers away from zero actions, so zero actions are unguided).
Also printed: the true-action prediction's whole-frame PSNR and its mean gradient magnitude over the truth's.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from datetime import date

import numpy as np
import torch

from openwfm.evaluate.metrics import gradient_magnitude, masked_psnr, moving_region
from openwfm.evaluate.physics import find_rollouts, load_rollout
from openwfm.pipelines.world import GenerateConfig, WorldPipeline


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", nargs="+", required=True)
    ap.add_argument("-c", "--checkpoint", default="default-action")
    ap.add_argument("--max-rollouts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=0, help="sampler steps (0: GenerateConfig's default)")
    ap.add_argument("--num-input-frames", type=int, default=1, help="1 (the floor's setting) or 9")
    ap.add_argument("--action-guidance", type=float, default=None, help="GenerateConfig.action_guidance "
                    "(default: its default)")
    args = ap.parse_args()
    pipe = WorldPipeline.from_pretrained(args.checkpoint)
    g, n, k = GenerateConfig(), pipe.cfg.data.num_frames, args.num_input_frames
    g = replace(g, steps=args.steps or g.steps, num_input_frames=k,
                action_guidance=g.action_guidance if args.action_guidance is None else args.action_guidance)
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {date.today()}; "
          f"{args.checkpoint}, {g.sampler} {g.steps} steps, guidance {g.guidance}, action guidance "
          f"{g.action_guidance}")
    rows = []
    for path in find_rollouts(args.sim, args.max_rollouts):
        r = load_rollout(path, pipe.cfg.data.resolution, n, need_masks=False)
        actions = np.asarray(r.meta["actions"], dtype=float)[: n - 1]
        past, future = actions[: k - 1], actions[k - 1:]  # the input frames' own actions stay true
        variants = {"true": future, "zero": np.zeros_like(future), "reversed": future[::-1]}
        pred = {}
        for name, a in variants.items():
            meta = dict(r.meta, actions=np.concatenate([past, a]).tolist())
            pred[name] = pipe.video2world(r.frames[:k], r.meta["caption"], g, net_kw=pipe.conditions(meta, g))[k:n]
        meta = dict(r.meta, actions=actions.tolist())
        pred["seed"] = pipe.video2world(r.frames[:k], r.meta["caption"], replace(g, seed=g.seed + 1),
                                        net_kw=pipe.conditions(meta, g))[k:n]
        truth = r.frames[k:n]
        moving = moving_region(truth, r.frames[k - 1])
        score = {key: masked_psnr(v, truth, moving) for key, v in pred.items()}
        rows.append({"name": r.name, **{f"psnr_{key}": v for key, v in score.items()},
                     "whole": masked_psnr(pred["true"], truth, np.ones(truth.shape[:3], bool)),
                     "sharpness": gradient_magnitude(pred["true"]) / gradient_magnitude(truth),
                     "rms_reversed": rms(pred["true"], pred["reversed"]), "rms_zero": rms(pred["true"], pred["zero"]),
                     "rms_seed": rms(pred["true"], pred["seed"])})
        print(f"  {r.name}: moving PSNR true {score['true']:.2f}, zero {score['zero']:.2f}, reversed "
              f"{score['reversed']:.2f}, other seed {score['seed']:.2f}; RMS change reversed "
              f"{rows[-1]['rms_reversed']:.2f}, zero {rows[-1]['rms_zero']:.2f}, seed {rows[-1]['rms_seed']:.2f}",
              flush=True)
    print("mean moving-region PSNR: " + ", ".join(f"{key} {np.mean([x[f'psnr_{key}'] for x in rows]):.2f} dB"
                                                  for key in ("true", "zero", "reversed", "seed"))
          + f"; true actions: whole-frame {np.mean([x['whole'] for x in rows]):.2f} dB, gradient magnitude "
          f"{np.mean([x['sharpness'] for x in rows]):.2f}x the truth's")
    for other in ("zero", "reversed"):
        gain = np.array([x["psnr_true"] - x[f"psnr_{other}"] for x in rows])
        print(f"true vs {other}: mean gain {gain.mean():+.2f} dB (floor +1), true wins in {np.mean(gain > 0):.0%} "
              f"of {len(rows)} rollouts (floor 80 %)")
    print(f"RMS change (uint8 levels): reversed actions {np.mean([x['rms_reversed'] for x in rows]):.2f}, zero "
          f"actions {np.mean([x['rms_zero'] for x in rows]):.2f}, another seed {np.mean([x['rms_seed'] for x in rows]):.2f}")


if __name__ == "__main__":
    main()
