"""Memory budgets (``--max-memory``): reading an amount, this process's resident memory, and the peak
memory of a computation counted on *meta* tensors (shapes only), which is how the tokenizer
(tokenizer/memory.py) and the world-model pipeline check a job against its budget before any work."""

from __future__ import annotations

import os
import re
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from openwfm.config import ConfigError
from openwfm.errors import OpenWFMError

DEFAULT_MAX_MEMORY = "4GiB"
SAFETY = 1.25  # measured peak RSS / counted tensor bytes: 1.14-1.22 on the shipped tokenizers
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kb": 10 ** 3, "kib": 2 ** 10, "m": 2 ** 20, "mb": 10 ** 6,
          "mib": 2 ** 20, "g": 2 ** 30, "gb": 10 ** 9, "gib": 2 ** 30, "t": 2 ** 40, "tb": 10 ** 12, "tib": 2 ** 40}


class MemoryBudgetError(OpenWFMError):
    """The input cannot be coded within the memory budget, even in the smallest pieces."""


def parse_memory(text: str | int) -> int:
    """Bytes in ``'4GiB'``, ``'4G'`` (binary), ``'512MB'`` (decimal), ``'1.5g'`` or a plain number of bytes."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"--max-memory: cannot read '{text}' as an amount of memory (e.g. 4GiB, 512MB)")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ConfigError(f"--max-memory must be positive, got '{text}'")
    return value


def gib(n: int) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages alive at once (a storage shared by views counts once)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage id -> [tensors alive, bytes]

    def _release(self, key: int) -> None:
        ref = self._refs[key]
        ref[0] -= 1
        if ref[0] == 0:
            self.live -= ref[1]
            del self._refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key in self._refs:
                    self._refs[key][0] += 1
                else:
                    self._refs[key] = [1, storage.nbytes()]
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._release, key)
        return out


def peak_bytes(fn, *inputs: torch.Tensor) -> int:
    """The most bytes of tensors alive at once while ``fn(*inputs)`` runs (no gradient), the inputs
    included; with meta inputs (and a meta model) it costs neither memory nor arithmetic."""
    with torch.no_grad(), _LiveBytes() as count:
        fn(*inputs)
    return count.peak + sum(x.untyped_storage().nbytes() for x in inputs)


def process_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0
