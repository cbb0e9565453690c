"""LoRA adapters (Hu et al. 2021) for post-training a frozen world model.

``add_lora`` replaces chosen ``nn.Linear`` layers by ``LoRALinear``: y = W x + (alpha / r) B A x with A
(r x in, Kaiming-uniform) and B (out x r) zero-initialized, so the adapted model equals the base until it
trains; the base weights are frozen. Adapters are saved and loaded alone (``lora_state_dict`` /
``load_lora``, a few MB for a large model) and can be merged into the base weights (``merge_lora``: W +=
(alpha / r) B A), after which the model is a plain one again with the same outputs.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

# the DiT's attention (q, k, v, out) and MLP (fc1, fc2) linears; the AR model's (wq, wk, wv, wo, w1, w2, w3)
DEFAULT_TARGETS = ("q", "k", "v", "out", "fc1", "fc2", "wq", "wk", "wv", "wo", "w1", "w2", "w3")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int = 16, alpha: float = 16.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base, self.rank, self.scale = base, rank, alpha / rank
        self.base.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain linear layer with the adapter folded into its weight."""
        lin = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.base.weight + self.scale * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                lin.bias.copy_(self.base.bias)
        return lin


def add_lora(model: nn.Module, rank: int = 16, alpha: float = 16.0, targets=DEFAULT_TARGETS) -> list[str]:
    """Freeze ``model`` and wrap every linear layer whose attribute name is in ``targets``; returns the
    wrapped layers' names. Layers already wrapped are left as they are."""
    model.requires_grad_(False)
    names = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(parent, child_name, LoRALinear(child, rank, alpha))
                names.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    if not names:
        raise ValueError(f"no linear layer named {', '.join(targets)} in the model: nothing to adapt")
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' tensors (``...lora_A`` / ``...lora_B``)."""
    return {k: v.detach() for k, v in model.state_dict().items() if k.endswith(("lora_A", "lora_B"))}


def save_lora(model: nn.Module, path: str | os.PathLike, meta: dict[str, str] | None = None) -> None:
    from openwfm.files import save_safetensors

    save_safetensors({k: v.contiguous() for k, v in lora_state_dict(model).items()}, str(path), metadata=meta or {})


def load_lora(model: nn.Module, path_or_state: str | os.PathLike | dict) -> None:
    """Load adapters into a model already wrapped by ``add_lora`` with the same targets and rank."""
    from safetensors.torch import load_file

    state = path_or_state if isinstance(path_or_state, dict) else load_file(str(path_or_state))
    mine = lora_state_dict(model)
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or extra:
        raise ValueError(f"adapter mismatch: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                         f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''} (same targets and rank?)")
    for k, v in state.items():
        if v.shape != mine[k].shape:
            raise ValueError(f"adapter {k}: shape {tuple(v.shape)} != {tuple(mine[k].shape)} (another rank?)")
    model.load_state_dict(state, strict=False)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base layer (in place); returns how many were merged."""
    n = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merged())
                n += 1
    return n
