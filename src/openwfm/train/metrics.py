"""What a run reports: ``metrics.jsonl`` (one JSON object per logged step), a Rich progress bar, and
``plot_run`` which draws loss and learning-rate curves to PNG with matplotlib."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from openwfm.errors import OpenWFMError


class MetricsLog:
    """Append-only JSON lines on the main rank; never truncated. A resumed run appends after what is there
    (steps past the resumed checkpoint are logged again); ``read_metrics`` reads the file as one
    uninterrupted run, each step's newest record winning."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path, self.enabled, self._f = Path(path), enabled, None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a")

    def write(self, record: dict) -> None:
        if self._f is not None:
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
            self._f.write(json.dumps(clean) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def machine(device: str = "cpu") -> str:
    """The machine a run trains on, in words (saved in each checkpoint's trainer.json; model cards quote it)."""
    import platform

    import torch

    where = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads, {where}"


def training_facts(checkpoint: str | os.PathLike) -> dict:
    """What a model card gives about a checkpoint's training: seed, batch size, steps, the seconds its run
    spent training up to it (from the run's metrics.jsonl, every resume counted; checkpoint writes not) and
    the machine (checkpoints saved before it was recorded have none)."""
    ckpt = Path(checkpoint)
    config = json.loads((ckpt / "config.json").read_text())
    state = json.loads((ckpt / "trainer.json").read_text()) if (ckpt / "trainer.json").is_file() else {}
    step = int(state.get("step", 0))
    facts = {"seed": config.get("train", {}).get("seed"), "batch_size": config.get("data", {}).get("batch_size"),
             "steps": step}
    log = ckpt.parent.parent / "metrics.jsonl"
    if log.is_file():
        seconds, last = 0.0, 0
        for row in read_metrics(log):
            if isinstance(row.get("step"), int) and row["step"] <= step and row.get("it_per_s"):
                seconds += (row["step"] - last) / row["it_per_s"]
                last = row["step"]
        facts["train_seconds"] = round(seconds)
    if state.get("machine"):
        facts["machine"] = state["machine"]
    return facts


def read_metrics(path: str | os.PathLike, raw: bool = False) -> list[dict]:
    """Records of a metrics.jsonl as one run: where a resumed run logged a step again, the records it
    replaced are dropped (``raw``: every line as written). A torn line (a crash mid-write) is ignored."""
    rows: list[dict] = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not raw and isinstance(row.get("step"), int):
            while rows and isinstance(rows[-1].get("step"), int) and rows[-1]["step"] >= row["step"]:
                rows.pop()
        rows.append(row)
    return rows


class TrainProgress:
    """Rich progress: step/total, it/s, loss, lr, tokens/s, ETA (main rank only, off with --quiet)."""

    def __init__(self, total: int, start: int, enabled: bool = True):
        self.enabled, self.total, self.start = enabled, total, start
        self._progress = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      TextColumn("ETA"), TimeRemainingColumn())
            self._task = self._progress.add_task("train", total=total, completed=start, info="")
        self._ema_rate = None
        self._last = None

    def __enter__(self):
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, out: dict) -> None:
        if self._progress is None:
            return
        now = time.perf_counter()
        if self._last is not None:
            rate = 1.0 / max(now - self._last, 1e-9)
            self._ema_rate = rate if self._ema_rate is None else 0.9 * self._ema_rate + 0.1 * rate
        self._last = now
        rate = self._ema_rate or 0.0
        info = (f"{rate:5.2f} it/s  loss {out['loss']:.4f}  lr {out['lr']:.2e}  "
                f"{out['tokens'] * rate:,.0f} tok/s")
        self._progress.update(self._task, completed=step, info=info)


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Loss (with a moving average) and learning rate against step, from RUN/metrics.jsonl, to a PNG."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise OpenWFMError(f"{path}: no metrics.jsonl (is {run_dir} a training run directory?)")
    rows = [r for r in read_metrics(path) if "step" in r]
    if not rows:
        raise OpenWFMError(f"{path}: no metrics recorded yet")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    loss = [r.get("loss") if r.get("loss") is not None else float("nan") for r in rows]
    lr = [r.get("lr", float("nan")) for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax1.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
    k = max(1, len(loss) // 20)
    if k > 1:
        smooth = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
        ax1.plot(steps, smooth, lw=1.6, label=f"moving average ({k})")
    ax1.set_ylabel("loss")
    if all(v > 0 for v in loss if math.isfinite(v)):
        ax1.set_yscale("log")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(steps, lr, color="tab:orange")
    ax2.set_ylabel("learning rate")
    ax2.set_xlabel("step")
    ax2.grid(alpha=0.3)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = Path(out) if out else (run_dir if run_dir.is_dir() else run_dir.parent) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
