"""The training loop every model family shares.

One optimizer step: ``grad_accum`` micro-batches under autocast (fp32 master weights), gradients
averaged over ranks by DDP or FSDP2, clipped, checked for NaN/Inf (a bad step is skipped and counted;
``max_bad_steps`` in a row stop the run with the last good checkpoint intact), AdamW at the scheduled
learning rate, EMA update. Checkpoints every ``checkpoint.every`` steps, at the end, and on Ctrl-C.
On CPU with deterministic settings a resumed run repeats the uninterrupted run's losses bit for bit:
weights, optimizer moments, EMA, RNG and data position are all restored.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from openwfm.config import to_dict
from openwfm.errors import OpenWFMError
from openwfm.train import checkpoint as ckpt
from openwfm.train.distributed import (DistEnv, all_reduce, init_distributed, set_grad_sync, shutdown,
                                       wrap_model)
from openwfm.train.ema import EMA
from openwfm.train.metrics import MetricsLog, TrainProgress, machine
from openwfm.train.optim import build_optimizer, lr_at, set_lr
from openwfm.train.task import Task

log = logging.getLogger(__name__)


class TrainingError(OpenWFMError):
    """Training cannot go on (repeated non-finite losses, no data); checkpoints already written stay."""


class TrainingInterrupted(OpenWFMError):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint was saved at the last finished step."""


