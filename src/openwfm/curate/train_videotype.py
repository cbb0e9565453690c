"""Build the video-type training set and train the classifier (the recipe of the shipped weights):

    python -m openwfm.curate.train_videotype --natural A.avi ... --animation B.mp4 --synthetic SIM_DIR \
        --val-natural C.mp4 --val-animation D.avi --val-synthetic SIM_DIR2 --out DIR

Clips of 16 frames are taken every ``stride`` frames of each video (denser for short videos); screen content (charts, text pages,
slides, UI boxes) is generated here, with other seeds for validation. Features: ``videotype.clip_features``;
model: standardization + one linear softmax layer (Adam, weight decay). Prints per-class validation
accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from openwfm.curate.videotype import CLASSES, TypeClassifier, clip_features, save_classifier


def screen_clip(rng: np.random.Generator, t: int = 8, h: int = 240, w: int = 320) -> np.ndarray:
    """Generated screen content: a text page, a slide, a chart or UI boxes, scrolling or updating."""
    kind = rng.integers(4)
    bg = np.array([255, 255, 255]) if rng.random() < 0.6 else rng.integers(0, 256, 3)
    frames = []
    words = ["data", "model", "results", "Figure", "Table", "revenue", "2024", "loss", "video", "the", "and",
             "physics", "report", "Q3", "total", "click", "Settings", "File", "Edit", "View"]
    lines = [" ".join(rng.choice(words, int(rng.integers(2, 7)))) for _ in range(20)]
    ys = rng.normal(0, 1, 40).cumsum()
    for i in range(t):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = bg
        ink = (0, 0, 0) if bg.mean() > 128 else (255, 255, 255)
        if kind == 0:  # text page, scrolling
            for j, line in enumerate(lines):
                y = 20 + 16 * j - 2 * i
                if 0 < y < h:
                    cv2.putText(img, line, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, ink, 1, cv2.LINE_AA)
        elif kind == 1:  # slide
            cv2.rectangle(img, (0, 0), (w, 40), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
            cv2.putText(img, lines[0].title(), (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
            for j in range(min(5, 1 + i)):
                cv2.circle(img, (20, 70 + 30 * j), 4, ink, -1)
                cv2.putText(img, lines[j + 1], (32, 75 + 30 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.55, ink, 1, cv2.LINE_AA)
        elif kind == 2:  # chart, updating
            cv2.line(img, (30, h - 30), (w - 10, h - 30), ink, 1)
            cv2.line(img, (30, 10), (30, h - 30), ink, 1)
            vals = ys[i:i + 30]
            pts = np.stack([30 + np.arange(len(vals)) * (w - 50) / 30,
                            h / 2 - vals / (np.abs(ys).max() + 1e-6) * (h / 2 - 40)], 1).astype(np.int32)
            cv2.polylines(img, [pts], False, tuple(int(c) for c in rng.integers(0, 200, 3)), 2, cv2.LINE_AA)
            for k in range(0, 30, 5):
                cv2.putText(img, str(k), (int(30 + k * (w - 50) / 30), h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, ink, 1)
        else:  # UI: menu bar, buttons, a moving cursor
            cv2.rectangle(img, (0, 0), (w, 22), (230, 230, 230), -1)
            for k, name in enumerate(["File", "Edit", "View", "Help"]):
                cv2.putText(img, name, (8 + 50 * k, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
            for k in range(4):
                x0, y0 = 20 + (k % 2) * 150, 50 + (k // 2) * 80
                cv2.rectangle(img, (x0, y0), (x0 + 120, y0 + 50), tuple(int(c) for c in rng.integers(60, 220, 3)), -1)
                cv2.putText(img, lines[k][:12], (x0 + 6, y0 + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            cv2.circle(img, (40 + 10 * i, 60 + 6 * i), 5, (0, 0, 0), -1)
        frames.append(img)
    return np.stack(frames)


def video_clips(paths: list[str], length: int = 16, stride: int = 30, limit: int = 40) -> list[np.ndarray]:
    from openwfm.curate.stages import find_inputs
    from openwfm.video import read_video

    out = []
    for p in find_inputs(paths):
        frames = read_video(p).frames
        step = min(stride, max(4, (len(frames) - length) // 10))  # short videos: denser, ~10 clips
        for s in range(0, max(1, len(frames) - length + 1), step)[:limit]:
            out.append(frames[s:s + length])
    return out


def features(groups: dict[str, list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for label, clips in groups.items():
        for c in clips:
            xs.append(clip_features(c))
            ys.append(CLASSES.index(label))
    return np.stack(xs), np.asarray(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for split in ("", "val-"):
        for c in ("natural", "animation", "synthetic"):
            ap.add_argument(f"--{split}{c}", nargs="+", default=[])
    ap.add_argument("--screen", type=int, default=60, help="generated screen clips for training")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, vrng = np.random.default_rng(args.seed), np.random.default_rng(args.seed + 1000)
    train = {c: video_clips(getattr(args, c)) for c in ("natural", "animation", "synthetic")}
    train["screen"] = [screen_clip(rng) for _ in range(args.screen)]
    val = {c: video_clips(getattr(args, f"val_{c}")) for c in ("natural", "animation", "synthetic")}
    val["screen"] = [screen_clip(vrng) for _ in range(20)]
    x, y = features(train)
    xv, yv = features({k: v for k, v in val.items() if v})
    torch.manual_seed(args.seed)
    model = TypeClassifier(x.shape[1])
    model.mean.copy_(torch.from_numpy(x.mean(0)))
    model.std.copy_(torch.from_numpy(x.std(0) + 1e-3))
    counts = np.bincount(y, minlength=len(CLASSES))
    weight = torch.tensor(len(y) / (len(CLASSES) * np.maximum(counts, 1)), dtype=torch.float32)  # balance classes
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(400):
        loss = torch.nn.functional.cross_entropy(model(xt), yt, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(xv)).argmax(-1).numpy()
    acc = {CLASSES[c]: float((pred[yv == c] == c).mean()) for c in np.unique(yv)}
    info = {"train_clips": {c: int(n) for c, n in zip(CLASSES, counts)}, "val_accuracy": acc,
            "train_sources": {c: [Path(p).name for p in getattr(args, c)] for c in ("natural", "animation", "synthetic")},
            "val_sources": {c: [Path(p).name for p in getattr(args, f"val_{c}")] for c in ("natural", "animation", "synthetic")}}
    save_classifier(model, args.out, info)
    print(info)


if __name__ == "__main__":
    main()
