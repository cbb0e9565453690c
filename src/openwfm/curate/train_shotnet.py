"""Train the learned shot detector on synthetic transitions (the recipe of the shipped weights):

    python -m openwfm.curate.train_shotnet --train A.mp4 B.avi ... --val C.mp4 ... --out DIR [--steps 1500]

Every video is decoded once at 48x27 and cut into shots by the classical detector (so real footage with
its own cuts gives clean segments). Each training example is a random video of 3-5 segments joined by
random cuts, dissolves, fades and wipes, with flashes and fast camera motion inside segments
(transitions.py), cropped to one 64-frame window; the loss is per-frame binary cross-entropy (transition
frames up-weighted). The threshold is chosen on the validation videos (other footage) by F1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from openwfm.curate.shotnet import WINDOW, ShotNet, detect_learned, save_shotnet
from openwfm.curate.shots import detect, shots
from openwfm.curate.stages import small_frames_of
from openwfm.curate.transitions import labels, match, random_video


def shot_pool(paths: list[str], min_len: int = 20) -> list[np.ndarray]:
    """Shots (uint8 (T, 27, 48, 3)) of the videos, split by the classical detector."""
    pool = []
    for p in paths:
        f, _ = small_frames_of(p, (27, 48))
        for s, e in shots(len(f), detect(f)):
            if e - s >= min_len:
                pool.append((f[s:e] * 255).round().astype(np.uint8))
    return pool


def example(pool: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    video, trans = random_video(pool, rng, num_segments=int(rng.integers(3, 6)))
    y = labels(len(video), trans)
    if len(video) < WINDOW:
        pad = WINDOW - len(video)
        video = np.concatenate([video, np.repeat(video[-1:], pad, 0)])
        y = np.concatenate([y, np.zeros(pad, np.float32)])
    s = int(rng.integers(0, len(video) - WINDOW + 1))
    return video[s:s + WINDOW], y[s:s + WINDOW]


def f1_score(model: ShotNet, videos: list[tuple[np.ndarray, list]], threshold: float, slack: int = 2) -> float:
    tp = fp = fn = 0
    for video, truth in videos:
        pred = [(t.start + t.end) / 2 for t in detect_learned(video, model, threshold)]
        a, b, c = match(pred, truth, slack)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 2 * tp / max(1, 2 * tp + fp + fn)


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def validation_set(val_paths: list[str], n: int = 30) -> list:
    val_pool = shot_pool(val_paths)
    return [random_video(val_pool, np.random.default_rng(10_000 + i), num_segments=4) for i in range(n)]


def calibrate(model_dir: str, val_paths: list[str]) -> dict:
    """Re-pick the threshold of a saved detector on the validation videos (rewrites its config)."""
    import json

    from openwfm.curate.shotnet import load_shotnet

    model, val = load_shotnet(model_dir), validation_set(val_paths)
    scores = {thr: f1_score(model, val, thr) for thr in THRESHOLDS}
    best = max(scores, key=scores.get)
    cfg_path = Path(model_dir) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(threshold=best, val_f1=scores[best], val_f1_by_threshold=scores)
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return {"threshold": best, "f1": scores}


def train(train_paths: list[str], val_paths: list[str], out: str, steps: int = 1500, batch: int = 4,
          lr: float = 2e-3, seed: int = 0, log_every: int = 100) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pool, val = shot_pool(train_paths), validation_set(val_paths)
    model = ShotNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(1, steps + 1):
        xs, ys = zip(*(example(pool, rng) for _ in range(batch)))
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        loss = F.binary_cross_entropy_with_logits(model.train()(x), y, pos_weight=torch.tensor(5.0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    scores = {thr: f1_score(model, val, thr) for thr in THRESHOLDS}
    best = max(scores, key=scores.get)
    info = {"steps": steps, "train_videos": [Path(p).name for p in train_paths],
            "val_videos": [Path(p).name for p in val_paths], "val_f1": scores[best], "val_f1_by_threshold": scores,
            "train_shots": len(pool)}
    save_shotnet(model, out, best, info)
    return {"threshold": best, "f1": scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrate-only", action="store_true", help="re-pick the threshold of the model in --out")
    args = ap.parse_args()
    if args.calibrate_only:
        print(calibrate(args.out, args.val))
    else:
        print(train(args.train, args.val, args.out, args.steps, seed=args.seed))


if __name__ == "__main__":
    main()
