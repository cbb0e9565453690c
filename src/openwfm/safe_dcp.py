"""Reading ``torch.distributed.checkpoint`` (DCP) directories without running code from them.

DCP keeps its metadata (``dcp/.metadata``) as a pickle and reads it with ``pickle.load``; its default
planner reads non-tensor items with ``torch.load(weights_only=False)``. Either runs whatever a crafted file
asks for. Sharded checkpoints are what people download and share, so openwfm reads them only through
``SafeReader`` and ``SafePlanner``:

- the metadata goes through ``RestrictedUnpickler``: it rebuilds DCP's own metadata dataclasses, torch
  dtypes, sizes and layouts and a ``pathlib`` path, and refuses every other global with ``UnsafeFileError``
  (nothing is called before the refusal);
- tensors are read with ``torch.load(weights_only=True)`` (DCP's file reader already does this);
- non-tensor items (``BytesIO`` entries, e.g. a plain int in a state dict) are read with
  ``torch.load(weights_only=True)`` too, instead of DCP's ``weights_only=False``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

from openwfm.errors import OpenWFMError

METADATA = ".metadata"
_DCP_META = "torch.distributed.checkpoint.metadata"
ALLOWED = {
    (_DCP_META, "Metadata"), (_DCP_META, "MetadataIndex"), (_DCP_META, "ChunkStorageMetadata"),
    (_DCP_META, "BytesStorageMetadata"), (_DCP_META, "TensorProperties"), (_DCP_META, "TensorStorageMetadata"),
    (_DCP_META, "StorageMeta"), (_DCP_META, "_MEM_FORMAT_ENCODING"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"), ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "Path"),
    ("collections", "OrderedDict"),
}


class UnsafeFileError(OpenWFMError):
    """A file in a checkpoint asks to run or import something a checkpoint must not."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata and nothing else: every global outside ``ALLOWED`` (and torch dtypes) is
    refused before it is imported or called."""

    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeFileError(f"{self.where}: refers to {module}.{name}, which a checkpoint's metadata may not "
                              "name (only torch.distributed.checkpoint's metadata classes are read); "
                              "this file was not loaded")


def read_metadata(path: str | os.PathLike):
    """DCP's ``Metadata`` from the file ``path``, read through ``RestrictedUnpickler``."""
    from torch.distributed.checkpoint.metadata import Metadata

    with open(path, "rb") as f:
        try:
            meta = RestrictedUnpickler(f, str(path)).load()
        except UnsafeFileError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated or garbage pickles raise assorted errors
            raise UnsafeFileError(f"{path}: not readable DCP metadata ({type(e).__name__}: {e})") from e
    if not isinstance(meta, Metadata):
        raise UnsafeFileError(f"{path}: holds a {type(meta).__name__}, not DCP metadata")
    return meta


class SafeReader(FileSystemReader):
    """``FileSystemReader`` whose metadata is read by ``read_metadata`` (no arbitrary unpickling)."""

    def read_metadata(self, *args, **kwargs):
        from torch.distributed.checkpoint.metadata import StorageMeta

        rank = kwargs.get("rank")
        name = METADATA if rank is None else f"__{rank}{METADATA}"
        meta = read_metadata(Path(self.path) / name)
        if getattr(meta, "storage_meta", None) is None:
            meta.storage_meta = StorageMeta()
        meta.storage_meta.load_id = self.load_id
        return meta


class SafePlanner(DefaultLoadPlanner):
    """``DefaultLoadPlanner`` that reads non-tensor items with ``weights_only=True``."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeFileError(f"DCP item {fqn}: not plain tensor data (torch.load(weights_only=True) refused "
                                  "it); a checkpoint's items must load without running code") from e
        if not self.flatten_state_dict:
            self.state_dict[fqn] = obj
            return
        *parents, last = self.mappings[fqn]
        node = self.original_state_dict
        for key in parents:
            node = node[key]
        node[last] = obj


def load(state_dict: dict, directory: str | os.PathLike, planner: SafePlanner | None = None) -> None:
    """``dcp.load`` in place through ``SafeReader`` and ``SafePlanner``; an ``UnsafeFileError`` raised on any
    rank is re-raised as itself (DCP wraps reader errors in a ``CheckpointException``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.load(state_dict, storage_reader=SafeReader(directory), planner=planner or SafePlanner())
    except CheckpointException as e:
        for failure in getattr(e, "failures", {}).values():
            cause = failure[0] if isinstance(failure, tuple) else failure
            if isinstance(cause, UnsafeFileError):
                raise cause from None
        raise RuntimeError(str(e).strip().splitlines()[-1]) from None  # CheckpointException is a BaseException


def read_part(directory: str | os.PathLike, part: str) -> dict[str, torch.Tensor] | None:
    """Full tensors under the top-level key ``part`` (``model``, ``ema``) of the DCP checkpoint in
    ``directory``, keyed by their names below it; read in one process, no process group. None when the
    checkpoint has no such part."""
    import warnings

    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = SafeReader(directory).read_metadata()
    paths = meta.planner_data or {}
    want = {k: torch.empty(v.size, dtype=v.properties.dtype) for k, v in meta.state_dict_metadata.items()
            if isinstance(v, TensorStorageMetadata) and tuple(paths.get(k, (k,)))[0] == part}
    if not want:
        return None
    with warnings.catch_warnings():  # "no process group: loading in a single process" is the intent
        warnings.simplefilter("ignore", UserWarning)
        load(want, directory, SafePlanner(flatten_state_dict=False))
    return {k[len(part) + 1:] if k.startswith(part + ".") else k: v for k, v in want.items()}
