"""The trainer on one CPU process: schedule, EMA, checkpoints (atomic, verified), exact resume, faults."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from openwfm.config import ConfigError, make_config
from openwfm.tasks.toy import ToyRunConfig, ToyTask
from openwfm.train import checkpoint as ckpt
from openwfm.train.config import EMAConfig, OptimConfig
from openwfm.train.ema import EMA, ema_beta, gamma_from_sigma_rel, sigma_rel_from_gamma
from openwfm.train.loop import Trainer, TrainingError, TrainingInterrupted
from openwfm.train.metrics import plot_run, read_metrics
from openwfm.train.optim import build_optimizer, lr_at, set_lr


def tiny(*overrides: str) -> ToyRunConfig:
    return make_config(ToyRunConfig, "tiny", overrides=list(overrides))


def fit(run_dir: Path, cfg: ToyRunConfig, resume: bool = False, task_cls=ToyTask) -> dict:
    return Trainer(task_cls(cfg), run_dir, resume=resume, progress=False).fit()


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")]


# ------------------------------------------------------------------------------------ schedule, EMA

def test_lr_schedule_warmup_then_cosine():
    cfg = OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg, total_steps=14) for s in range(15)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0) and lrs[9] == pytest.approx(0.55) and lrs[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lr_at(100, OptimConfig(lr=0.3, warmup_steps=4), 10) == 0.3
    wsd = OptimConfig(lr=1.0, warmup_steps=4, schedule="wsd", decay_steps=10, min_lr_ratio=0.1)
    assert [lr_at(s, wsd, total_steps=14) for s in range(15)] == lrs  # decay over all steps after warm-up
    wsd = OptimConfig(lr=1.0, warmup_steps=4, schedule="wsd", decay_steps=4, min_lr_ratio=0.1)
    lrs = [lr_at(s, wsd, total_steps=20) for s in range(21)]
    assert lrs[4:17] == [1.0] * 13 and lrs[18] == pytest.approx(0.55) and lrs[20] == pytest.approx(0.1)


def test_lr_mult_scales_the_named_parameters_only():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)))
    opt = build_optimizer(net, OptimConfig(lr=1.0, weight_decay=0.1, lr_mult={"1": 10.0, "1.1.bias": 0.5}))
    set_lr(opt, 0.01)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    named = dict(net.named_parameters())
    assert lr_of[id(named["0.weight"])] == (0.01, 0.1) and lr_of[id(named["0.bias"])] == (0.01, 0.0)
    assert lr_of[id(named["1.0.weight"])] == (0.1, 0.1) and lr_of[id(named["1.1.weight"])] == (0.1, 0.1)
    assert lr_of[id(named["1.1.bias"])] == (0.005, 0.0)  # the longest prefix wins
    assert len(lr_of) == len(named)
    with pytest.raises(ConfigError, match="match no parameter"):
        build_optimizer(net, OptimConfig(lr_mult={"head": 2.0}))


def test_lr_mult_resumes_and_a_changed_one_is_refused(tmp_path):
    boosted = ["train.steps=2", "train.checkpoint.every=2", "train.optim.lr_mult={patch_in: 10}"]
    fit(tmp_path / "run", tiny(*boosted))
    fit(tmp_path / "run", tiny(*boosted[1:], "train.steps=3"), resume=True)  # the same factors: resumes
    assert len(losses(tmp_path / "run")) == 3
    for changed in (["train.optim.lr_mult={patch_in: 2}"], []):
        with pytest.raises(TrainingError, match="lr_mult changed"):
            fit(tmp_path / "run", tiny("train.steps=4", *changed), resume=True)


def test_power_ema_is_the_exact_power_profile():
    """After t updates, EDM2's power EMA weighs snapshot tau by (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1)."""
    for sigma_rel in (0.05, 0.10):
        gamma = gamma_from_sigma_rel(sigma_rel)
        assert sigma_rel_from_gamma(gamma) == pytest.approx(sigma_rel, rel=1e-9)
    cfg = EMAConfig(kind="power", sigma_rel=0.10)
    gamma = gamma_from_sigma_rel(0.10)
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, cfg)
    values = np.random.default_rng(0).normal(size=30)
    for t, v in enumerate(values, start=1):
        model.weight.data.fill_(float(v))
        ema.update(model, t)
    tau = np.arange(1, 31, dtype=np.float64)
    w = (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / 30 ** (gamma + 1)
    assert w.sum() == pytest.approx(1.0)
    assert ema.params["weight"].item() == pytest.approx(float((w * values).sum()), rel=1e-5)
    assert ema_beta(EMAConfig(kind="classic", decay=0.99), 5) == 0.99


# ------------------------------------------------------------------------------------- checkpoints

def test_training_writes_verified_checkpoints_and_metrics(tmp_path):
    out = fit(tmp_path, tiny())
    assert out["step"] == 8 and np.isfinite(out["loss"])
    found = ckpt.list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["step-00000004", "step-00000008"]
    last = found[-1]
    assert ckpt.verify(last) == []
    names = {p.name for p in last.iterdir()}
    assert {"config.json", "trainer.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors",
            "rng.safetensors", "index.json"} <= names
    cfg = json.loads((last / "config.json").read_text())
    assert cfg["task"] == "toy" and cfg["train"]["steps"] == 8
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "it_per_s"} <= set(rows[0])
    png = plot_run(tmp_path)
    assert png.stat().st_size > 5000


