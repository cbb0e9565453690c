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
the arm and what it pushes, where actions carry their information. The "conditional mean" rows are one
Euler step from sigma_max (the denoiser's estimate of the expected future, no sampling noise).

Denoising error (the low-noise measure): every held-out clip's true latent is noised at a few sigmas (the
same noise for every variant) and denoised from its first frame with the true actions, another rollout's
actions, zero actions, and by the blind model; reported is the mean squared error over the predicted
frames' latent positions that change most (the top 15% of each clip: where the arm moves). A model that
uses its actions has a lower error with the true actions than with anyone else's.
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

from openwfm.diffusion.model import hold_last_frame
from openwfm.evaluate.metrics import psnr
from openwfm.pipelines.world import GenerateConfig, WorldPipeline
from openwfm.video import read_video
from openwfm.video.transforms import to_tensor


def action_input(pipe: WorldPipeline, meta: dict) -> torch.Tensor:
    """The model's scaled action input for one clip of ``meta``'s actions, as given (the blind model is
    given zeros by the callers, not by its config)."""
    n, tc = pipe.cfg.data.num_frames, pipe.codec.model.cfg.temporal_compression
    return dataclasses.replace(pipe.cfg, blind=False).action_input(meta, 0, 1, n, tc)


def predict(pipe: WorldPipeline, first: np.ndarray, meta: dict, g: GenerateConfig) -> np.ndarray:
    return pipe.video2world(first, "", g, net_kw={"action": action_input(pipe, meta)[None]})


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


@torch.no_grad()
def denoising_errors(pipe: WorldPipeline, blind: WorldPipeline, x0: torch.Tensor, actions: torch.Tensor,
                     sigmas: tuple[float, ...] = (0.3, 1.0, 3.0), top: float = 0.15,
                     held: torch.Tensor | None = None) -> dict[str, list[float]]:
    """Moving-region latent MSE per sigma of the action model under the true / another rollout's / zero
    actions and of the blind model (zero actions), for clean latents x0 (N, C, T, H, W) from frame 1 (``held``:
    the latents of frame 0 held, the prior of a ``residual_prior="hold"`` model)."""
    n = x0.shape[0]
    change = (x0[:, :, 1:] - x0[:, :, :1]).abs().mean(1)
    moving = change > change.flatten(1).quantile(1 - top, dim=1).view(-1, 1, 1, 1)
    zero = torch.zeros_like(actions)
    empty = [p.encode_prompt("", "")[1].expand(n, -1, -1) for p in (pipe, blind)]  # the prompt predict gives
    variants = {"true actions": (pipe, empty[0], actions), "another rollout's actions": (pipe, empty[0],
                actions.roll(1, 0)), "zero actions": (pipe, empty[0], zero), "blind model": (blind, empty[1], zero)}
    out: dict[str, list[float]] = {k: [] for k in variants}
    for s in sigmas:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(s * 1000)))
        for name, (p, text, a) in variants.items():
            d = p.model.denoise(x0 + noise * s, torch.full((n,), s), text, cond=x0, num_cond=1,
                                aug_noise=torch.zeros_like(x0), fps=12.0, action=a, held=held)
            out[name].append(float(((d - x0)[:, :, 1:] ** 2).mean(1)[moving].mean()))
    return out


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
                                                    "conditional mean: action model", "conditional mean: blind model",
                                                    "true vs reversed actions", "true vs zero actions",
                                                    "seed vs seed, same actions",
                                                    "moving region: action model", "moving region: blind model",
                                                    "moving region, mean: action model",
                                                    "moving region, mean: blind model")}
    metas = [json.loads(p.read_text()) for p in sorted(Path(args.sim).glob("*.json"))]
    latents, helds, inputs = [], [], []
    for k, meta in enumerate(metas):
        frames = np.stack([cv2.resize(f, (res, res), interpolation=cv2.INTER_AREA)
                           for f in read_video(Path(args.sim) / f"{meta['name']}.mp4").frames[:n]])
        acts = np.array(meta["actions"])[:n - 1]
        latents.append(pipe.codec.encode(to_tensor(frames)[None])[0])
        helds.append(pipe.codec.encode(hold_last_frame(to_tensor(frames)[None], 1))[0])
        inputs.append(action_input(pipe, meta))
        g = GenerateConfig(steps=args.steps, guidance=0.0, num_input_frames=1, fps=12.0, seed=k)
        g2 = GenerateConfig(**{**g.__dict__, "seed": k + 1000})
        g1 = GenerateConfig(**{**g.__dict__, "steps": 1})
        true = predict(pipe, frames[:1], {"actions": acts.tolist()}, g)
        rev = predict(pipe, frames[:1], {"actions": acts[::-1].tolist()}, g)
        zero = predict(pipe, frames[:1], {"actions": np.zeros_like(acts).tolist()}, g)
        again = predict(pipe, frames[:1], {"actions": acts.tolist()}, g2)
        bl = predict(blind, frames[:1], {"actions": np.zeros_like(acts).tolist()}, g)
        mean = predict(pipe, frames[:1], {"actions": acts.tolist()}, g1)
        bl_mean = predict(blind, frames[:1], {"actions": np.zeros_like(acts).tolist()}, g1)

        def p(a, b):
            return float(psnr(a[1:], b[1:]).mean())
        mask = moving_mask(frames)[1:]
        for name, v in zip(rows, (p(true, frames), p(bl, frames), p(mean, frames), p(bl_mean, frames),
                                  p(true, rev), p(true, zero), p(true, again),
                                  masked_psnr(true[1:], frames[1:], mask), masked_psnr(bl[1:], frames[1:], mask),
                                  masked_psnr(mean[1:], frames[1:], mask), masked_psnr(bl_mean[1:], frames[1:], mask))):
            rows[name].append(v)
    print(f"{platform.machine()}, torch {torch.__version__}; {len(metas)} held-out push rollouts, {n} frames at "
          f"{res}px, {args.steps} steps")
    for name, vals in rows.items():
        print(f"  {name:<36} PSNR {np.nanmean(vals):6.2f} dB")
    for kind, a, b in (("sample", "moving region: action model", "moving region: blind model"),
                       ("mean", "moving region, mean: action model", "moving region, mean: blind model")):
        gain = np.array(rows[a]) - np.array(rows[b])
        print(f"  {kind}: actions help in {int((gain > 0).sum())}/{len(gain)} rollouts (moving region); mean gain "
              f"{np.nanmean(gain):+.2f} dB")
    sigmas = (0.3, 1.0, 3.0)
    errs = denoising_errors(pipe, blind, torch.stack(latents), torch.stack(inputs), sigmas, held=torch.stack(helds))
    print("  denoising error, moving region (latent MSE at sigma " + " / ".join(map(str, sigmas)) + ")")
    for name, e in errs.items():
        print(f"    {name:<28} " + "  ".join(f"{v:.5f}" for v in e)
              + f"   ({100 * (np.mean(e) / np.mean(errs['true actions']) - 1):+.1f}% vs true actions)")


if __name__ == "__main__":
    main()
