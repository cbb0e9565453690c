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
    """Append-only JSON lines on the main rank. On resume, lines past the resumed step are dropped so
    the file reads as one uninterrupted run."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True, truncate_after: int | None = None):
        self.path, self.enabled, self._f = Path(path), enabled, None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after is not None and self.path.exists():
            kept = [line for line in read_metrics(self.path) if line.get("step", 0) <= truncate_after]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
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


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (a crash mid-write) is ignored."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
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
