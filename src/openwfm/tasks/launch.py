"""Launching a training run: the one path from a task name and settings to a finished ``Trainer.fit``, used by
``wfm train``, ``wfm posttrain`` and the recipe alike."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable

from openwfm.config import make_config
from openwfm.tasks import get_task

log = logging.getLogger(__name__)


def train(task: str, out_dir: str | os.PathLike, *, preset: str | None = None, yaml_files: Iterable = (),
          overrides: Iterable[str] = (), resume: bool = False, allow_change: bool = False, restart: bool = False,
          progress: bool = True, note: Callable[[str], None] = log.info) -> dict:
    """Train ``task`` into ``out_dir``; returns the trainer's summary (step, loss, skipped, checkpoint).

    ``resume``: continue from the run's newest good checkpoint with its saved configuration, ``overrides`` on
    top (a change of what the run trains needs ``allow_change``; ``train.runconfig.resume_config``); a run
    without a checkpoint starts from ``preset`` and ``overrides``. ``note`` receives what resuming restored
    and changed. ``restart``: start over, moving the old checkpoints aside."""
    from openwfm.train.loop import Trainer
    from openwfm.train.runconfig import resume_config

    task_cls = get_task(task)
    cfg = None
    if resume:
        cfg, changes, ckpt = resume_config(task, task_cls.config_cls, out_dir, yaml_files, overrides, allow_change)
        if cfg is not None:
            note(f"resume: the configuration saved in {ckpt}" + (f" (--preset {preset} not applied)" if preset else ""))
            for key, (a, b) in changes.items():
                note(f"resume: {key}: {a!r} -> {b!r}")
    if cfg is None:
        cfg = make_config(task_cls.config_cls, preset=preset, yaml_files=list(yaml_files), overrides=list(overrides))
    trainer = Trainer(task_cls(cfg), Path(out_dir), resume=resume, progress=progress, restart=restart)
    if not trainer.env.is_main:
        logging.getLogger().setLevel(logging.ERROR)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    return {**summary, "is_main": trainer.env.is_main}
