"""Decode and encode throughput: openwfm.video (PyAV) vs OpenCV's VideoCapture / VideoWriter, same run.

    python benchmarks/bench_video.py [--frames 240] [--size 256x256]

OpenCV's wheel cannot write H.264, so its writer uses mp4v (MPEG-4 part 2); ours writes H.264 (CRF 18).
Decode compares both readers on the same H.264 file, and on real footage when installed.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from openwfm.video import read_video, write_video


def synthetic(t: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(128 + 100 * np.sin(xx / (7 + c) + yy / 11 + i * 0.2)).astype(np.uint8)
                               for c in range(3)], -1) for i in range(t)])


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cv2_read(path: str) -> int:
    cap = cv2.VideoCapture(path)
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


def cv2_write(path: str, frames: np.ndarray, fps: float) -> None:
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--size", default="256x256")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    frames = synthetic(args.frames, h, w)
    tmp = Path(tempfile.mkdtemp())
    n = len(frames)
    rows = []
    t_ours = best(lambda: write_video(tmp / "ours.mp4", frames, 24, crf=18, preset="veryfast"))
    t_cv = best(lambda: cv2_write(str(tmp / "cv.mp4"), frames, 24))
    rows.append((f"encode {n}x{h}x{w} (ours H.264 veryfast / cv2 mp4v)", n / t_ours, n / t_cv))
    t_ours = best(lambda: write_video(tmp / "ours_med.mp4", frames, 24, crf=18, preset="medium"))
    rows.append((f"encode {n}x{h}x{w} (ours H.264 medium / cv2 mp4v)", n / t_ours, n / t_cv))
    src = str(tmp / "ours.mp4")
    t_ours = best(lambda: read_video(src))
    t_cv = best(lambda: cv2_read(src))
    rows.append((f"decode full, H.264 {h}x{w}", n / t_ours, n / t_cv))
    s = n - 24
    t_ours = best(lambda: read_video(src, s, s + 16))
    rows.append((f"decode 16 frames at {s} (ours seeks)", 16 / t_ours, None))
    for real in ("/usr/share/doc/opencv-doc/examples/data/vtest.avi",):
        if Path(real).is_file():
            m = len(read_video(real).frames)
            rows.append((f"decode full, {Path(real).name} (768x576 msmpeg4)", m / best(lambda: read_video(real), 2),
                         m / best(lambda: cv2_read(real), 2)))
    print(f"# {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}; best of 3")
    print(f"| {'case':<58} | ours frames/s | OpenCV frames/s | ours/OpenCV |")
    print(f"|{'-' * 60}|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name:<58} | {a:9.0f} | {b:9.0f} | {a / b:5.2f}x |" if b else f"| {name:<58} | {a:9.0f} | - | - |")


if __name__ == "__main__":
    main()
