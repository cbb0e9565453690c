"""Checkpoint and export directories on disk: the checksum index, verification, reading the weights for
inference and publishing an export. Readers never unpickle: weights are safetensors, sharded checkpoints'
DCP metadata goes through ``safe_dcp``. The trainer writes checkpoints (``train/checkpoint.py``) in this format.

Layout of a checkpoint (``RUN/checkpoints/step-00001000/``) or an export::

    config.json          the run's full config
    model.json           what the model is: kind, task, conditioning (hub.py)
    trainer.json         step, data position, counters, world layout (checkpoints)
    rng.safetensors      every rank's torch RNG state (checkpoints)
    model.safetensors    fp32 weights            } unsharded runs (one process, DDP), exports
    ema.safetensors      EMA weights             }
    optimizer.safetensors + optimizer.json       }
    dcp/                 torch.distributed.checkpoint shards of model/ema/optimizer (FSDP2 runs)
    card.json            how an export was made (exports)
    index.json           size and sha256 of every file above; written last
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from openwfm.errors import OpenWFMError
from openwfm.files import save_safetensors
from openwfm.safe_dcp import METADATA, UnsafeFileError, read_metadata, read_part

log = logging.getLogger(__name__)

FORMAT = 1
INDEX = "index.json"


class CheckpointError(OpenWFMError):
    """A checkpoint that cannot be written, verified or loaded; the message names it."""


def step_dir(root: str | os.PathLike, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def _step_of(path: Path) -> int | None:
    name = path.name
    if name.startswith("step-") and name[5:].isdigit():
        return int(name[5:])
    return None


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Finished checkpoint directories under ``root``, oldest first (not yet verified)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _step_of(p) is not None]
    return sorted(found, key=_step_of)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != INDEX)


MODEL_JSON = "model.json"
# the training task that wrote a run -> what kind of model it is, and what a post-trained one is conditioned on
TASK_KINDS = {"tokenizer": "tokenizer", "diffusion": "world-model", "posttrain-camera": "world-model",
              "posttrain-action": "world-model", "posttrain-multiview": "world-model", "ar": "ar",
              "ar-decoder": "ar-decoder"}
TASK_CONDITIONING = {"posttrain-camera": "camera", "posttrain-action": "action", "posttrain-multiview": "multiview"}


def model_info(config: dict) -> dict:
    """The ``model.json`` of a run config (a dict with its ``task``): what the model is, for loaders."""
    task = str(config.get("task", ""))
    return {"format": 1, "kind": TASK_KINDS.get(task, task), "task": task,
            "conditioning": TASK_CONDITIONING.get(task, ""), "model": config.get("model", {})}


def publish_model(out: str | os.PathLike, state: dict[str, torch.Tensor], config: dict, card: dict, step: int,
                  metadata: dict[str, str] | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write an exported (shippable) model directory: model.safetensors (floating tensors as ``dtype``:
    float32, or float16 for half the size; ``read_weights`` widens them back), config.json, card.json and an
    index with checksums. Written into a sibling temp directory and renamed into place (replacing ``out``),
    so a failed export leaves nothing half done."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"publish_model: dtype {dtype} is not a floating storage type")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_safetensors({k: (v.detach().to(dtype) if v.is_floating_point() else v.detach().float()).contiguous().cpu()
                      for k, v in state.items()}, str(tmp / "model.safetensors"), metadata=metadata)
    (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
    (tmp / MODEL_JSON).write_text(json.dumps(model_info(config), indent=1, default=str))
    (tmp / "card.json").write_text(json.dumps(card, indent=1, default=str))
    write_index(tmp, step)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def write_index(directory: Path, step: int, checksum: bool = True) -> None:
    """fsync every file, record its size (and sha256), then write and fsync the index itself."""
    entries = {}
    for p in _files(directory):
        fsync_file(p)
        entries[str(p.relative_to(directory))] = {"size": p.stat().st_size,
                                                  "sha256": _sha256(p) if checksum else None}
    tmp = directory / (INDEX + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "step": step, "files": entries}, indent=1))
    fsync_file(tmp)
    tmp.rename(directory / INDEX)
    for d in sorted({p.parent for p in _files(directory)} | {directory}):
        fsync_file(d)


def verify(directory: str | os.PathLike, checksum: bool = True) -> list[str]:
    """Problems with a checkpoint directory; empty when it is complete and intact."""
    directory = Path(directory)
    index = directory / INDEX
    if not index.is_file():
        return [f"{directory}: no {INDEX} (the save did not finish)"]
    try:
        meta = json.loads(index.read_text())
        files = meta["files"]
    except (ValueError, KeyError) as e:
        return [f"{index}: unreadable index ({e})"]
    problems = []
    for p in _files(directory):
        rel = str(p.relative_to(directory))
        if p.is_symlink():
            problems.append(f"{p}: a symbolic link (checkpoints hold plain files only)")
        elif not allowed_file(rel):
            problems.append(f"{p}: not an allowed kind of file (safetensors, JSON, DCP shards and metadata)")
        elif rel not in files:
            problems.append(f"{p}: not in {INDEX}")
    for rel, want in files.items():
        p = directory / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif p.stat().st_size != want["size"]:
            problems.append(f"{p}: {p.stat().st_size} bytes, index says {want['size']} (truncated?)")
        elif checksum and want.get("sha256") and _sha256(p) != want["sha256"]:
            problems.append(f"{p}: sha256 mismatch (corrupted)")
    for meta in sorted(directory.rglob("*" + METADATA)):
        try:
            read_metadata(meta)
        except UnsafeFileError as e:
            problems.append(str(e))
    return problems


def allowed_file(rel: str) -> bool:
    """The kinds of file a checkpoint or export may hold, by path inside it: safetensors, JSON, and DCP's
    metadata and shards under ``dcp/`` (read without arbitrary unpickling: ``safe_dcp``)."""
    name, parts = Path(rel).name, Path(rel).parts
    if name.endswith((".safetensors", ".json")):
        return True
    return len(parts) == 2 and parts[0] == "dcp" and (name == METADATA or name.endswith(".distcp"))


def latest_checkpoint(root: str | os.PathLike, checksum: bool = True) -> Path | None:
    """Newest checkpoint that verifies; broken ones are skipped with a warning naming the problem."""
    for path in reversed(list_checkpoints(root)):
        problems = verify(path, checksum)
        if not problems:
            return path
        log.warning("skipping checkpoint %s: %s", path, "; ".join(problems[:3]))
    return None


# ------------------------------------------------------------------------------------- state dicts


def read_dcp_part(path: Path, part: str) -> dict[str, torch.Tensor] | None:
    """Full tensors of one part (``model``, ``ema``) of a sharded checkpoint, read in one process without
    a process group and without unpickling anything but DCP's metadata classes (``safe_dcp``); None when
    the checkpoint has no such part."""
    try:
        return read_part(path / "dcp", part)
    except UnsafeFileError:
        raise
    except Exception as e:  # noqa: BLE001 - DCP raises assorted errors for damaged shards
        raise CheckpointError(f"{path}/dcp: cannot read the {part} state ({type(e).__name__}: {e})") from e


def _flat(tree: dict, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[prefix + k] = v
    return out


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a checkpoint directory, a run directory (its newest good checkpoint)
    or a run's ``checkpoints/`` directory."""
    path = Path(path)
    if (path / INDEX).is_file():
        problems = verify(path)
        if problems:
            raise CheckpointError(f"{path}: " + "; ".join(problems[:3]))
        return path
    for root in (path / "checkpoints", path):
        if root.is_dir() and list_checkpoints(root):
            found = latest_checkpoint(root)
            if found is None:
                raise CheckpointError(f"{root}: no checkpoint passes verification")
            return found
    raise CheckpointError(f"{path}: not a checkpoint or a run directory with checkpoints")


def load_weights(path: str | os.PathLike, ema: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """(run config, weights) of a checkpoint for inference: the EMA weights when present and ``ema``,
    else the trained ones; sharded checkpoints are consolidated in memory."""
    return read_weights(resolve(path), ema)


def read_weights(path: Path, ema: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """``load_weights`` of a checkpoint directory ``resolve`` already verified. The EMA covers the trained
    parameters only: a frozen one (a frozen encoder or base model) comes from the model state."""
    config = json.loads((path / "config.json").read_text())
    if (path / "dcp").is_dir():
        tensors = read_dcp_part(path, "model")
        if tensors is None:
            raise CheckpointError(f"{path}/dcp: cannot read the model state")
        tensors.update((read_dcp_part(path, "ema") if ema else None) or {})
    else:
        tensors = load_file(path / "model.safetensors")
        if ema and (path / "ema.safetensors").is_file():
            tensors.update(load_file(path / "ema.safetensors"))
    return config, widen(tensors)


def widen(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Half-precision tensors (an export stored as float16 or bfloat16) as float32, the rest unchanged."""
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in tensors.items()}