class Trainer:
    """Train ``task`` with its run config ``cfg`` (fields ``model``, ``data``, ``stages``, ``train``)
    in ``run_dir``. Call ``fit()``; launch under torchrun for several ranks, unchanged."""

    def __init__(self, task: Task, run_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                 env: DistEnv | None = None, restart: bool = False):
        if resume and restart:
            raise TrainingError("--resume and --restart exclude each other: continue the run, or set its "
                                "checkpoints aside and start over")
        self.task, self.cfg, self.tc = task, task.cfg, task.cfg.train
        self.run_dir, self.resume, self.restart, self.show_progress = Path(run_dir), resume, restart, progress
        self.env = env or init_distributed(self.tc.dist, self.tc.device)
        self.step = 0  # optimizer steps done
        self.epoch, self.position, self.stage = 0, 0, 0  # data position: batches of `epoch` consumed
        self.skipped = self.bad_in_row = 0
        self.tokens_seen = 0
        self._iter = None
        self._stop_signal: str | None = None

    # ------------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        tc, env = self.tc, self.env
        if tc.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=env.device.type == "cuda")
        torch.manual_seed(tc.seed)  # identical initial weights on every rank
        model = self.task.build_model().to(env.device)
        self.task.init_weights(model)
        if tc.activation_checkpointing:
            if not hasattr(model, "grad_checkpointing"):
                log.warning("%s has no grad_checkpointing switch; activation checkpointing is off",
                            type(model).__name__)
            model.grad_checkpointing = True
        self.model = model  # bare module: what is saved, averaged and returned
        blocks = self.task.blocks(model)
        self.wrapped = wrap_model(model, env, blocks, tc.dist.reshard_after_forward,
                                  torch.bfloat16 if self.amp_dtype == torch.bfloat16 else None)
        if tc.compile:
            for block in blocks or [model]:
                block.compile()  # in place: parameter names stay those of the bare model
        self.optimizer = build_optimizer(model, tc.optim)
        self.ema = EMA(model, tc.ema) if tc.ema.kind != "none" else None
        torch.manual_seed(tc.seed + 1_000_003 * env.rank)  # per-rank noise from here on
        self.ckpt_root = self.run_dir / "checkpoints"
        self.sharded = tc.checkpoint.sharded == "yes" or (tc.checkpoint.sharded == "auto"
                                                          and env.strategy == "fsdp")
        from openwfm.data import stage_at

        self.stage = stage_at(0, self.cfg.stages, self.cfg.data)[0]  # a resumed run restores its own
        if self.resume or self.restart:
            latest, error = None, None
            if env.is_main:
                try:
                    latest = ckpt.resume_point(self.ckpt_root, tc.checkpoint.checksum, restart=self.restart)
                except ckpt.CheckpointError as e:
                    error = str(e)
            latest, error = self._broadcast((latest, error))
            if error:
                raise ckpt.CheckpointError(error)
            if latest is None:
                log.info("%s: no checkpoint in %s; starting from step 0",
                         "--restart" if self.restart else "--resume", self.ckpt_root)
            else:
                mults = [g.get("lr_mult", 1.0) for g in self.optimizer.param_groups]
                state = ckpt.load_checkpoint(latest, model=model, optimizer=self.optimizer, ema=self.ema, env=env)
                saved = [g.get("lr_mult", 1.0) for g in self.optimizer.param_groups]
                if saved != mults or any("betas" not in g for g in self.optimizer.param_groups):
                    raise TrainingError(f"{latest}: the checkpoint's optimizer groups (learning-rate factors "
                                        f"{saved}) are not this run's ({mults}): train.optim.lr_mult changed "
                                        "since it was saved; keep it, or start a new run")
                for k in ("step", "epoch", "position", "stage", "skipped", "tokens_seen"):
                    setattr(self, k, state[k])
                log.info("resumed from %s (step %d)", latest, self.step)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", enabled=env.is_main)

    def _broadcast(self, obj):
        from openwfm.train.distributed import broadcast_object

        return broadcast_object(obj, self.env)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        p = self.tc.precision
        if p == "auto":
            p = "bf16" if self.env.device.type == "cuda" else "fp32"
        return torch.bfloat16 if p == "bf16" else None

    # --------------------------------------------------------------------------------------- data
    def _next_batch(self) -> dict:
        from openwfm.data import stage_at

        index, data_cfg = stage_at(self.step, self.cfg.stages, self.cfg.data)
        if index != self.stage:  # a new progressive stage starts a fresh epoch at its resolution
            self.stage, self.epoch, self.position, self._iter = index, self.epoch + 1, 0, None
        for attempt in range(2):
            if self._iter is None:
                self._iter = iter(self.task.make_loader(data_cfg, self.env, self.epoch, self.position))
            try:
                batch = next(self._iter)
                self.position += 1
                return batch
            except StopIteration:
                if attempt:
                    raise TrainingError(f"the data yields no batches (data.shards={data_cfg.shards!r})")
                self.epoch, self.position, self._iter = self.epoch + 1, 0, None
        raise AssertionError("unreachable")

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.env.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    # --------------------------------------------------------------------------------------- step
    def train_step(self) -> dict[str, float]:
        tc, env = self.tc, self.env
        accum = tc.optim.grad_accum
        lr = lr_at(self.step, tc.optim, tc.steps)
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        total, extras, tokens = 0.0, {}, 0
        amp = self.amp_dtype
        self.task.step = self.step  # tasks with step-dependent losses (e.g. two-stage schedules) read it
        for micro in range(accum):
            batch = self._to_device(self._next_batch())
            set_grad_sync(self.wrapped, env, micro == accum - 1)
            ctx = torch.autocast(env.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
            with ctx:
                loss, logs = self.task.loss(self.wrapped, batch, env)
            (loss.float() / accum).backward()
            total += loss.detach().float().item() / accum
            tokens += self.task.tokens(batch)
            for k, v in logs.items():
                extras[k] = extras.get(k, 0.0) + float(v) / accum
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = tc.optim.max_grad_norm or float("inf")
        gnorm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
        if hasattr(gnorm, "full_tensor"):
            gnorm = gnorm.full_tensor()
        stats = torch.tensor([total, float(tokens), float(gnorm)], dtype=torch.float64, device=env.device)
        all_reduce(stats, env, "sum")
        loss_mean = stats[0].item() / env.world_size
        gnorm_v = stats[2].item() / env.world_size
        finite = math.isfinite(loss_mean) and math.isfinite(gnorm_v)
        if finite:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model, self.step + 1 - self.skipped)
            self.bad_in_row = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.bad_in_row += 1
            log.warning("step %d: non-finite loss or gradient (loss %s, grad norm %s); step skipped",
                        self.step, loss_mean, gnorm_v)
        self.step += 1
        step_tokens = int(stats[1].item()) // env.cp_size
        self.tokens_seen += step_tokens
        return {"loss": loss_mean, "lr": lr, "grad_norm": gnorm_v, "tokens": step_tokens,
                "skipped": self.skipped, **extras}

    # ---------------------------------------------------------------------------------- checkpoint
    def save(self, on_file=None) -> Path:
        state = {"step": self.step, "epoch": self.epoch, "position": self.position, "stage": self.stage,
                 "skipped": self.skipped, "tokens_seen": self.tokens_seen, "task": self.task.name,
                 "machine": machine(str(self.env.device))}
        config = {"task": self.task.name, **to_dict(self.cfg)}
        path = ckpt.save_checkpoint(self.ckpt_root, self.step, model=self.model, optimizer=self.optimizer,
                                    ema=self.ema, trainer_state=state, config=config, env=self.env,
                                    sharded=self.sharded, keep_last=self.tc.checkpoint.keep_last,
                                    checksum=self.tc.checkpoint.checksum, on_file=on_file)
        log.info("saved %s", path)
        return path

    # ---------------------------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Train to ``train.steps``; returns a summary (final step, last loss, skipped steps, paths)."""
        self._setup()
        tc, env = self.tc, self.env
        old = self._install_signals()
        progress = TrainProgress(tc.steps, self.step, enabled=self.show_progress and env.is_main)
        last: dict[str, float] = {}
        window_t, window_steps, window_tokens = time.perf_counter(), 0, 0
        try:
            with progress:
                while self.step < tc.steps:
                    out = self.train_step()
                    if self.bad_in_row >= tc.max_bad_steps:
                        raise TrainingError(
                            f"{self.bad_in_row} steps in a row had a non-finite loss or gradient (last at "
                            f"step {self.step}); stopped. Last good checkpoint: "
                            f"{ckpt.latest_checkpoint(self.ckpt_root, False) or 'none'}. Lower optim.lr, "
                            "raise optim.warmup_steps or use precision=fp32")
                    last = out
                    window_steps += 1
                    window_tokens += out["tokens"]
                    progress.update(self.step, out)
                    if self.step % tc.log_every == 0 or self.step == tc.steps:
                        dt = max(time.perf_counter() - window_t, 1e-9)
                        self.metrics.write({"step": self.step, **out, "it_per_s": window_steps / dt,
                                            "tokens_per_s": window_tokens / dt, "epoch": self.epoch})
                        window_t, window_steps, window_tokens = time.perf_counter(), 0, 0
                    stop = self._stop_requested()
                    if self.step % tc.checkpoint.every == 0 or self.step == tc.steps or stop:
                        self.save()
                    if stop:
                        raise TrainingInterrupted(
                            f"{self._stop_signal or 'signal'}: saved a checkpoint at step {self.step} in "
                            f"{self.ckpt_root}; continue with --resume")
        finally:
            self._restore_signals(old)
            self.metrics.close()
        return {"step": self.step, "loss": last.get("loss"), "skipped": self.skipped,
                "run_dir": str(self.run_dir), "checkpoint": str(ckpt.step_dir(self.ckpt_root, self.step))}

    def close(self) -> None:
        shutdown(self.env)

    # ------------------------------------------------------------------------------------- signals
    def _install_signals(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_signal is not None:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name
            log.warning("%s received: saving a checkpoint after this step (again to abort)", self._stop_signal)

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signals(self, old) -> None:
        for s, h in (old or {}).items():
            signal.signal(s, h)

    def _stop_requested(self) -> bool:
        """Whether any rank got a signal; agreed by all ranks so they save at the same step."""
        flag = torch.tensor([1.0 if self._stop_signal else 0.0], device=self.env.device)
        return bool(all_reduce(flag, self.env, "max").item())
