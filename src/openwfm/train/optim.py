"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedule as a pure function."""

from __future__ import annotations

import math

import torch

from openwfm.config import ConfigError

from openwfm.training_config import OptimConfig


def lr_at(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up from lr/warmup to lr over
    ``warmup_steps``, then constant, or cosine down to ``min_lr_ratio * lr`` at ``total_steps``; ``wsd``
    (warmup-stable-decay): constant, then that cosine over the last ``decay_steps`` only — so a run at
    constant rate can be lengthened and decayed at its end, and the schedule still names every step."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    start = cfg.warmup_steps if cfg.schedule == "cosine" else max(cfg.warmup_steps, total_steps - cfg.decay_steps)
    if step < start:
        return cfg.lr
    progress = min(1.0, (step - start) / max(1, total_steps - start))
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay only on tensors with ndim >= 2 (weights of linear
    and conv layers), never on biases, norm gains or 1-d embeddings. Parameters whose name starts with a
    prefix of ``cfg.lr_mult`` train at that multiple of the learning rate (e.g. layers a post-training run
    adds, from zero, to a trained model); the longest matching prefix wins."""
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            match = max((k for k in cfg.lr_mult if name.startswith(k)), key=len, default=None)
            mult = float(cfg.lr_mult[match]) if match is not None else 1.0
            groups.setdefault((p.ndim >= 2, mult), []).append(p)
    unused = [k for k in cfg.lr_mult if not any(n.startswith(k) for n, _ in model.named_parameters())]
    if unused:
        raise ConfigError(f"train.optim.lr_mult names {unused}, which match no parameter of the model")
    keys = sorted(groups, key=lambda k: (k[1] != 1.0, k[1], not k[0]))  # the plain groups first, as before
    return torch.optim.AdamW([{"params": groups[k], "weight_decay": cfg.weight_decay if k[0] else 0.0,
                               "lr_mult": k[1]} for k in keys], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
