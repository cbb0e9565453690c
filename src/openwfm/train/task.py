"""What the trainer needs from a model family (the Task interface), and the registry tasks enter with
``register_task`` (``openwfm.tasks`` holds the built-in ones; the trainer imports no model package).

A task owns its run config: a dataclass with fields ``model`` (the family's own config), ``data``
(``openwfm.data.DataConfig``), ``stages`` (progressive ``StageConfig`` list) and ``train``
(``TrainConfig``). The trainer owns everything else: optimizer, EMA, precision, distribution,
checkpoints, metrics.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from openwfm.config import ConfigError
from openwfm.train.distributed import DistEnv

_TASKS: dict[str, type["Task"]] = {}


class Task:
    """Base class; subclasses set ``name`` and ``config_cls`` and implement ``build_model`` and ``loss``."""

    name: str = ""
    config_cls: type = object

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.step = 0  # the trainer's optimizer step, set before each loss evaluation

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def init_weights(self, model: torch.nn.Module) -> None:
        """Data-dependent initialization of a freshly built model (e.g. a PCA basis), run by the trainer
        before the optimizer and EMA see the weights; a resumed run then loads its checkpoint over it."""

    def blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """Repeated units: each becomes an FSDP2 unit and a ``torch.compile`` region."""
        return list(getattr(model, "blocks", []))

    def loss(self, model: torch.nn.Module, batch: dict, env: DistEnv) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over this rank's part of the batch (its tokens under context parallelism) and extra
        scalars to log. ``model`` may be a DDP wrapper: call it, do not reach into it."""
        raise NotImplementedError

    def tokens(self, batch: dict) -> int:
        """Tokens (or pixels, for pixel models) processed in this batch on this rank, for tokens/s."""
        return 0

    def make_loader(self, data_cfg: Any, env: DistEnv, epoch: int, position: int) -> Iterable[dict]:
        """Batches of one epoch for this data-parallel rank, starting after ``position`` batches."""
        from openwfm.data import load_index, make_loader

        if not data_cfg.shards:
            raise ConfigError(f"task {self.name}: data.shards is empty; point it at a WebDataset shard "
                              "directory (wfm data pack SIM_DIR --out SHARDS)")
        if getattr(self, "_index_for", None) != data_cfg.shards:
            self._index, self._index_for = load_index(data_cfg.shards), data_cfg.shards
        loader, _ = make_loader(data_cfg, self._index, env.dp_rank, env.dp_size, epoch, position)
        return loader


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def registered() -> dict[str, type[Task]]:
    """The tasks registered so far (``openwfm.tasks`` registers the built-in ones)."""
    return dict(_TASKS)
