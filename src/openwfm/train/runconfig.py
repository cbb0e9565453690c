"""What a resumed run trains with: its own saved configuration, with the command's overrides on top.

``wfm train TASK --out RUN --resume [overrides]`` restores the config.json of RUN's newest good checkpoint
(data, model, optimizer: everything the first command set) and applies the overrides to it. Changes that
leave what the run learns alone (more steps, logging, checkpointing, workers, devices) are allowed; any
other change (data, model, task, optimizer, seed, ...) is refused unless ``allow_change``. Every change is
returned so that the caller prints it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from openwfm.config import ConfigError, config_changes, from_dict, make_config

# leaves whose change does not alter what a resumed run learns
SAFE_TO_CHANGE = ("train.steps", "train.log_every", "train.max_bad_steps", "train.device", "train.compile",
                  "train.activation_checkpointing", "train.checkpoint.", "train.dist.", "data.num_workers")


def saved_config(run_dir: str | os.PathLike) -> tuple[dict, Path] | None:
    """The config.json of the run's newest checkpoint that verifies, and that checkpoint (None: none)."""
    from openwfm.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(Path(run_dir) / "checkpoints")
    if latest is None or not (latest / "config.json").is_file():
        return None
    return json.loads((latest / "config.json").read_text()), latest


def resume_config(task_name: str, config_cls: type, run_dir: str | os.PathLike, yaml_files: Iterable = (),
                  overrides: Iterable[str] = (), allow_change: bool = False):
    """(config, changes, checkpoint): the saved config of ``run_dir`` with ``yaml_files`` and ``overrides``
    on top, and ``{key: (saved, new)}``; (None, {}, None) when the run has no checkpoint yet."""
    found = saved_config(run_dir)
    if found is None:
        return None, {}, None
    saved, ckpt = found
    if saved.get("task", task_name) != task_name:
        raise ConfigError(f"--resume: {run_dir} is a '{saved.get('task')}' run, not '{task_name}'; resume it with "
                          f"`wfm train {saved.get('task')}`, or give another --out")
    base = from_dict(config_cls, saved, f"{ckpt}/config.json", ignore=("task",))
    cfg = make_config(config_cls, yaml_files=yaml_files, overrides=overrides, base=base)
    changes = config_changes(base, cfg)
    meaning = {k: v for k, v in changes.items() if not k.startswith(SAFE_TO_CHANGE)}
    if meaning and not allow_change:
        listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(meaning.items())[:4])
        raise ConfigError(f"--resume would change what {run_dir} trains ({listed}{', ...' if len(meaning) > 4 else ''});"
                          " add --allow-change to do it anyway, or start a new run with another --out")
    return cfg, changes, ckpt
