"""Trainer configuration: optimizer, schedule, EMA, precision, checkpoints, distribution.

Defaults follow the Cosmos paper where it gives a value (AdamW, weight decay 0.1, bf16 compute with fp32
master weights, FSDP + context parallelism); the rest are the usual choices, stated here.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

from openwfm.config import ConfigError


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (linear warm-up, then constant, cosine or warmup-stable-decay)."""

    lr: float = 2.0 ** -15  # paper: 2^-15 for the 7B diffusion model
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.1  # paper value; not applied to biases, norms and embeddings (ndim < 2)
    warmup_steps: int = 1000
    schedule: str = "constant"  # constant | cosine (after warm-up) | wsd (constant, then cosine over decay_steps)
    decay_steps: int = 0  # wsd: the last steps, over which the rate decays
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    max_grad_norm: float = 1.0  # 0 disables clipping (the norm is still measured)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr_mult: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> learning-rate factor


@dataclass
class EMAConfig:
    """Exponential moving average of the weights.

    ``power``: EDM2's power-function EMA (Karras et al. 2024, sec. 3.1): beta_t = (1 - 1/t)^(gamma+1),
    gamma chosen so that the averaging profile has relative width ``sigma_rel``.
    ``classic``: constant ``decay``. ``none``: no EMA file.
    """

    kind: str = "power"  # power | classic | none
    sigma_rel: float = 0.05
    decay: float = 0.9999


@dataclass
class CheckpointConfig:
    every: int = 1000  # steps between checkpoints (the last step always saves)
    keep_last: int = 3
    sharded: str = "auto"  # auto (sharded under FSDP) | yes | no
    checksum: bool = True  # sha256 of every file in index.json; False records sizes only


@dataclass
class DistConfig:
    """How ranks launched by torchrun split the work. One process runs unchanged."""

    strategy: str = "auto"  # auto (ddp when world > 1) | none | ddp | fsdp
    context_parallel: int = 1  # ranks sharing one sequence; world = data_parallel * context_parallel
    reshard_after_forward: bool = True  # FSDP2: free gathered weights after forward (ZeRO-3)
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | gloo | nccl


@dataclass
class TrainConfig:
    steps: int = 1000
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 — autocast; weights stay fp32
    compile: bool = False  # torch.compile the model
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    deterministic: bool = True  # torch.use_deterministic_algorithms (exact resume on CPU)
    log_every: int = 10
    max_bad_steps: int = 5  # consecutive NaN/Inf steps before training stops
    device: str = "auto"  # auto | cpu | cuda
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"train config: {msg}")

        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(self.precision in ("auto", "fp32", "bf16"), f"precision must be auto|fp32|bf16, got '{self.precision}'")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto|cpu|cuda, got '{self.device}'")
        need(self.log_every >= 1, "log_every must be >= 1")
        need(self.max_bad_steps >= 1, "max_bad_steps must be >= 1")
        o = self.optim
        need(math.isfinite(o.lr) and o.lr > 0, f"optim.lr must be finite and > 0, got {o.lr}")
        need(math.isfinite(o.weight_decay) and o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
        need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
             f"optim.betas must be two numbers in [0, 1), got {list(o.betas)}")
        need(math.isfinite(o.eps) and o.eps > 0, f"optim.eps must be > 0, got {o.eps}")
        need(all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in o.lr_mult.values()),
             f"optim.lr_mult factors must be finite and > 0, got {dict(o.lr_mult)}")
        need(o.schedule in ("constant", "cosine", "wsd"), f"optim.schedule must be constant|cosine|wsd, got '{o.schedule}'")
        need(o.schedule != "wsd" or o.decay_steps > 0, "optim.schedule=wsd needs optim.decay_steps > 0")
        need(o.warmup_steps >= 0 and o.grad_accum >= 1, "optim.warmup_steps >= 0 and optim.grad_accum >= 1")
        need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]")
        need(o.max_grad_norm >= 0, "optim.max_grad_norm must be >= 0")
        need(self.ema.kind in ("power", "classic", "none"), f"ema.kind must be power|classic|none, got '{self.ema.kind}'")
        need(0 < self.ema.sigma_rel < 0.28, "ema.sigma_rel must be in (0, 0.28) (EDM2 profiles)")
        need(0 <= self.ema.decay < 1, "ema.decay must be in [0, 1)")
        c = self.checkpoint
        if str(c.sharded) in ("True", "False"):  # the command line's YAML reads yes / no / true / false as booleans
            c.sharded = "yes" if str(c.sharded) == "True" else "no"
        need(c.every >= 1 and c.keep_last >= 1, "checkpoint.every and checkpoint.keep_last must be >= 1")
        need(c.sharded in ("auto", "yes", "no"), f"checkpoint.sharded must be auto|yes|no, got '{c.sharded}'")
        d = self.dist
        need(d.strategy in ("auto", "none", "ddp", "fsdp"), f"dist.strategy must be auto|none|ddp|fsdp, got '{d.strategy}'")
        need(d.context_parallel >= 1, "dist.context_parallel must be >= 1")
        need(d.backend in ("auto", "gloo", "nccl"), f"dist.backend must be auto|gloo|nccl, got '{d.backend}'")
