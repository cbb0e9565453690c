"""Run a function on N spawned gloo ranks from pytest (no ports: a file:// rendezvous in a temp dir)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist


def _entry(fn, rank: int, world: int, tmp: str) -> None:
    tmp_path = Path(tmp)
    try:
        torch.set_num_threads(1)
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=60))
        result = fn(rank, world, tmp_path)
        torch.save(result, tmp_path / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (tmp_path / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def run_ranks(fn, tmp: Path, world: int = 2, timeout: float = 150.0) -> list:
    """``fn(rank, world, tmp)`` on ``world`` ranks; their return values in rank order, or the test fails with
    every child's traceback. ``fn`` must be a module-level function (spawn pickles it by name)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_entry, args=(fn, r, world, str(tmp)), daemon=True) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        if any(p.exitcode not in (None, 0) for p in procs):
            break  # one rank failed: the others would wait in a collective forever
        time.sleep(0.05)
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join()
    errors = "\n".join(f.read_text() for f in sorted(tmp.glob("rank*.err")))
    codes = [p.exitcode for p in procs]
    if errors or codes != [0] * world:
        pytest.fail(f"ranks exited with {codes} (timeout {timeout:.0f} s)\n{errors}")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(world)]
