"""Action control, one run: do robot actions help predict the future, and do other actions change it?

    python benchmarks/action_control.py --action runs/action-tiny --blind runs/action-blind --sim SIM_HELDOUT/push

Both models are post-trained the same way from the same base on ``push`` rollouts (``wfm posttrain
action``; the blind one with ``blind=true``: its actions are zeroed in training, so it can use none).
For each held-out rollout: its first frame and its actions go in, 1 + k*4 frames come out (the same seed
for every variant). Reported: PSNR of the predicted frames 1.. against the true frames for the action
model and the blind one (actions must help), and the PSNR between the action model's prediction under
the true actions and under counterfactual ones (reversed in time, and zero) next to the PSNR between two
seeds under the same actions (counterfactuals must change the future more than the sampling noise does).
Whole-frame PSNR is dominated by the static table and floor; the "moving region" rows measure only the
pixels that change in the true video (differ from its first frame by more than 12/255, dilated by 2 px):
the arm and what it pushes, where actions carry their information.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import cv2
import numpy as np
import torch

from openwfm.diffusion.pipeline import GenerateConfig, WorldPipeline
from openwfm.evaluate.metrics import psnr
from openwfm.video import read_video


def predict(pipe: WorldPipeline, first: np.ndarray, meta: dict, g: GenerateConfig) -> np.ndarray:
    n, tc = pipe.cfg.data.num_frames, pipe.codec.model.cfg.temporal_compression
    cfg = dataclasses.replace(pipe.cfg, blind=False)  # scaled actions as given (the blind model is given zeros)
    return pipe.video2world(first, "", g, net_kw={"action": cfg.action_input(meta, 0, 1, n, tc)[None]})


def moving_mask(truth: np.ndarray, threshold: int = 12, dilate: int = 2) -> np.ndarray:
    """(T, H, W) bool: pixels of each true frame that differ from the first frame (max over channels)."""
    diff = np.abs(truth.astype(np.int16) - truth[:1].astype(np.int16)).max(-1) > threshold
    kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
    return np.stack([cv2.dilate(d.astype(np.uint8), kernel) > 0 for d in diff])


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, uint8 range) over the masked pixels of all frames together; nan when the mask is empty."""
    if not mask.any():
        return float("nan")
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(-1)[mask].mean()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--action", required=True)
    ap.add_argument("--blind", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--steps", type=int, default=15)
    args = ap.parse_args()
    pipe, blind = WorldPipeline.from_run(args.action), WorldPipeline.from_run(args.blind)
    res, n = pipe.cfg.data.resolution, pipe.cfg.data.num_frames
    rows: dict[str, list[float]] = {k: [] for k in ("action model vs truth", "blind model vs truth",
                                                    "true vs reversed actions", "true vs zero actions",
                                                    "seed vs seed, same actions",
                                                    "moving region: action model", "moving region: blind model")}
    metas = [json.loads(p.read_text()) for p in sorted(Path(args.sim).glob("*.json"))]
    for k, meta in enumerate(metas):
        frames = np.stack([cv2.resize(f, (res, res), interpolation=cv2.INTER_AREA)
                           for f in read_video(Path(args.sim) / f"{meta['name']}.mp4").frames[:n]])
        acts = np.array(meta["actions"])[:n - 1]
        g = GenerateConfig(steps=args.steps, guidance=0.0, num_input_frames=1, fps=12.0, seed=k)
        g2 = GenerateConfig(**{**g.__dict__, "seed": k + 1000})
        true = predict(pipe, frames[:1], {"actions": acts.tolist()}, g)
        rev = predict(pipe, frames[:1], {"actions": acts[::-1].tolist()}, g)
        zero = predict(pipe, frames[:1], {"actions": np.zeros_like(acts).tolist()}, g)
        again = predict(pipe, frames[:1], {"actions": acts.tolist()}, g2)
        bl = predict(blind, frames[:1], {"actions": np.zeros_like(acts).tolist()}, g)

        def p(a, b):
            return float(psnr(a[1:], b[1:]).mean())
        mask = moving_mask(frames)[1:]
        for name, v in zip(rows, (p(true, frames), p(bl, frames), p(true, rev), p(true, zero), p(true, again),
                                  masked_psnr(true[1:], frames[1:], mask), masked_psnr(bl[1:], frames[1:], mask))):
            rows[name].append(v)
    print(f"{platform.machine()}, torch {torch.__version__}; {len(metas)} held-out push rollouts, {n} frames at "
          f"{res}px, {args.steps} steps")
    for name, vals in rows.items():
        print(f"  {name:<30} PSNR {np.nanmean(vals):6.2f} dB")
    gain = np.array(rows["moving region: action model"]) - np.array(rows["moving region: blind model"])
    print(f"  actions help in {int((gain > 0).sum())}/{len(gain)} rollouts (moving region); mean gain "
          f"{np.nanmean(gain):+.2f} dB")


if __name__ == "__main__":
    main()
