"""The training tasks: each model family's run config wired to the shared trainer (``openwfm.train``).

``get_task(name)`` / ``task_names()`` list the built-in tasks (tokenizer, diffusion, posttrain-camera /
-action / -multiview, ar, ar-decoder, toy) and any other task registered with ``train.task.register_task``.
"""

from __future__ import annotations

from openwfm.config import ConfigError
from openwfm.tasks import ar_decoder, autoregressive, diffusion, posttrain, tokenizer, toy  # each registers its tasks
from openwfm.train.task import Task, registered

__all__ = ["ar_decoder", "autoregressive", "diffusion", "get_task", "posttrain", "task_names", "tokenizer", "toy"]


def task_names() -> list[str]:
    return sorted(registered())


def get_task(name: str) -> type[Task]:
    tasks = registered()
    if name not in tasks:
        raise ConfigError(f"unknown training task '{name}'; tasks: {', '.join(sorted(tasks))}")
    return tasks[name]