def test_keep_last_and_corruption_falls_back(tmp_path, caplog):
    fit(tmp_path, tiny("train.steps=12", "train.checkpoint.keep_last=2"))
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000008", "step-00000012"]
    model = root / "step-00000012" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern deep inside the weights
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert ckpt.latest_checkpoint(root) == root / "step-00000008"
    assert "sha256 mismatch" in caplog.text and "step-00000012" in caplog.text
    (root / "step-00000008" / "optimizer.safetensors").write_bytes(b"trunc")
    assert ckpt.latest_checkpoint(root) is None
    assert "truncated" in " ".join(ckpt.verify(root / "step-00000008"))


def _corrupt(path: Path) -> None:
    f = path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # a disk that filled up mid-write


def test_resume_over_only_corrupt_checkpoints_stops_and_deletes_nothing(tmp_path):
    fit(tmp_path, tiny("train.steps=12", "train.checkpoint.keep_last=3"))
    root = tmp_path / "checkpoints"
    found = ckpt.list_checkpoints(root)
    for p in found:
        _corrupt(p)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(ckpt.CheckpointError, match=r"none of the 3 checkpoints.*verifies.*--restart"):
        fit(tmp_path, tiny("train.steps=16"), resume=True)
    assert ckpt.list_checkpoints(root) == found and (tmp_path / "metrics.jsonl").read_bytes() == metrics
    with pytest.raises(TrainingError, match="exclude each other"):
        Trainer(ToyTask(tiny()), tmp_path, resume=True, restart=True)
    out = Trainer(ToyTask(tiny("train.steps=4")), tmp_path, restart=True, progress=False).fit()  # explicit
    assert out["step"] == 4 and Path(out["checkpoint"]).is_dir()
    assert sorted(p.name for p in (root / "quarantine").iterdir()) == [p.name for p in found]
    raw = read_metrics(tmp_path / "metrics.jsonl", raw=True)
    assert len(raw) == 12 + 4  # appended to, never truncated
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_corrupt_newer_checkpoints_are_quarantined_not_counted(tmp_path):
    """keep_last counts only checkpoints that verify: three corrupt newer ones never push out the good one."""
    fit(tmp_path, tiny("train.steps=4", "train.checkpoint.every=2", "train.checkpoint.keep_last=3"))
    root = tmp_path / "checkpoints"
    good = ckpt.list_checkpoints(root)[-1]
    for step in (10, 11, 12):  # copies of it, broken: a filled disk after every save
        bad = ckpt.step_dir(root, step)
        shutil.copytree(good, bad)
        _corrupt(bad)
    out = fit(tmp_path, tiny("train.steps=8", "train.checkpoint.every=2", "train.checkpoint.keep_last=3"),
              resume=True)
    assert out["step"] == 8 and Path(out["checkpoint"]).is_dir()
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000004", "step-00000006", "step-00000008"]
    assert sorted(p.name for p in (root / "quarantine").iterdir()) == [f"step-000000{n}" for n in (10, 11, 12)]
    assert "model.safetensors" in (root / "quarantine" / "step-00000012" / "problems.txt").read_text()


