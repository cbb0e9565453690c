"""Checkpoints: atomic directories of safetensors + JSON, verified by a checksum index.

Layout of ``RUN/checkpoints/step-00001000/``::

    config.json          the run's full config
    trainer.json         step, data position, counters, world layout
    rng.safetensors      every rank's torch RNG state
    model.safetensors    fp32 weights            } unsharded runs (one process, DDP)
    ema.safetensors      EMA weights             }
    optimizer.safetensors + optimizer.json       }
    dcp/                 torch.distributed.checkpoint shards of model/ema/optimizer (FSDP2 runs)
    index.json           size and sha256 of every file above; written last

A checkpoint is written into ``.tmp-step-...``, every file fsync'd, then renamed into place, so a crash
leaves either the old state or the new one. ``latest_checkpoint`` verifies the index and falls back to
the previous checkpoint, with a warning, when the newest is truncated or corrupted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from openwfm import safe_dcp
from openwfm.files import save_safetensors
from openwfm.train.distributed import DistEnv, barrier, gather_objects
from openwfm.weights import (FORMAT, INDEX, MODEL_JSON, CheckpointError, allowed_file, fsync_file, latest_checkpoint, list_checkpoints,
                             load_weights, model_info, publish_model, read_dcp_part, resolve, step_dir, verify,
                             write_index)

__all__ = ["FORMAT", "INDEX", "CheckpointError", "allowed_file", "consolidate", "latest_checkpoint", "list_checkpoints",
           "load_checkpoint", "load_weights", "publish_model", "quarantine", "read_dcp_part", "resolve", "resume_point",
           "save_checkpoint", "step_dir", "verify", "write_index"]

log = logging.getLogger(__name__)


def _full(t: torch.Tensor) -> torch.Tensor:
    if hasattr(t, "full_tensor"):  # DTensor
        t = t.full_tensor()
    return t.detach().cpu().contiguous()


def _safetensors_ready(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two entries sharing memory (tied weights are stored twice)."""
    out, seen = {}, set()
    for k, v in state.items():
        v = _full(v)
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), v.numel())
        out[k] = v.clone() if key in seen else v
        seen.add(key)
    return out


