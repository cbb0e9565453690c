"""Train the learned shot detector on synthetic transitions (the recipe of the shipped weights):

    python -m openwfm.curate.train_shotnet --train A.mp4 B.avi ... --val C.mp4 ... --out DIR [--steps 1500]

Every video is decoded once at 48x27 and cut into shots by the classical detector (so real footage with
its own cuts gives clean segments). Each training example is a random video of 3-5 segments joined by
random cuts, dissolves, fades and wipes, with flashes and fast camera motion inside segments
(transitions.py), cropped to one 64-frame window; the loss is per-frame binary cross-entropy (transition
frames up-weighted). The threshold and the hysteresis level (``detect_learned``) are chosen by F1 on edited
videos of the validation footage (other files), written as H.264 and read back as the held-out benchmark does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from openwfm.curate.shotnet import (SPIKE_LOW, WINDOW, ShotNet, frame_differences, frame_probs, save_shotnet,
                                    spike_cuts, spike_ratio_json, transitions_from_probs)
from openwfm.curate.shots import detect, shots, small_frames
from openwfm.curate.stages import small_frames_of
from openwfm.curate.transitions import edited_video, footage_pieces, labels, match, random_video


def shot_pool(paths: list[str], min_len: int = 20) -> list[np.ndarray]:
    """Shots (uint8 (T, 27, 48, 3)) of the videos, split by the classical detector."""
    pool = []
    for p in paths:
        f, _ = small_frames_of(p, (27, 48))
        for s, e in shots(len(f), detect(f)):
            if e - s >= min_len:
                pool.append((f[s:e] * 255).round().astype(np.uint8))
    return pool


def example(pool: list[np.ndarray], rng: np.random.Generator, hard: bool = True) -> tuple[np.ndarray, np.ndarray]:
    video, trans = random_video(pool, rng, num_segments=int(rng.integers(3, 6)), hard=hard)
    y = labels(len(video), trans)
    if len(video) < WINDOW:
        pad = WINDOW - len(video)
        video = np.concatenate([video, np.repeat(video[-1:], pad, 0)])
        y = np.concatenate([y, np.zeros(pad, np.float32)])
    s = int(rng.integers(0, len(video) - WINDOW + 1))
    return video[s:s + WINDOW], y[s:s + WINDOW]


def f1_of_probs(videos: list[tuple[np.ndarray, list, np.ndarray]], threshold: float, low: float | None = None,
                slack: int = 2, spike_ratio: float = float("inf")) -> float:
    """F1 over ``videos`` (probabilities, true transitions, frame differences), with ``spike_cuts`` added
    unless ``spike_ratio`` is infinite."""
    tp = fp = fn = 0
    for probs, truth, diffs in videos:
        found = transitions_from_probs(probs, threshold, threshold if low is None else low)
        if spike_ratio < float("inf"):
            found = found + spike_cuts(probs, diffs, found, SPIKE_LOW, spike_ratio)
        a, b, c = match([(t.start + t.end) / 2 for t in found], truth, slack)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 2 * tp / max(1, 2 * tp + fp + fn)


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)  # the network saturates: fine steps near 1
LOWS = (0.3, 0.5, 0.7, 0.9)  # hysteresis: a run above ``low`` counts when its peak passes the threshold
# spike cuts (``shotnet.spike_cuts``): the validation footage has few cuts between look-alike static shots, so
# among ratios of equal F1 the most sensitive (lowest) is kept; inf = none
SPIKE_RATIOS = (2.0, 2.5, 3.0, 4.0, 6.0, float("inf"))


def validation_set(val_paths: list[str], n: int = 30, size: tuple[int, int] = (180, 320)) -> list:
    """``n`` edited videos of the validation footage (``transitions.edited_video``, as the held-out
    benchmark builds them; a file's family is its name before the first '_'), each written as H.264 and
    read back at the detector's size as a user's file would be: (uint8 frames, transitions)."""
    import tempfile

    import av

    from openwfm.curate.stages import iter_small_frames
    from openwfm.video import read_video, write_video

    videos = {}
    for p in val_paths:
        frames = read_video(p, missing="ignore").frames
        cuts = [t.start for t in detect(small_frames(frames))]  # the footage's own shots stay apart
        videos[Path(p).name] = (Path(p).name.split("_")[0], frames, cuts)
    pool = footage_pieces(videos, size)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            video, truth = edited_video(pool, np.random.default_rng(9000 + i), *size)
            path = write_video(Path(tmp) / f"val_{i:02d}.mp4", video, 25, crf=18)
            with av.open(str(path)) as c:
                out.append((np.stack(list(iter_small_frames(c, (27, 48)))), truth))
    return out


def pick_threshold(model: ShotNet, val: list) -> tuple[float, float, dict, float]:
    """(threshold, low, F1 by setting, spike ratio) with the best validation F1 (ties: the higher threshold),
    then the spike ratio with the best F1 at that setting (ties: the lower ratio)."""
    probs = [(frame_probs(model, v), truth, frame_differences(v)) for v, truth in val]
    scores = {(thr, low): f1_of_probs(probs, thr, low) for thr in THRESHOLDS for low in LOWS if low <= thr}
    thr, low = max(scores, key=lambda k: (scores[k], k))
    spikes = {r: f1_of_probs(probs, thr, low, spike_ratio=r) for r in SPIKE_RATIOS}
    ratio = max(spikes, key=lambda r: (spikes[r], -r))
    return thr, low, {f"{t}/{lo}": f for (t, lo), f in scores.items()}, ratio


def calibrate(model_dir: str, val_paths: list[str]) -> dict:
    """Re-pick the threshold of a saved detector on the validation videos (rewrites its config)."""
    import json

    from openwfm.curate.shotnet import load_shotnet

    thr, low, scores, ratio = pick_threshold(load_shotnet(model_dir), validation_set(val_paths))
    cfg_path = Path(model_dir) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(threshold=thr, low=low, val_f1=scores[f"{thr}/{low}"], val_f1_by_threshold=scores,
               spike_low=SPIKE_LOW, spike_ratio=spike_ratio_json(ratio))
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return {"threshold": thr, "low": low, "f1": scores[f"{thr}/{low}"], "spike_ratio": ratio}


def train(train_paths: list[str], val_paths: list[str], out: str, steps: int = 1500, batch: int = 4,
          lr: float = 2e-3, seed: int = 0, log_every: int = 100, widths: tuple[int, ...] = (16, 32, 64),
          hard: bool = True, pos_weight: float = 5.0) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pool, val = shot_pool(train_paths), validation_set(val_paths)
    model = ShotNet(widths)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(1, steps + 1):
        xs, ys = zip(*(example(pool, rng, hard) for _ in range(batch)))
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        loss = F.binary_cross_entropy_with_logits(model.train()(x), y, pos_weight=torch.tensor(pos_weight))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    thr, low, scores, ratio = pick_threshold(model, val)
    info = {"steps": steps, "train_videos": [Path(p).name for p in train_paths],
            "val_videos": [Path(p).name for p in val_paths], "val_f1": scores[f"{thr}/{low}"],
            "val_f1_by_threshold": scores, "train_shots": len(pool), "batch": batch, "hard_examples": hard,
            "pos_weight": pos_weight}
    save_shotnet(model, out, thr, info, low, spike_ratio=ratio)
    return {"threshold": thr, "low": low, "f1": scores[f"{thr}/{low}"], "spike_ratio": ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--widths", default="16,32,64", help="channels of the three DDCNN blocks")
    ap.add_argument("--easy", action="store_true", help="no hard examples (look-alike cuts, shake, occluders, speed-ups, "
                    "exposure drifts): the recipe of the weights before 2026-12-07")
    ap.add_argument("--pos-weight", type=float, default=5.0, help="weight of transition frames in the loss")
    ap.add_argument("--calibrate-only", action="store_true", help="re-pick the threshold of the model in --out")
    args = ap.parse_args()
    if args.calibrate_only:
        print(calibrate(args.out, args.val))
    else:
        print(train(args.train, args.val, args.out, args.steps, batch=args.batch, seed=args.seed,
                    widths=tuple(int(w) for w in args.widths.split(",")), hard=not args.easy,
                    pos_weight=args.pos_weight))


if __name__ == "__main__":
    main()
