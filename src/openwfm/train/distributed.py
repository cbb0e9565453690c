"""torch.distributed set-up for runs launched by ``torchrun``; one plain process needs none of it.

Ranks form a (data_parallel, context_parallel) grid. Every rank holds (a shard of) every parameter and
gradients are averaged over all ranks: data-parallel ranks see different batches; context-parallel ranks
see the same batch and each keeps 1/cp of the token sequence (see ``openwfm/nn/context_parallel.py``). Because each
rank's loss is the mean over its own tokens and chunks are equal, the average over all ranks is the loss
of the whole batch, so DDP and FSDP2 need no special case for context parallelism.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from openwfm.errors import OpenWFMError
from openwfm.training_config import DistConfig

log = logging.getLogger(__name__)


class DistError(OpenWFMError):
    """A launch that cannot work: bad world size, missing backend, wrong strategy for the world."""


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    dp_rank: int = 0
    dp_size: int = 1
    cp_rank: int = 0
    cp_size: int = 1
    cp_group: object = None  # ProcessGroup of the ranks sharing a sequence (None when cp_size == 1)
    mesh: object = None  # 1-D DeviceMesh over all ranks, for FSDP2
    strategy: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(cfg: DistConfig, device: str = "auto") -> DistEnv:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), start the process group and meshes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise DistError("device=cuda but no CUDA device is visible")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    cp = cfg.context_parallel
    if world % cp:
        raise DistError(f"world size {world} is not divisible by dist.context_parallel={cp}")
    strategy = cfg.strategy if cfg.strategy != "auto" else ("ddp" if world > 1 else "none")
    if world > 1 and strategy == "none":
        raise DistError(f"{world} ranks need dist.strategy ddp or fsdp to keep their weights in sync")
    env = DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev, dp_size=world // cp,
                  cp_size=cp, dp_rank=rank // cp, cp_rank=rank % cp, strategy=strategy)
    if world == 1:
        return env
    if not dist.is_initialized():
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend)
    from torch.distributed.device_mesh import init_device_mesh

    grid = init_device_mesh(dev.type, (world // cp, cp), mesh_dim_names=("dp", "cp"))
    env.cp_group = grid["cp"].get_group() if cp > 1 else None
    env.mesh = init_device_mesh(dev.type, (world,), mesh_dim_names=("world",))
    log.info("rank %d/%d on %s: dp %d/%d, cp %d/%d, %s", rank, world, dev, env.dp_rank, env.dp_size,
             env.cp_rank, cp, strategy)
    return env


def wrap_model(model: torch.nn.Module, env: DistEnv, blocks: list[torch.nn.Module], reshard: bool = True,
               param_dtype: torch.dtype | None = None) -> torch.nn.Module:
    """DDP, or FSDP2 (``fully_shard`` on each block, then the root) over all ranks; returns the module to
    call in training. FSDP2 shards in place, so ``model`` itself stays the module to save and average."""
    if env.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [env.device.index] if env.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if env.strategy == "fsdp":
        import warnings

        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # FSDP2 warns whenever a module returns a view (any Linear on 3-d input); the danger it names is an
        # in-place op on that output, which no model here does
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        for block in blocks:
            fully_shard(block, mesh=env.mesh, reshard_after_forward=reshard, mp_policy=mp)
        fully_shard(model, mesh=env.mesh, reshard_after_forward=reshard, mp_policy=mp)
    return model


def set_grad_sync(wrapped: torch.nn.Module, env: DistEnv, enabled: bool) -> None:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if env.strategy == "ddp":
        wrapped.require_backward_grad_sync = enabled
    elif env.strategy == "fsdp":
        wrapped.set_requires_gradient_sync(enabled)


def all_reduce(values: torch.Tensor, env: DistEnv, op: str = "sum") -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(values, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                                    "min": dist.ReduceOp.MIN}[op])
    return values


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def gather_objects(obj, env: DistEnv) -> list:
    """Every rank's ``obj`` (small, picklable: our own processes only), in rank order."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, env: DistEnv):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