def flatten_optimizer(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a name-keyed optimizer state dict into tensors (for safetensors) and JSON."""
    tensors, scalars = {}, {}
    for fqn, state in osd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{fqn}::{k}"] = v
            else:
                scalars[f"{fqn}::{k}"] = v
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in osd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        fqn, k = key.rsplit("::", 1)
        state.setdefault(fqn, {})[k] = v
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state(env: DistEnv) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if env.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(env.device)
    return state


# ------------------------------------------------------------------------------------- save / load

def save_checkpoint(root: str | os.PathLike, step: int, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, ema, trainer_state: dict, config: dict, env: DistEnv,
                    sharded: bool, keep_last: int = 3, checksum: bool = True,
                    on_file: Callable[[str], None] | None = None) -> Path:
    """Write checkpoint ``step`` atomically on every rank's behalf; returns its final path.

    All ranks must call it (collectives inside). ``on_file(name)`` runs after each file is written.
    """
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    root = Path(root)
    final, tmp = step_dir(root, step), root / f".tmp-step-{step:08d}"
    if env.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier(env)
    note = on_file or (lambda name: None)
    rngs = gather_objects(_rng_state(env), env)
    if sharded:
        import torch.distributed.checkpoint as dcp

        state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
        if ema is not None:
            state["ema"] = ema.state_dict()
        dcp.save(state, checkpoint_id=str(tmp / "dcp"))
        note("dcp")
    else:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd = get_model_state_dict(model, options=opts)
        osd = get_optimizer_state_dict(model, optimizer, options=opts)
        ema_sd = _safetensors_ready(ema.state_dict()) if ema is not None else None
        if env.is_main:
            save_safetensors(_safetensors_ready(msd), tmp / "model.safetensors")
            note("model.safetensors")
            if ema_sd is not None:
                save_safetensors(ema_sd, tmp / "ema.safetensors")
                note("ema.safetensors")
            tensors, meta = flatten_optimizer(osd)
            save_safetensors(_safetensors_ready(tensors), tmp / "optimizer.safetensors")
            (tmp / "optimizer.json").write_text(json.dumps(meta, indent=1))
            note("optimizer.safetensors")
    if env.is_main:
        save_safetensors({f"rank{r}.{k}": v for r, s in enumerate(rngs) for k, v in s.items()}, tmp / "rng.safetensors")
        state = dict(trainer_state, world_size=env.world_size, strategy=env.strategy, sharded=sharded)
        (tmp / "trainer.json").write_text(json.dumps(state, indent=1))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        (tmp / MODEL_JSON).write_text(json.dumps(model_info(config), indent=1, default=str))
        write_index(tmp, step, checksum)
        if final.exists():  # re-saving a step (after a resume): replace the old copy
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_file(root)
        _prune(root, keep_last)
    barrier(env)
    return final


def _prune(root: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` checkpoints that verify (sizes against the index); quarantine the
    broken ones, so a corrupt newer checkpoint never outranks, or causes the deletion of, a good one."""
    good = []
    for path in list_checkpoints(root):
        problems = verify(path, checksum=False)
        if problems:
            quarantine(path, problems)
        else:
            good.append(path)
    for old in good[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def quarantine(path: Path, problems: list[str]) -> Path:
    """Move a broken checkpoint to ``<its root>/quarantine/<name>[.N]`` with ``problems.txt``; nothing is
    deleted. Returns where it went."""
    where = path.parent / "quarantine"
    where.mkdir(exist_ok=True)
    dst, n = where / path.name, 1
    while dst.exists():
        dst, n = where / f"{path.name}.{n}", n + 1
    path.rename(dst)
    (dst / "problems.txt").write_text("\n".join(problems) + "\n")
    log.warning("moved broken checkpoint %s to %s: %s", path, dst, "; ".join(problems[:3]))
    return dst


def resume_point(root: str | os.PathLike, checksum: bool = True, restart: bool = False) -> Path | None:
    """The checkpoint a ``--resume`` continues from: the newest that verifies, after quarantining the broken
    ones above it. None when ``root`` holds no checkpoint (a new run). When checkpoints exist and none
    verifies, raises ``CheckpointError`` naming them and changes nothing, unless ``restart`` (then all are
    quarantined and None is returned: training starts from step 0)."""
    root = Path(root)
    found = list_checkpoints(root)
    if restart:
        for path in found:
            quarantine(path, ["set aside by --restart"])
        return None
    broken = []
    for path in reversed(found):
        problems = verify(path, checksum)
        if not problems:
            for bad, why in broken:
                quarantine(bad, why)
            return path
        broken.append((path, problems))
    if broken:
        names = "; ".join(f"{p.name}: {why[0]}" for p, why in broken[:4])
        raise CheckpointError(f"--resume: none of the {len(found)} checkpoints in {root} verifies ({names}); "
                              "nothing was changed. Fix or remove them, or start over with --restart (moves "
                              f"them to {root / 'quarantine'})")
    return None


def load_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    ema, env: DistEnv) -> dict:
    """Restore weights, optimizer, EMA and this rank's RNG from ``path``; returns trainer.json's state."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict, set_model_state_dict,
                                                         set_optimizer_state_dict)

    path = Path(path)
    try:
        state = json.loads((path / "trainer.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read trainer.json ({e})") from e
    if state.get("sharded"):
        sd = {"model": get_model_state_dict(model)}
        if optimizer is not None:
            sd["optim"] = get_optimizer_state_dict(model, optimizer)
        if ema is not None:
            sd["ema"] = ema.state_dict()
        safe_dcp.load(sd, path / "dcp")
        set_model_state_dict(model, sd["model"])
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, sd["optim"])
    else:
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, load_file(path / "model.safetensors"), options=opts)
        if optimizer is not None:
            meta = json.loads((path / "optimizer.json").read_text())
            osd = unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta)
            set_optimizer_state_dict(model, optimizer, osd, options=opts)
        if ema is not None and (path / "ema.safetensors").is_file():
            ema.load_state_dict(load_file(path / "ema.safetensors"))
    rng = load_file(path / "rng.safetensors")
    rank = env.rank if state.get("world_size", 1) == env.world_size else 0
    torch.set_rng_state(rng[f"rank{rank}.torch"])
    if env.device.type == "cuda" and f"rank{rank}.cuda" in rng:
        torch.cuda.set_rng_state(rng[f"rank{rank}.cuda"], env.device)
    return state


def consolidate(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Turn a sharded (DCP) checkpoint into ``model.safetensors`` (+ ``ema.safetensors``), one process,
    no process group. Returns the files written (default: next to ``dcp/`` in the checkpoint)."""
    path = Path(path)
    if not (path / "dcp").is_dir():
        raise CheckpointError(f"{path}: not a sharded checkpoint (no dcp/ directory)")
    out_dir = Path(out_dir or path)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part, name in (("model", "model.safetensors"), ("ema", "ema.safetensors")):
        tensors = read_dcp_part(path, part)
        if tensors is None:
            if part == "ema":
                continue
            raise CheckpointError(f"{path}/dcp: cannot read the {part} state")
        save_safetensors(_safetensors_ready(tensors), out_dir / name)
        written.append(out_dir / name)
    return written


