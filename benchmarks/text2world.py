"""Text2World faithfulness: does a sample show what its caption names? (issue 19)

    python benchmarks/text2world.py --sim HELDOUT/falling HELDOUT/orbit HELDOUT/push [-c default-v2w] [--seeds 2]

Captions are those of held-out rollouts (seeds no model trained on). Each names its objects' colours and
shapes. For every caption the model generates Text2World samples (no input frame); a named colour "appears
as an object" when at least ``--min-pixels`` pixels of it are found in at least half of the frames. Colours
are found with the evaluation's colour Gaussians (``evaluate/masks.py``), fitted here on the true frames of
the same rollouts with one label per named colour (objects) and per background surface, so floors and the
robot are not mistaken for objects. For falling captions, an object that appears must also fall and come
to rest: its centroid moves down by >= 2 px and moves <= 1 px over the last 4 frames.

Rows: ``truth`` (the rollouts' own frames: the detector's ceiling), ``model`` (the caption) and ``no prompt``
(the same model with an empty prompt: how often a colour shows up by chance). Floor: >= 70 % of
(caption, colour) pairs appear in the model's samples.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from datetime import date

import numpy as np
import torch

from openwfm.evaluate.masks import ColorMaskConfig, fit_color_model, label_pixels
from openwfm.evaluate.physics import find_rollouts, load_rollout
from openwfm.pipelines.world import GenerateConfig, WorldPipeline


def calibrate(rollouts, resolution: int, frames: int):
    """A colour model with one object label per colour name (1..) and one background label per surface."""
    colours = sorted({o["color"] for r in rollouts for o in r.meta["objects"]})
    cid = {c: i + 1 for i, c in enumerate(colours)}
    backgrounds: dict[str, int] = {}
    xs, ms = [], []
    for r in rollouts:
        m = np.zeros_like(r.masks)
        for k, name in r.meta["mask_labels"].items():
            obj = next((o for o in r.meta["objects"] if o["mask_id"] == int(k)), None)
            if obj is not None:
                m[r.masks == int(k)] = cid[obj["color"]]
            else:
                m[r.masks == int(k)] = backgrounds.setdefault(name, 100 + len(backgrounds))
        xs.append(r.frames)
        ms.append(m)
    model = fit_color_model(np.concatenate(xs), np.concatenate(ms), list(cid.values()))
    return model, cid


def judge(model, cid: dict, frames: np.ndarray, meta: dict, min_pixels: int) -> tuple[list[bool], list[bool]]:
    """Per named colour: appears as an object; and (falling only) falls then rests."""
    labels = label_pixels(model, frames, ColorMaskConfig(min_component=2))
    appear, falls = [], []
    for colour in sorted({o["color"] for o in meta["objects"]}):
        hit = labels == cid[colour]
        counts = hit.reshape(len(frames), -1).sum(1)
        ok = bool((counts >= min_pixels).mean() >= 0.5)
        appear.append(ok)
        if meta.get("scenario") == "falling" and ok:
            ys = np.array([np.nonzero(h)[0].mean() if h.any() else np.nan for h in hit])
            ys = ys[np.isfinite(ys)]
            falls.append(len(ys) >= 4 and ys[-1] - ys[0] >= 2 and np.ptp(ys[-4:]) <= 1)
    return appear, falls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", nargs="+", required=True)
    ap.add_argument("-c", "--checkpoint", default=None)
    ap.add_argument("--max-rollouts", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--min-pixels", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: wfm generate's)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: wfm generate's)")
    args = ap.parse_args()
    pipe = WorldPipeline.from_pretrained(args.checkpoint)
    res, n = pipe.cfg.data.resolution, pipe.cfg.data.num_frames
    rollouts = [load_rollout(p, res, n) for p in find_rollouts(args.sim, args.max_rollouts)]
    model, cid = calibrate(rollouts, res, n)
    chosen = {"guidance": args.guidance, "steps": args.steps}
    g = replace(GenerateConfig(), **{k: v for k, v in chosen.items() if v is not None})
    print(f"{platform.machine()}, torch {torch.__version__}, {date.today()}; {args.checkpoint or 'default-v2w'}, "
          f"{len(rollouts)} held-out captions x {args.seeds} seeds, {g.sampler} {g.steps} steps, guidance {g.guidance}")
    rows = {"truth": ([], []), "model": ([], []), "no prompt": ([], [])}
    for r in rollouts:
        a, f = judge(model, cid, r.frames, r.meta, args.min_pixels)
        rows["truth"][0].extend(a)
        rows["truth"][1].extend(f)
        for seed in range(args.seeds):
            for name, prompt in (("model", r.meta["caption"]), ("no prompt", "")):
                video = pipe.text2world(prompt, GenerateConfig(**{**g.__dict__, "seed": seed}))
                a, f = judge(model, cid, video, r.meta, args.min_pixels)
                rows[name][0].extend(a)
                rows[name][1].extend(f)
    print(f"{'row':<10} {'colour appears':>15} {'falls and rests':>16}")
    for name, (a, f) in rows.items():
        fr = f"{100 * np.mean(f):.0f} % of {len(f)}" if f else "-"
        print(f"{name:<10} {100 * np.mean(a):>6.0f} % of {len(a):<4} {fr:>16}")


if __name__ == "__main__":
    main()