def test_a_save_that_fails_partway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    fit(tmp_path, tiny("train.steps=4"))
    real = ckpt.save_safetensors

    def full_disk(tensors, path, *a, **k):
        if "optimizer" in str(path):
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(28, "No space left on device")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ckpt, "save_safetensors", full_disk)
    with pytest.raises(OSError, match="No space"):
        fit(tmp_path, tiny("train.steps=8"), resume=True)
    monkeypatch.setattr(ckpt, "save_safetensors", real)
    root = tmp_path / "checkpoints"
    assert ckpt.latest_checkpoint(root) == root / "step-00000004"
    assert fit(tmp_path, tiny("train.steps=8"), resume=True)["step"] == 8


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from openwfm.config import make_config
    from openwfm.tasks.toy import ToyRunConfig, ToyTask
    from openwfm.train.loop import Trainer

    cfg = make_config(ToyRunConfig, "tiny", overrides=["train.steps=4"])
    trainer = Trainer(ToyTask(cfg), sys.argv[1], progress=False)
    trainer.fit()                                   # step-00000004 complete
    trainer.step = 5

    def stall(name):
        print("WROTE", name, flush=True)
        time.sleep(60)                              # killed here, halfway through the save

    trainer.save(on_file=stall)
""")


def test_save_killed_halfway_leaves_previous_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("WROTE model.safetensors"), line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    root = tmp_path / "checkpoints"
    assert (root / ".tmp-step-00000005" / "model.safetensors").exists()  # the half-written save
    latest = ckpt.latest_checkpoint(root)
    assert latest == root / "step-00000004"
    cfg = tiny("train.steps=6")
    out = fit(tmp_path, cfg, resume=True)  # resumes from step 4 and cleans the stale temporary directory
    assert out["step"] == 6 and not (root / ".tmp-step-00000005").exists()


# ------------------------------------------------------------------------------------ exact resume

class CrashAt(ToyTask):
    """Raises on the n-th loss evaluation: a crash between checkpoints."""

    crash_at = 6

    def loss(self, model, batch, env):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.crash_at:
            raise RuntimeError("simulated crash")
        return super().loss(model, batch, env)


def test_resume_repeats_the_uninterrupted_run_bitwise(tmp_path):
    overrides = ["train.steps=8", "train.optim.grad_accum=2", "train.optim.schedule=cosine",
                 "train.checkpoint.every=3", "synthetic_samples=10"]  # epochs of 5 batches: a boundary
    fit(tmp_path / "a", tiny(*overrides))
    CrashAt.crash_at = 2 * 4 + 1  # crashes in step 5 (2 micro-batches per step); last checkpoint: step 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "b", tiny(*overrides), task_cls=CrashAt)
    assert ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-00000003"
    fit(tmp_path / "b", tiny(*overrides), resume=True)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")  # exact float equality, steps 1..8
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a = load_file(tmp_path / "a" / "checkpoints" / "step-00000008" / name)
        b = load_file(tmp_path / "b" / "checkpoints" / "step-00000008" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# ------------------------------------------------------------------------------------------ faults

class NaNFrom(ToyTask):
    bad_steps: set[int] = set()

    def loss(self, model, batch, env):
        self.calls = getattr(self, "calls", 0) + 1
        loss, logs = super().loss(model, batch, env)
        return (loss * float("nan") if self.calls in self.bad_steps else loss), logs


def test_nonfinite_step_is_skipped_and_repeated_ones_stop(tmp_path):
    NaNFrom.bad_steps = {3}
    out = fit(tmp_path / "one", tiny(), task_cls=NaNFrom)
    assert out["step"] == 8 and out["skipped"] == 1
    rows = read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert rows[2]["loss"] is None and rows[2]["skipped"] == 1 and rows[3]["loss"] is not None

    NaNFrom.bad_steps = set(range(5, 100))
    with pytest.raises(TrainingError, match="3 steps in a row"):
        fit(tmp_path / "many", tiny("train.max_bad_steps=3"), task_cls=NaNFrom)
    root = tmp_path / "many" / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000004"]
    assert ckpt.verify(root / "step-00000004") == []


class InterruptAt(ToyTask):
    def loss(self, model, batch, env):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 3
        return super().loss(model, batch, env)


def test_ctrl_c_saves_then_resume_finishes(tmp_path):
    with pytest.raises(TrainingInterrupted, match="step 3"):
        fit(tmp_path, tiny(), task_cls=InterruptAt)
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step-00000003"
    assert fit(tmp_path, tiny(), resume=True)["step"] == 8
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 9))


def test_activation_checkpointing_gives_the_same_losses(tmp_path):
    fit(tmp_path / "a", tiny("train.steps=3"))
    fit(tmp_path / "b", tiny("train.steps=3", "train.activation_checkpointing=true"))
    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), rel=1e-6)


def test_bad_config_is_named():
    with pytest.raises(Exception, match="optim.schedule must be constant|cosine"):
        tiny("train.optim.schedule=linear")


def test_bf16_autocast_on_cpu_keeps_fp32_master_weights(tmp_path):
    out = fit(tmp_path, tiny("train.steps=3", "train.precision=bf16"))
    assert np.isfinite(out["loss"])
    weights = load_file(tmp_path / "checkpoints" / "step-00000003" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())


@pytest.mark.slow
def test_torch_compile_matches_eager(tmp_path):
    fit(tmp_path / "a", tiny("train.steps=3"))
    fit(tmp_path / "b", tiny("train.steps=3", "train.compile=true"))
    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), rel=1e-4)


def test_progressive_stages_switch_and_resume_exactly(tmp_path, shards):
    """Stage 2 (from step 4) trains on 32 px, 3-frame clips; a crash after the switch resumes exactly.
    Runs on real WebDataset shards of simulator scenes, with a DataLoader worker."""
    overrides = ["train.steps=7", "train.checkpoint.every=5", f"data.shards={shards}", "data.resolution=16",
                 "data.num_frames=4", "data.num_workers=1", "model.patch_size=4",
                 "stages=[{start_step: 4, resolution: 32, num_frames: 3, batch_size: 1}]"]
    fit(tmp_path / "a", tiny(*overrides))
    rows = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert [r["tokens"] for r in rows] == [2 * 4 * 16] * 4 + [1 * 3 * 64] * 3  # batch x frames x patches
    CrashAt.crash_at = 7
    with pytest.raises(RuntimeError):
        fit(tmp_path / "b", tiny(*overrides), task_cls=CrashAt)
    fit(tmp_path / "b", tiny(*overrides), resume=True)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from openwfm.config import get_preset
    from openwfm.data import pack_sim_dir
    from openwfm.sim.config import SimConfig
    from openwfm.sim.dataset import generate

    tmp = tmp_path_factory.mktemp("shards")
    generate("falling", get_preset(SimConfig, "tiny"), num=4, out=tmp / "sim", seed=0)
    pack_sim_dir(tmp / "sim", tmp / "shards", maxcount=2)
    return tmp / "shards"


def test_load_weights_prefers_ema_and_resolves_run_dirs(tmp_path):
    fit(tmp_path, tiny("train.steps=4"))
    config, weights = ckpt.load_weights(tmp_path)
    ema = load_file(tmp_path / "checkpoints" / "step-00000004" / "ema.safetensors")
    assert config["task"] == "toy" and weights.keys() == ema.keys()
    assert all(torch.equal(weights[k], ema[k]) for k in ema)
    _, raw = ckpt.load_weights(tmp_path / "checkpoints" / "step-00000004", ema=False)
    assert not all(torch.equal(raw[k], ema[k]) for k in ema)
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint"):
        ckpt.load_weights(tmp_path / "nowhere")
