"""The post-guard on real and simulated footage: face coverage checked by an independent detector, false
pixelation on face-free footage, content-safety false positives, and speed.

    python benchmarks/guardrail_video.py [--eval-stride 2] [--vtest-frames 200] [--sim-dir DIR]

(a) Megamind.avi (opencv-doc; 720x528, 270 frames, animated faces): a SECOND, independent detector,
    scikit-image's multi-block LBP frontal-face cascade (benchmark-only dependency), looks for faces >= 20 px
    in the original frames (every --eval-stride-th frame; with 8 agreeing windows, and with skimage's default
    4, which also fires on hands, necks and candles). A face counts as covered when >= 80% of its box is
    pixelated in our output; a frame is covered when all its faces are. Reported: covered frames / frames
    where LBP finds a face, the same per face, and the faces LBP still finds on our output. Compared with the
    plain per-frame Haar detector (frontalface_default, no tracking, no margin) and with our detections before
    tracking.
(b) Face-free footage (simulator rollouts, tree.avi, vtest.avi whose pedestrians are far away): fraction of
    frames with any pixelation and of pixels pixelated.
(c) Seconds per frame of face detection (+ tracking and pixelation) and of the safety classifier (open_nsfw,
    every frame scored), and the classifier's max unsafe score on this benign footage.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from openwfm.guardrail.faces import FaceBlur, FaceConfig, detect_faces, render_tracks
from openwfm.guardrail.post import PostGuardConfig
from openwfm.guardrail.video_safety import OpenNSFW, VideoSafety
from openwfm.video import read_video

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
COVERED = 0.8  # fraction of a face box that must be pixelated
REFERENCE = FaceConfig(cascades=("frontalface_default",), profile=False)  # the textbook per-frame detector


def lbp_faces(frames: np.ndarray, stride: int, neighbours: int = 8) -> dict[int, np.ndarray]:
    """scikit-image's LBP cascade on every ``stride``-th frame: frame -> (N, 4) boxes >= 20 px. A face needs
    ``neighbours`` agreeing windows (skimage's default 4 also fires on hands, necks and candles)."""
    from skimage import data
    from skimage.feature import Cascade

    cascade = Cascade(data.lbp_frontal_face_cascade_filename())
    found = {}
    for t in range(0, len(frames), stride):
        h, w = frames.shape[1:3]
        dets = cascade.detect_multi_scale(img=frames[t], scale_factor=1.2, step_ratio=1, min_size=(20, 20),
                                          max_size=(min(h, w), min(h, w)),
                                          min_neighbor_number=neighbours)
        found[t] = np.array([[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in dets],
                            np.int64).reshape(-1, 4)
    return found


def masks(shape: tuple[int, ...], boxes: list[np.ndarray]) -> np.ndarray:
    """(T, H, W) bool: pixels inside any (clipped) box of each frame."""
    out = np.zeros(shape[:3], bool)
    for t, bs in enumerate(boxes):
        for x0, y0, x1, y1 in np.asarray(bs).reshape(-1, 4)[:, :4].astype(int):
            out[t, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return out


def coverage(faces: dict[int, np.ndarray], mask: np.ndarray) -> tuple[int, int, int, int]:
    """(frames with a face, frames with all faces covered, faces, faces covered)."""
    frames = covered_frames = n = covered = 0
    for t, boxes in faces.items():
        if not len(boxes):
            continue
        ok = [mask[t, y0:y1, x0:x1].mean() >= COVERED for x0, y0, x1, y1 in boxes]
        frames += 1
        covered_frames += all(ok)
        n += len(ok)
        covered += sum(ok)
    return frames, covered_frames, n, covered


def pct(a: int, b: int) -> str:
    return f"{a}/{b} = {100 * a / max(b, 1):5.1f}%"


def run_faces(frames: np.ndarray) -> dict:
    """Ours (FaceBlur), our raw detections with margin but no tracking, and the per-frame reference."""
    blur = FaceBlur(FaceConfig())
    t0 = time.perf_counter()
    raw = blur.detect(frames)
    t1 = time.perf_counter()
    out, boxes = blur.apply_detections(frames, raw)
    t2 = time.perf_counter()
    ref = [detect_faces(f, REFERENCE)[:, :4] for f in frames]
    t3 = time.perf_counter()
    untracked = render_tracks([{t: b} for t, bs in enumerate(raw) for b in bs], len(frames), blur.cfg.margin)
    return {"ours": boxes, "out": out, "raw": untracked, "ref": ref, "tracks": blur.last_tracks,
            "t_detect": (t1 - t0) / len(frames), "t_smooth": (t2 - t1) / len(frames), "t_ref": (t3 - t2) / len(frames)}


def megamind(stride: int) -> list[tuple[str, np.ndarray]]:
    path = DATA / "Megamind.avi"
    if not path.is_file():
        print(f"(a) skipped: {path} not installed (Debian opencv-doc)")
        return []
    frames = read_video(path).frames
    r = run_faces(frames)
    print(f"(a) Megamind.avi {frames.shape[2]}x{frames.shape[1]}, {len(frames)} frames; second detector: "
          f"skimage LBP cascade on every {stride}. frame with 8 (4 = skimage's default, more false faces) "
          f"neighbours; covered = >= {COVERED:.0%} of the face box pixelated")
    truth = {k: lbp_faces(frames, stride, k) for k in (8, 4)}
    for name, boxes, out in [("per-frame Haar (reference)", r["ref"], None),
                             ("ours, detections untracked", r["raw"], None), ("ours (tracked)", r["ours"], r["out"])]:
        mask = masks(frames.shape, boxes)
        line = f"    {name:27s}"
        for k, faces in truth.items():
            nf, cf, n, c = coverage(faces, mask)
            line += f" | LBP-{k}: frames covered {pct(cf, nf)}, faces {pct(c, n)}"
        print(line)
        if out is not None:
            left = lbp_faces(out, stride)
            total = sum(len(b) for b in left.values())
            outside = sum(mask[t, y0:y1, x0:x1].mean() < 0.5 for t, bs in left.items() for x0, y0, x1, y1 in bs)
            print(f"    LBP-8 faces found on our output: {total} ({outside} outside our pixelation); on the "
                  f"original: {sum(len(b) for b in truth[8].values())}")
    frac = masks(frames.shape, r["ours"]).mean()
    print(f"    ours: {r['tracks']} tracks, {sum(len(b) > 0 for b in r['ours'])}/{len(frames)} frames pixelated, "
          f"{frac:.1%} of pixels; LBP-8 found faces in {sum(len(b) > 0 for b in truth[8].values())}/{len(truth[8])} "
          f"evaluated frames")
    print(f"    time/frame: ours detect {r['t_detect']:.3f} s + track/pixelate {r['t_smooth']:.3f} s; "
          f"per-frame reference {r['t_ref']:.3f} s")
    return [("Megamind.avi", frames)]


def sim_videos(sim_dir: Path | None) -> list[tuple[str, np.ndarray]]:
    """Simulator rollouts from ``sim_dir``, or 3 falling + 3 push ones generated with ``wfm sim`` (128x128)."""
    if sim_dir is not None:
        return [(f"sim {p.parent.name}/{p.name}", read_video(p).frames) for p in sorted(sim_dir.rglob("*.mp4"))]
    with tempfile.TemporaryDirectory(prefix="openwfm-guard-sim-") as tmp:
        for scenario in ("falling", "push"):
            subprocess.run(["wfm", "sim", scenario, "-n", "3", "--out", f"{tmp}/{scenario}", "--size", "128x128"],
                           check=True, capture_output=True)
        return sim_videos(Path(tmp))


def face_free(videos: list[tuple[str, np.ndarray]], vtest_frames: int) -> list[tuple[str, np.ndarray]]:
    print("(b) face-free footage: frames with any pixelation, pixels pixelated (ours | per-frame reference)")
    for name in ("tree.avi", "vtest.avi"):
        if (DATA / name).is_file():
            frames = read_video(DATA / name, 0, vtest_frames if name == "vtest.avi" else None).frames
            videos.append((name, frames))
    rows = {}
    for name, frames in videos:
        r = run_faces(frames)
        group = "simulator rollouts" if name.startswith("sim") else name
        acc = rows.setdefault(group, dict(n=0, size=frames.shape[1:3], ours_f=0, ours_p=0.0, ref_f=0, ref_p=0.0,
                                          t=0.0, videos=0))
        acc["videos"] += 1
        acc["n"] += len(frames)
        acc["t"] += r["t_detect"] * len(frames)
        for key, boxes in (("ours", r["ours"]), ("ref", r["ref"])):
            m = masks(frames.shape, boxes)
            acc[f"{key}_f"] += int(m.any((1, 2)).sum())
            acc[f"{key}_p"] += float(m.mean((1, 2)).sum())
    for group, a in rows.items():
        print(f"    {group:20s} {a['videos']} video(s) {a['size'][1]}x{a['size'][0]}, {a['n']:4d} frames: "
              f"ours {pct(a['ours_f'], a['n'])} frames, {a['ours_p'] / a['n']:.2%} pixels | "
              f"ref {pct(a['ref_f'], a['n'])} frames, {a['ref_p'] / a['n']:.2%} pixels | "
              f"detect {a['t'] / a['n']:.3f} s/frame")
    if (DATA / "vtest.avi").is_file():
        frames = dict(videos)["vtest.avi"]
        found = lbp_faces(frames, 10)
        print(f"    vtest.avi: the LBP detector finds a face >= 20 px in {sum(len(b) > 0 for b in found.values())}"
              f"/{len(found)} sampled frames (pedestrians' faces are mostly below 20 px)")
    return videos


def safety(videos: list[tuple[str, np.ndarray]]) -> None:
    cfg = PostGuardConfig().safety_config()
    model = OpenNSFW(batch_size=cfg.batch_size)
    print(f"(c) content safety, open_nsfw on every frame (threshold {cfg.threshold}, the guard samples every "
          f"{cfg.frame_stride}. frame, at most {cfg.max_frames})")
    total_t = total_n = 0
    for name, frames in videos:
        t0 = time.perf_counter()
        scores = model(frames)
        total_t += time.perf_counter() - t0
        total_n += len(frames)
        blocked = not VideoSafety(cfg, model).check(frames).allowed
        print(f"    {name:34s} {len(frames):4d} frames: max unsafe score {scores.max():.3f} (frame "
              f"{int(scores.argmax())}), frames >= 0.5: {int((scores >= 0.5).sum())}, >= {cfg.threshold}: "
              f"{int((scores >= cfg.threshold).sum())}, "
              f"video {'BLOCKED' if blocked else 'allowed'}")
    print(f"    open_nsfw time/frame {total_t / total_n:.3f} s (batch {cfg.batch_size})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-stride", type=int, default=2, help="LBP reference on every k-th Megamind frame")
    ap.add_argument("--vtest-frames", type=int, default=200, help="first frames of vtest.avi used")
    ap.add_argument("--sim-dir", type=Path, default=None, help="existing simulator rollouts (default: generate 6)")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    videos = megamind(args.eval_stride)
    benign = face_free(sim_videos(args.sim_dir), args.vtest_frames)
    safety(videos + benign)


if __name__ == "__main__":
    main()
