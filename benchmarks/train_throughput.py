"""Trainer throughput on CPU: tokens/s and peak memory of a small DiT-like model (the ``toy`` task) on one
process and on 2 gloo ranks (DDP, FSDP2, context parallelism), all with the same global batch and the
same total number of CPU threads. Prints a table and the ratio of each 2-rank mode to 1 rank.

    python benchmarks/train_throughput.py [--steps 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path

MODES = {  # name: (ranks, overrides)
    "1 rank": (1, ["train.dist.strategy=none"]),
    "1 rank, act. ckpt": (1, ["train.dist.strategy=none", "train.activation_checkpointing=true"]),
    "1 rank, bf16 autocast": (1, ["train.dist.strategy=none", "train.precision=bf16"]),
    "2 ranks DDP": (2, ["train.dist.strategy=ddp"]),
    "2 ranks FSDP2": (2, ["train.dist.strategy=fsdp"]),
    "2 ranks CP=2 (DDP)": (2, ["train.dist.strategy=ddp", "train.dist.context_parallel=2"]),
}
MODEL = ["model.model_channels=128", "model.num_blocks=4", "model.num_heads=4", "model.patch_size=4",
         "data.resolution=64", "data.num_frames=8", "synthetic_samples=64", "train.ema.kind=power",
         "train.checkpoint.every=100000", "train.log_every=1"]


def _rank(rank: int, world: int, threads: int, overrides: list[str], steps: int, tmp: str, batch: int) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world,
                                timeout=timedelta(seconds=300))
    from openwfm.config import make_config
    from openwfm.tasks.toy import ToyRunConfig, ToyTask
    from openwfm.train.loop import Trainer
    from openwfm.train.metrics import read_metrics

    cp = 2 if any("context_parallel=2" in o for o in overrides) else 1
    per_rank_batch = batch * cp // world  # context-parallel ranks share a batch
    cfg = make_config(ToyRunConfig, "small", overrides=MODEL + overrides + [f"train.steps={steps}",
                                                                          f"data.batch_size={per_rank_batch}"])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer = Trainer(ToyTask(cfg), Path(tmp) / "run", progress=False)
    trainer.fit()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if rank == 0:
        rows = read_metrics(Path(tmp) / "run" / "metrics.jsonl")[2:]  # drop warm-up steps
        tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
        (Path(tmp) / "result.json").write_text(json.dumps({"tokens_per_s": tps, "peak_mb": peak / 1024,
                                                          "growth_mb": (peak - base) / 1024,
                                                          "loss": rows[-1]["loss"]}))
    trainer.close()


def run_mode(name: str, steps: int, threads: int, batch: int) -> dict:
    world, overrides = MODES[name]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_rank, args=(r, world, max(1, threads // world), overrides, steps, tmp, batch))
                 for r in range(world)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise SystemExit(f"{name}: a rank failed ({[p.exitcode for p in procs]})")
        out = json.loads((Path(tmp) / "result.json").read_text())
        out["wall_s"] = time.perf_counter() - t0
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2, help="total CPU threads, split across ranks")
    ap.add_argument("--batch", type=int, default=4, help="global batch (clips of 8x64x64 = 2048 tokens)")
    args = ap.parse_args()
    print(f"# trainer throughput, toy DiT (128 wide, 4 blocks), batch {args.batch} x 2048 tokens, "
          f"{args.steps} steps, {args.threads} threads; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    results = {name: run_mode(name, args.steps, args.threads, args.batch) for name in MODES}
    ref = results["1 rank"]["tokens_per_s"]
    print(f"{'mode':<22}{'tokens/s':>10}{'vs 1 rank':>11}{'peak RSS/rank MB':>18}{'growth MB':>11}")
    for name, r in results.items():
        print(f"{name:<22}{r['tokens_per_s']:>10.0f}{r['tokens_per_s'] / ref:>10.2f}x"
              f"{r['peak_mb']:>18.0f}{r['growth_mb']:>11.0f}")


if __name__ == "__main__":
    main()
