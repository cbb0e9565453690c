"""``toy``: a tiny DiT-like video denoiser that exercises every part of the trainer.

Not a world model (that is ``openwfm.diffusion``): pixels are patchified (1, p, p), given a learnable
factorized (t, h, w) position embedding, and passed through pre-norm transformer blocks whose
self-attention is context-parallel and whose norms are modulated by the noise level (adaLN); the network
predicts the noise. Trains on WebDataset shards, or on procedurally generated moving squares when
``data.shards`` is empty, so tests, benchmarks and ``wfm train toy`` need no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from openwfm.config import ConfigError, register_preset
from openwfm.data import DataConfig, StageConfig, worker_context
from openwfm.nn.context_parallel import context_parallel_attention, shard_sequence
from openwfm.train.distributed import DistEnv
from openwfm.train.task import Task, register_task
from openwfm.training_config import TrainConfig


@dataclass
class ToyDiTConfig:
    in_channels: int = 3
    patch_size: int = 4  # spatial; temporal patch 1
    model_channels: int = 64
    num_blocks: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    max_frames: int = 64  # sizes of the factorized position tables
    max_height: int = 512
    max_width: int = 512
    P_mean: float = -1.2  # log-normal noise levels (EDM)
    P_std: float = 1.2


@dataclass
class ToyRunConfig:
    model: ToyDiTConfig = field(default_factory=ToyDiTConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(resolution=32, num_frames=8, batch_size=4))
    stages: list[StageConfig] = field(default_factory=list)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, log_every=10))
    synthetic_samples: int = 256  # clips generated when data.shards is empty

    def validate(self) -> None:
        self.train.validate()
        if hasattr(self.data, "validate"):
            self.data.validate()
        m = self.model
        if m.model_channels % m.num_heads:
            raise ConfigError(f"model.model_channels={m.model_channels} is not divisible by "
                              f"model.num_heads={m.num_heads}")


@register_preset(ToyRunConfig, "tiny")
def _tiny() -> ToyRunConfig:
    cfg = ToyRunConfig(synthetic_samples=32)
    cfg.model = ToyDiTConfig(model_channels=32, num_blocks=2, num_heads=2)
    cfg.data = DataConfig(resolution=16, num_frames=4, batch_size=2)
    cfg.train = TrainConfig(steps=8, log_every=1)
    cfg.train.optim.lr, cfg.train.optim.warmup_steps = 1e-3, 2
    cfg.train.checkpoint.every = 4
    return cfg


@register_preset(ToyRunConfig, "small")
def _small() -> ToyRunConfig:
    cfg = ToyRunConfig()
    cfg.train.optim.lr, cfg.train.optim.warmup_steps = 1e-3, 20
    cfg.train.checkpoint.every = 100
    return cfg


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T*H/p*W/p, C*p*p), tokens in (t, h, w) order."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)
    return x.reshape(b, t * (h // p) * (w // p), c * p * p)


class Block(nn.Module):
    """Pre-norm transformer block; norms modulated by the noise embedding (adaLN-Zero style gates)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(dim * mlp_ratio), dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, cp_group=None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).unsqueeze(1).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        b, n, d = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = context_parallel_attention(q, k, v, group=cp_group)
        x = x + gate1 * self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class ToyDiT(nn.Module):
    def __init__(self, cfg: ToyDiTConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.model_channels, cfg.patch_size
        self.patch_in = nn.Linear(cfg.in_channels * p * p, d)
        self.pos_t = nn.Parameter(torch.randn(cfg.max_frames, d) * 0.02)
        self.pos_h = nn.Parameter(torch.randn(cfg.max_height // p, d) * 0.02)
        self.pos_w = nn.Parameter(torch.randn(cfg.max_width // p, d) * 0.02)
        self.noise_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.num_blocks))
        self.norm_out = nn.LayerNorm(d)
        self.patch_out = nn.Linear(d, cfg.in_channels * p * p)
        nn.init.zeros_(self.patch_out.weight)
        nn.init.zeros_(self.patch_out.bias)
        self.grad_checkpointing = False

    def noise_embedding(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.cfg.model_channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device) / half)
        arg = (sigma.log() / 4).float()[:, None] * freqs[None] * 1000
        return self.noise_mlp(torch.cat([arg.cos(), arg.sin()], dim=-1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cp_group=None) -> torch.Tensor:
        """Noisy video (B, C, T, H, W) and noise levels (B,) -> predicted noise as patch tokens
        (B, L_local, C*p*p), L_local = this rank's share of the sequence under context parallelism."""
        b, c, t, h, w = x.shape
        p = self.cfg.patch_size
        tokens = self.patch_in(patchify(x, p))
        pos = (self.pos_t[:t, None, None] + self.pos_h[None, :h // p, None] + self.pos_w[None, None, :w // p])
        tokens = tokens + pos.reshape(1, -1, tokens.shape[-1])
        tokens = shard_sequence(tokens, 1, cp_group) if cp_group is not None else tokens
        cond = self.noise_embedding(sigma)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                tokens = checkpoint(block, tokens, cond, cp_group, use_reentrant=False)
            else:
                tokens = block(tokens, cond, cp_group)
        return self.patch_out(self.norm_out(tokens))


class MovingSquares(torch.utils.data.Dataset):
    """Clip i: a colored square moving at a constant velocity over a gradient; deterministic in i."""

    def __init__(self, n: int, frames: int, size: int, seed: int = 0):
        self.n, self.frames, self.size, self.seed = n, frames, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, i))
        s, t = self.size, self.frames
        yy, xx = np.mgrid[0:s, 0:s] / s
        bg = rng.uniform(-0.8, 0.2, 3)[:, None, None] + 0.3 * (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))
        video = np.repeat(bg[:, None], t, axis=1).astype(np.float32)
        side = max(2, s // 4)
        pos, vel = rng.uniform(0, s - side, 2), rng.uniform(-1.5, 1.5, 2)
        color = rng.uniform(0.2, 1.0, 3)
        for f in range(t):
            y, x = np.clip(pos + f * vel, 0, s - side).astype(int)
            video[:, f, y:y + side, x:x + side] = color[:, None, None]
        return {"video": torch.from_numpy(np.clip(video, -1, 1)), "mask": torch.ones(1, s, s), "key": f"sq{i}"}


def _collate(items: list[dict]) -> dict:
    return {"video": torch.stack([it["video"] for it in items]), "mask": torch.stack([it["mask"] for it in items]),
            "key": [it["key"] for it in items]}


@register_task
class ToyTask(Task):
    name = "toy"
    config_cls = ToyRunConfig

    def build_model(self) -> nn.Module:
        return ToyDiT(self.cfg.model)

    def loss(self, model, batch: dict, env: DistEnv):
        x, mask = batch["video"], batch["mask"]
        m = self.cfg.model
        sigma = (torch.randn(x.shape[0], device=x.device) * m.P_std + m.P_mean).exp()
        noise = torch.randn_like(x)
        x_noisy = (x + sigma.view(-1, 1, 1, 1, 1) * noise) / (sigma.view(-1, 1, 1, 1, 1) ** 2 + 0.25).sqrt()
        pred = model(x_noisy, sigma, cp_group=env.cp_group)
        target = self._local(noise, env)
        weight = self._local(mask[:, :, None].expand(-1, x.shape[1], x.shape[2], -1, -1), env)
        err = (pred.float() - target) ** 2 * weight
        return err.sum() / weight.sum().clamp(min=1.0), {}

    def _local(self, x: torch.Tensor, env: DistEnv) -> torch.Tensor:
        tok = patchify(x, self.cfg.model.patch_size)
        return shard_sequence(tok, 1, env.cp_group) if env.cp_group is not None else tok

    def tokens(self, batch: dict) -> int:
        b, _, t, h, w = batch["video"].shape
        return b * t * (h // self.cfg.model.patch_size) * (w // self.cfg.model.patch_size)

    def make_loader(self, data_cfg: DataConfig, env: DistEnv, epoch: int, position: int):
        if data_cfg.shards:
            return super().make_loader(data_cfg, env, epoch, position)
        from openwfm.data import BucketBatchSampler

        n = self.cfg.synthetic_samples
        data = MovingSquares(n, data_cfg.num_frames, data_cfg.resolution, data_cfg.seed)
        sampler = BucketBatchSampler(["video/1:1"] * n, data_cfg.batch_size, rank=env.dp_rank,
                                     world_size=env.dp_size, seed=data_cfg.seed, shuffle=data_cfg.shuffle)
        sampler.load_state_dict({"epoch": epoch, "position": position})
        return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=_collate,
                                           num_workers=data_cfg.num_workers,
                                           generator=torch.Generator().manual_seed(data_cfg.seed),
                                           multiprocessing_context=worker_context(data_cfg.num_workers))
