"""Simulator throughput (frames/s, physics + rendering + ground truth) per scenario and size.

    python benchmarks/bench_sim.py [--frames 33] [--seeds 3]

Also shows the cost of TinyRenderer's shadows (on by default) against shadows off, in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from openwfm.config import make_config
from openwfm.sim import SimConfig, simulate


def fps(scenario: str, frames: int, size: int, seeds: int, shadows: bool) -> float:
    cfg = make_config(SimConfig, overrides=[f"num_frames={frames}", f"height={size}", f"width={size}",
                                            f"shadows={shadows}"])
    t0 = time.perf_counter()
    for s in range(seeds):
        simulate(scenario, cfg, s)
    return seeds * frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sizes", default="64,128,256")
    args = ap.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; "
          f"{args.seeds} seeds x {args.frames} frames, one process")
    print("| scenario | size | frames/s (shadows on) | frames/s (shadows off) | on/off |")
    print("|---|---|---:|---:|---:|")
    for scenario in ("falling", "push", "orbit"):
        for size in (int(s) for s in args.sizes.split(",")):
            on = fps(scenario, args.frames, size, args.seeds, True)
            off = fps(scenario, args.frames, size, args.seeds, False)
            print(f"| {scenario} | {size}x{size} | {on:.1f} | {off:.1f} | {on / off:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
