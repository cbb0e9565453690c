"""Files with the permissions the user's umask asks for.

``tempfile.mkstemp`` (used for atomic writes) and safetensors' ``save_file`` create files readable by their
owner only (0600) whatever the umask; everything openwfm writes for the user goes through ``as_umask`` so a
shared run directory or dataset stays readable (0644 under the usual umask 022).
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST = "manifest.jsonl"  # the curator's record of every input it found (curate/manifest.py)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()


def as_umask(path: str | os.PathLike) -> Path:
    """Give a file created 0600 the mode a plain ``open(path, "w")`` would have had (0666 & ~umask)."""
    os.chmod(path, 0o666 & ~UMASK)
    return Path(path)


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` with the umask's permissions."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return as_umask(path)
