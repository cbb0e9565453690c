"""Camera control, one run: do generated videos follow the requested camera path? (Cosmos paper sec. 6.1)

    python benchmarks/camera_control.py -c runs/camera-tiny --sim SIM_HELDOUT/orbit [--steps 35]

For each held-out ``orbit`` rollout: its first frame (at the model's resolution) and its own camera path
go into the camera post-trained model; the Sampson error (``evaluate/geometry.py``: SIFT matches of frame
0 against later frames, median sqrt-Sampson distance in pixels) of the generated frames is measured under
the requested cameras, and under another rollout's cameras (a control: a video that ignores the request
should not score better under its own request than under a foreign one). The true simulator frames under
their cameras are the reference.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import cv2
import numpy as np
import torch

from openwfm.evaluate.geometry import sampson_error
from openwfm.pipelines.world import GenerateConfig, WorldPipeline
from openwfm.posttrain.camera import scale_intrinsics
from openwfm.posttrain.conditions import clip_rays
from openwfm.video import read_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--checkpoint", required=True)
    ap.add_argument("--sim", required=True, help="directory of held-out orbit rollouts (NAME.mp4 + NAME.json)")
    ap.add_argument("--steps", type=int, default=35)
    ap.add_argument("--stride", type=int, default=2)
    args = ap.parse_args()
    pipe = WorldPipeline.from_run(args.checkpoint)
    res, n = pipe.cfg.data.resolution, pipe.cfg.data.num_frames
    g = GenerateConfig(steps=args.steps, guidance=0.0, num_input_frames=1, fps=12.0)
    tc = pipe.codec.model.cfg.temporal_compression
    metas = [json.loads(p.read_text()) for p in sorted(Path(args.sim).glob("*.json"))]
    rows = {"true frames, true cameras": [], "generated, requested cameras": [], "generated, another path": []}
    for k, meta in enumerate(metas):
        path = Path(args.sim) / f"{meta['name']}.mp4"
        frames = np.stack([cv2.resize(f, (res, res), interpolation=cv2.INTER_AREA)
                           for f in read_video(path).frames[:n]])
        s = res / meta["width"]
        K = scale_intrinsics(torch.tensor(meta["camera"]["intrinsics"])[:n], s, s).numpy()
        c2w = np.array(meta["camera"]["cam2world"])[:n]
        rays = clip_rays(meta, 0, 1, n, (res, res), pipe.latent_grid(res, res, g), tc)[None]
        video = pipe.video2world(frames[:1], meta.get("caption", ""), GenerateConfig(**{**g.__dict__, "seed": k}),
                                 net_kw={"extra": rays})
        other = metas[(k + 1) % len(metas)]
        c2w_other = np.array(other["camera"]["cam2world"])[:n]
        rows["true frames, true cameras"].append(sampson_error(frames, K, c2w, args.stride))
        rows["generated, requested cameras"].append(sampson_error(video, K, c2w, args.stride))
        rows["generated, another path"].append(sampson_error(video, K, c2w_other, args.stride))
    print(f"{platform.machine()}, torch {torch.__version__}; {len(metas)} held-out orbits, {n} frames at {res}px, "
          f"{args.steps} steps; model {args.checkpoint}")
    for name, vals in rows.items():
        errs = [e for e, m in vals if np.isfinite(e)]
        matches = sum(m for _, m in vals)
        print(f"  {name:<32} Sampson {np.median(errs) if errs else float('nan'):6.2f} px (median over "
              f"{len(errs)} videos with matches, {matches} matches)")


if __name__ == "__main__":
    main()
