"""2 gloo ranks vs one process: FSDP2 and context parallelism give the same loss and gradients; sharded
(DCP) checkpoints resume exactly and consolidate to one safetensors file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dist_helpers import run_ranks
from safetensors.torch import load_file

from openwfm.config import make_config
from openwfm.tasks.toy import MovingSquares, ToyRunConfig, ToyTask, _collate
from openwfm.train import checkpoint as ckpt
from openwfm.train.config import DistConfig
from openwfm.train.distributed import init_distributed, wrap_model
from openwfm.train.loop import Trainer
from openwfm.train.metrics import read_metrics

pytestmark = pytest.mark.distributed
BATCH = 4


def _cfg(*overrides: str) -> ToyRunConfig:
    return make_config(ToyRunConfig, "tiny", overrides=["model.patch_size=2", *overrides])


def _inputs():
    """A fixed batch, noise levels and noise: the loss is deterministic, so ranks can be compared."""
    cfg = _cfg()
    batch = _collate([MovingSquares(8, 4, 16)[i] for i in range(BATCH)])
    g = torch.Generator().manual_seed(7)
    sigma = torch.rand(BATCH, generator=g) * 2 + 0.1
    noise = torch.randn(batch["video"].shape, generator=g)
    return cfg, batch["video"], sigma, noise


def _build(task):
    """The toy model with every weight random (its zero-initialized output layer and gates would
    otherwise leave most gradients zero, and the comparison toothless)."""
    model = task.build_model()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def _loss(model, task, x, sigma, noise, env):
    pred = model(x + sigma.view(-1, 1, 1, 1, 1) * noise, sigma, cp_group=env.cp_group)
    return ((pred - task._local(noise, env)) ** 2).mean()


def _reference() -> tuple[float, dict[str, torch.Tensor]]:
    cfg, x, sigma, noise = _inputs()
    task = ToyTask(cfg)
    model = _build(task)
    from openwfm.train.distributed import DistEnv

    loss = _loss(model, task, x, sigma, noise, DistEnv())
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _grads(model) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in model.named_parameters():
        g = p.grad
        out[n] = (g.full_tensor() if hasattr(g, "full_tensor") else g).clone()
    return out


def _mean(value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.item() / torch.distributed.get_world_size()


def _worker(rank: int, world: int, tmp: Path) -> dict:
    result = {}
    cfg, x, sigma, noise = _inputs()
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    task = ToyTask(cfg)

    # FSDP2: each rank half the batch, parameters sharded
    env = init_distributed(DistConfig(strategy="fsdp"))
    model = _build(task)
    wrapped = wrap_model(model, env, task.blocks(model))
    loss = _loss(wrapped, task, x[half], sigma[half], noise[half], env)
    loss.backward()
    result["fsdp"] = (_mean(loss.item()), _grads(model))

    # context parallelism (2 ranks share each sequence) under DDP: both ranks see the whole batch
    env = init_distributed(DistConfig(strategy="ddp", context_parallel=world))
    model = _build(task)
    wrapped = wrap_model(model, env, task.blocks(model))
    loss = _loss(wrapped, task, x, sigma, noise, env)
    loss.backward()
    result["cp"] = (_mean(loss.item()), _grads(model))

    # the trainer under FSDP2 with sharded checkpoints: straight 4 steps vs 2 steps + resume to 4
    def run(run_dir, steps, resume=False):
        c = _cfg(f"train.steps={steps}", "train.checkpoint.every=2", "train.dist.strategy=fsdp")
        Trainer(ToyTask(c), run_dir, resume=resume, progress=False).fit()

    run(tmp / "a", 4)
    run(tmp / "b", 2)
    run(tmp / "b", 4, resume=True)
    result["losses"] = [[r["loss"] for r in read_metrics(tmp / d / "metrics.jsonl")] for d in ("a", "b")]
    c = _cfg("train.steps=4", "train.dist.strategy=fsdp")
    trainer = Trainer(ToyTask(c), tmp / "a", resume=True, progress=False)
    trainer._setup()  # loads step 4 into a fresh sharded model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    result["full"] = {k: v.clone() for k, v in full.items()} if rank == 0 else None
    return result


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    return tmp, run_ranks(_worker, tmp, world=2, timeout=240)


@pytest.mark.parametrize("mode", ["fsdp", "cp"])
def test_two_ranks_match_one_process(ranks, mode):
    _, results = ranks
    ref_loss, ref_grads = _reference()
    for r in results:
        loss, grads = r[mode]
        assert loss == pytest.approx(ref_loss, abs=1e-5, rel=1e-5)
        assert grads.keys() == ref_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-5,
                                       msg=lambda m, n=name: f"{mode} grad {n}: {m}")


def test_sharded_checkpoint_resumes_exactly_and_consolidates(ranks):
    tmp, results = ranks
    straight, resumed = results[0]["losses"]
    assert len(straight) == 4 and straight == resumed
    step4 = tmp / "a" / "checkpoints" / "step-00000004"
    assert (step4 / "dcp").is_dir() and not (step4 / "model.safetensors").exists()
    assert ckpt.verify(step4) == []
    out = ckpt.consolidate(step4, tmp / "consolidated")
    assert [p.name for p in out] == ["model.safetensors", "ema.safetensors"]
    weights = load_file(out[0])
    full = results[0]["full"]
    assert weights.keys() == full.keys()
    for k in full:
        assert torch.equal(weights[k], full[k]), k
    _, in_memory = ckpt.load_weights(tmp / "a", ema=False)  # a run directory, consolidated in memory
    assert all(torch.equal(in_memory[k], full[k]) for k in full)
