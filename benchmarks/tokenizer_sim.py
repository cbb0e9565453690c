"""Tokenizer round trips of held-out simulator rollouts, scored as issue 19 asks (PSNR >= 32 dB, mask IoU
>= 0.7, no channel mean shifted by more than 2 levels), several tokenizers side by side in one run, beside
the truth (the mask labelling's own ceiling).

    python benchmarks/tokenizer_sim.py --sim H/falling H/push H/orbit -c cv4x4x4-sim32 RUN_OR_EXPORT ...

Each rollout's first 17 frames at 64 px (``load_rollout``) are encoded and decoded whole; the metrics are
those of ``wfm eval physics`` on all 17 frames: PSNR, mask IoU (colour-model masks of the round trip vs the
simulator's, ``evaluate.masks``), gradient ratio (mean gradient magnitude vs the truth's), and the largest
per-channel mean error in uint8 levels (per rollout, then the worst).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from openwfm.evaluate.masks import mask_iou, object_masks
from openwfm.evaluate.metrics import gradient_magnitude, psnr
from openwfm.evaluate.physics import find_rollouts, load_rollout
from openwfm.tokenizer.api import load_tokenizer
from openwfm.video.transforms import from_tensor, to_tensor


def round_trip(model, frames: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return from_tensor(model.decode(model.encode(to_tensor(frames)[None])).clamp(-1, 1)[0])


def score(pred: np.ndarray, r) -> dict:
    labels = object_masks(r.frames, r.masks, len(r.frames), pred, r.object_ids)
    shift = np.abs(pred.reshape(-1, 3).astype(np.float64).mean(0) - r.frames.reshape(-1, 3).astype(np.float64).mean(0))
    return {"psnr": float(psnr(pred, r.frames)[0]), "iou": mask_iou(labels, r.masks, r.object_ids),
            "grad": gradient_magnitude(pred) / max(gradient_magnitude(r.frames), 1e-9), "shift": float(shift.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", nargs="+", required=True, help="held-out rollout directories")
    ap.add_argument("-c", "--checkpoint", nargs="+", default=["cv4x4x4-sim32"], help="tokenizers to compare")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rollouts = [load_rollout(p, args.resolution, args.frames) for p in find_rollouts(args.sim)]
    models = {c: load_tokenizer(c) for c in args.checkpoint}
    rows: dict[tuple[str, str], list[dict]] = {}
    t0 = time.time()
    for r in rollouts:
        scenario = r.meta.get("scenario", "?")
        rows.setdefault(("truth", scenario), []).append(score(r.frames, r))
        for name, model in models.items():
            rows.setdefault((name, scenario), []).append(score(round_trip(model, r.frames), r))
    scenarios = sorted({s for _, s in rows})
    print(f"{len(rollouts)} rollouts, {args.frames} frames at {args.resolution} px; {platform.machine()}, "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s")
    print(f"{'tokenizer':<44} {'PSNR':>6} {'IoU':>6} {'grad':>5} {'shift':>6}   " +
          "  ".join(f"{s} PSNR/IoU" for s in scenarios))
    for name in ["truth"] + list(models):
        every = [m for s in scenarios for m in rows[(name, s)]]
        per = "  ".join(f"{np.mean([m['psnr'] for m in rows[(name, s)]]):6.2f}/"
                        f"{np.nanmean([m['iou'] for m in rows[(name, s)]]):.3f}" for s in scenarios)
        print(f"{name[-44:]:<44} {np.mean([m['psnr'] for m in every]):6.2f} {np.nanmean([m['iou'] for m in every]):6.3f} "
              f"{np.mean([m['grad'] for m in every]):5.2f} {max(m['shift'] for m in every):6.2f}   {per}")


if __name__ == "__main__":
    main()
