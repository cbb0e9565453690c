"""Which sampler, step count and guidance suit a world model? Video2World on validation rollouts (seeds
that neither training nor the held-out evaluation uses), every setting beside copy-last-frame, from 1 and
9 input frames; the best setting becomes ``GenerateConfig``'s default (issue 19: "defaults that fit the
model").

    wfm sim falling --num 4 --seed 800000 --out VAL/falling   (likewise push, orbit)
    python benchmarks/v2w_settings.py --sim VAL/falling VAL/push VAL/orbit [-c default-v2w]

Scored by moving-region PSNR (where copy-last is wrong), then whole-frame PSNR; the gradient ratio says
whether samples are blurred (< 1) or noisy (> 1). ``--spread`` adds the seed spread: the RMS difference
(uint8 levels) between the samples of seeds 0 and 1, over the whole frame and the moving region — how much
of a sample a setting still draws (a setting whose only step lands near sigma_min gives the conditional mean).
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np
import torch

from openwfm.evaluate.metrics import moving_region
from openwfm.evaluate.physics import (BASELINES, PhysicsConfig, WorldModelPredictor, evaluate_physics, find_rollouts,
                                      load_rollout)
from openwfm.pipelines.world import GenerateConfig, WorldPipeline

# (sampler, steps, guidance, sigma_max): sigma_max 80 is Cosmos's; a residual model's data are ~0.25 in scale
# and its training noise rarely reaches 80, so lower starts are tried too
GRID = [("2ab", 10, 0.0, 80.0), ("2ab", 35, 0.0, 80.0), ("2ab", 35, 7.0, 80.0), ("2ab", 5, 0.0, 5.0),
        ("2ab", 10, 0.0, 5.0), ("2ab", 20, 0.0, 5.0), ("euler", 10, 0.0, 5.0), ("heun", 10, 0.0, 5.0),
        ("2ab", 10, 1.0, 5.0), ("2ab", 10, 3.0, 5.0), ("2ab", 10, 0.0, 20.0), ("euler", 1, 0.0, 5.0),
        ("euler", 20, 0.0, 5.0), ("euler", 10, 0.0, 2.0), ("euler", 10, 0.0, 1.0), ("heun", 5, 0.0, 2.0),
        ("euler", 2, 0.0, 5.0), ("euler", 3, 0.0, 5.0), ("euler", 4, 0.0, 5.0), ("euler", 5, 0.0, 5.0)]


def _setting(text: str) -> tuple[str, int, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise SystemExit(f"--setting {text!r}: expected SAMPLER,STEPS,GUIDANCE,SIGMA_MAX (e.g. euler,10,0,5)")
    return parts[0], int(parts[1]), float(parts[2]), float(parts[3])


def seed_spread(pipe, files: list, k: int, **setting) -> tuple[float, float]:
    """Mean RMS difference (uint8 levels) between the samples of seeds 0 and 1: whole frame, moving region."""
    whole, moving = [], []
    for f in files:
        r = load_rollout(f, pipe.cfg.data.resolution, pipe.cfg.data.num_frames)
        n_out = len(r.frames) - k
        a, b = (WorldModelPredictor.of(pipe, "model", "caption", seed=s, **setting)(r.frames[:k].copy(), n_out, r.meta)
                .astype(np.float64) for s in (0, 1))
        d = (a - b) ** 2
        whole.append(np.sqrt(d.mean()))
        m = moving_region(r.frames[k:], r.frames[k - 1])
        if m.any():
            moving.append(np.sqrt(d[m].mean()))
    return float(np.mean(whole)), float(np.mean(moving)) if moving else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", nargs="+", required=True, help="Validation rollout directories.")
    ap.add_argument("-c", "--checkpoint", default=None, help="World model (default: the shipped default-v2w).")
    ap.add_argument("--max-rollouts", type=int, default=4, help="Per directory.")
    ap.add_argument("--inputs", type=int, nargs="+", default=[1, 9])
    ap.add_argument("--setting", nargs="+", default=None, metavar="SAMPLER,STEPS,GUIDANCE,SIGMA_MAX",
                    help="Only these settings (e.g. euler,10,0,5) instead of the whole grid.")
    ap.add_argument("--spread", action="store_true", help="Also the seed spread (samples of seeds 0 and 1; twice the time).")
    args = ap.parse_args()
    grid = GRID if args.setting is None else [_setting(x) for x in args.setting]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = WorldPipeline.from_pretrained(args.checkpoint)
    files = find_rollouts(args.sim, args.max_rollouts)
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {date.today()}; "
          f"{args.checkpoint or 'default-v2w'} on {len(files)} validation rollouts; default now: "
          f"{GenerateConfig().sampler} {GenerateConfig().steps} steps, guidance {GenerateConfig().guidance}, "
          f"sigma_max {GenerateConfig().sigma_max}")
    print(f"{'inputs':>6} {'setting':<26} {'PSNR':>6} {'moving':>7} {'1st':>6} {'IoU':>6} {'grad':>5} {'s/clip':>6}"
          + (f" {'spread':>6} {'moving':>6}" if args.spread else ""))
    for k in args.inputs:
        cfg = PhysicsConfig(num_input_frames=k, num_frames=pipe.cfg.data.num_frames,
                            resolution=pipe.cfg.data.resolution, include_truth=False)
        base = evaluate_physics(files, {"copy_last": BASELINES["copy_last"]}, cfg)["rows"]
        print(f"{k:>6} {'copy-last':<26} {np.nanmean([r['psnr'] for r in base]):6.2f} "
              f"{np.nanmean([r['psnr_moving'] for r in base]):7.2f} {np.nanmean([r['psnr_first'] for r in base]):6.2f} "
              f"{np.nanmean([r['mask_iou'] for r in base]):6.3f}")
        for sampler, steps, guidance, sigma_max in grid:
            pred = WorldModelPredictor.of(pipe, "model", "caption", sampler=sampler, steps=steps, guidance=guidance,
                                          sigma_max=sigma_max)
            t0 = time.perf_counter()
            rows = evaluate_physics(files, {"model": pred}, cfg)["rows"]
            dt = (time.perf_counter() - t0) / len(rows)
            mean = {m: float(np.nanmean([r[m] for r in rows])) for m in ("psnr", "psnr_moving", "psnr_first",
                                                                          "mask_iou", "grad_ratio")}
            setting = f"{sampler} {steps} g={guidance:g} smax={sigma_max:g}"
            spread = seed_spread(pipe, files, k, sampler=sampler, steps=steps, guidance=guidance,
                                 sigma_max=sigma_max) if args.spread else ()
            print(f"{k:>6} {setting:<26} {mean['psnr']:6.2f} {mean['psnr_moving']:7.2f} {mean['psnr_first']:6.2f} "
                  f"{mean['mask_iou']:6.3f} {mean['grad_ratio']:5.2f} {dt:6.2f}" + "".join(f" {x:6.2f}" for x in spread),
                  flush=True)


if __name__ == "__main__":
    main()
