"""Training the autoregressive world model: ``wfm train ar`` (Cosmos paper sec. 5.2).

Clips are tokenized by a frozen discrete (DV) tokenizer — on the fly from video shards, or read from
precomputed index shards (``wfm data latents SHARDS --tokenizer dv4x8x8-s``, checked against the run's
tokenizer by fingerprint) — flattened t-major and trained with next-token cross-entropy plus z-loss.
Video2World models start each sequence with <bov> and attend to the caption (dropped with
``text.dropout``). Medusa heads train with the base (``medusa.freeze_base=false``) or on a frozen base.

    wfm data latents SHARDS --tokenizer dv4x8x8-s --out TOKENS --resolution 64 --num-frames 17
    wfm train ar --preset tiny-medusa --out runs/ar-tiny data.shards=TOKENS
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from openwfm.autoregressive.medusa import MedusaHeads, medusa_loss
from openwfm.autoregressive.model import ARConfig, ARTransformer, ar_loss
from openwfm.config import ConfigError, get_preset, register_preset
from openwfm.data import DataConfig, StageConfig
from openwfm.text import drop_text
from openwfm.text.encoder import TextEncoderConfig, make_text_encoder
from openwfm.train.config import TrainConfig
from openwfm.train.distributed import DistEnv
from openwfm.train.task import Task, register_task


@dataclass
class MedusaConfig:
    num_heads: int = 0  # 0: none (Cosmos: 7)
    freeze_base: bool = False  # train only the heads, on a frozen base model
    decay: float = 0.8  # head k's loss weight decay^k
    weight: float = 1.0  # of the heads' loss against the base loss
    positions: int = 16  # sequence positions the heads train on per batch (0: all)


@dataclass
class ARRunConfig:
    model: ARConfig = field(default_factory=lambda: get_preset(ARConfig, "tiny"))
    medusa: MedusaConfig = field(default_factory=MedusaConfig)
    tokenizer: str = "dv4x8x8-s"  # discrete tokenizer: shipped name, or a tokenizer run / checkpoint
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    action_scale: float = 100.0  # model.action_dim > 0: robot motion (m, rad per frame) scaled to ~1 (gripper 0/1)
    data: DataConfig = field(default_factory=lambda: DataConfig(resolution=64, num_frames=17, batch_size=4))
    stages: list[StageConfig] = field(default_factory=list)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, log_every=10))

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.text.validate()
        if self.medusa.num_heads < 0:
            raise ConfigError(f"medusa.num_heads must be >= 0, got {self.medusa.num_heads}")
        if self.medusa.freeze_base and not self.medusa.num_heads:
            raise ConfigError("medusa.freeze_base=true trains nothing without medusa.num_heads > 0")
        if self.model.cross_attn_every and self.text.encoder == "minilm" and self.model.context_dim != 384:
            raise ConfigError(f"model.context_dim={self.model.context_dim} but MiniLM gives 384-wide text states")


def _tiny(model: str = "tiny", heads: int = 0) -> ARRunConfig:
    cfg = ARRunConfig(model=get_preset(ARConfig, model), medusa=MedusaConfig(num_heads=heads))
    cfg.train.optim.lr, cfg.train.optim.warmup_steps, cfg.train.optim.weight_decay = 1e-3, 100, 0.0
    cfg.train.ema.kind, cfg.train.checkpoint.every = "power", 500
    return cfg


register_preset(ARRunConfig, "tiny")(lambda: _tiny())
register_preset(ARRunConfig, "tiny-medusa")(lambda: _tiny(heads=4))
register_preset(ARRunConfig, "tiny-v2w")(lambda: _tiny("tiny-v2w"))
for _name in ("cosmos-1.0-4b", "cosmos-1.0-12b", "cosmos-1.0-5b-video2world", "cosmos-1.0-13b-video2world"):
    def _paper(n=_name) -> ARRunConfig:
        cfg = ARRunConfig(model=get_preset(ARConfig, n), tokenizer="", text=TextEncoderConfig("t5", "", 512))
        cfg.train.precision = "bf16"
        return cfg
    register_preset(ARRunConfig, _name)(_paper)


class ARWorldModel(nn.Module):
    """The base transformer and its (optional) Medusa heads; ``forward`` is the training loss."""

    def __init__(self, cfg: ARConfig, medusa: MedusaConfig | None = None):
        super().__init__()
        self.net = ARTransformer(cfg)
        m = medusa or MedusaConfig()
        self.medusa = MedusaHeads(cfg.dim, m.num_heads) if m.num_heads else None
        self.mcfg = m
        if m.freeze_base:
            self.net.requires_grad_(False)

    def sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T', H', W') indices -> (B, n) sequence, with <bov> first when the model has one."""
        seq = tokens.flatten(1)
        if self.net.cfg.bov_token:
            seq = torch.cat([torch.full_like(seq[:, :1], self.net.cfg.vocab_size), seq], 1)
        return seq

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None,
                generator: torch.Generator | None = None, actions: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        seq = self.sequence(tokens)
        shape = tuple(tokens.shape[1:])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.mcfg.freeze_base):
            logits, hidden = self.net(seq[:, :-1], context=context, shape=shape, return_hidden=True, actions=actions)
        loss, stats = ar_loss(logits, seq[:, 1:], self.net.cfg.z_loss)
        if self.mcfg.freeze_base:
            loss = loss.detach()
        if self.medusa is not None:
            n, p = hidden.shape[1], self.mcfg.positions
            pos = torch.randperm(n, generator=generator)[:p].sort().values if 0 < p < n else None
            mloss, mstats = medusa_loss(self.medusa, hidden, self.net.output, seq, self.mcfg.decay, pos)
            loss = loss + self.mcfg.weight * mloss
            stats.update(mstats)
        return loss, stats


@register_task
class ARTask(Task):
    name = "ar"
    config_cls = ARRunConfig

    def __init__(self, cfg: ARRunConfig):
        super().__init__(cfg)
        self._tok = self._text = self._fp = None
        self._gen = torch.Generator().manual_seed(cfg.train.seed + 1)

    def build_model(self) -> nn.Module:
        return ARWorldModel(self.cfg.model, self.cfg.medusa)

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.net.blocks)

    def tokenizer(self, device):
        if self._tok is None:
            from openwfm.diffusion.latents import fingerprint
            from openwfm.tokenizer.api import load_tokenizer

            if not self.cfg.tokenizer:
                raise ConfigError("tokenizer is empty: name a discrete tokenizer (e.g. dv4x8x8-s) or a tokenizer run")
            self._tok = load_tokenizer(self.cfg.tokenizer, device=str(device))
            if not self._tok.cfg.discrete:
                raise ConfigError(f"{self.cfg.tokenizer}: the autoregressive model needs a discrete tokenizer")
            if self._tok.cfg.codebook_size > self.cfg.model.vocab_size:
                raise ConfigError(f"{self.cfg.tokenizer} has {self._tok.cfg.codebook_size} codes > model.vocab_size "
                                  f"{self.cfg.model.vocab_size}")
            self._fp = fingerprint(self._tok)
        return self._tok

    def make_loader(self, data_cfg, env: DistEnv, epoch: int, position: int):
        from openwfm.diffusion.latents import precomputed_loader

        return precomputed_loader(self, data_cfg, env, epoch, position) or \
            super().make_loader(data_cfg, env, epoch, position)

    def token_grid(self, batch: dict) -> torch.Tensor:
        """(B, T', H', W') token indices of a batch: tokenized on the fly, or precomputed (and checked)."""
        if "tokens" in batch:
            other = {t for t in batch.get("tokenizer", []) if t}
            self.tokenizer("cpu")
            if other and other != {self._fp}:
                raise ConfigError(f"the precomputed tokens were made by another tokenizer (fingerprint "
                                  f"{', '.join(sorted(other))}) than tokenizer={self.cfg.tokenizer} ({self._fp})")
            return batch["tokens"].long()
        if "latent" in batch:
            raise ConfigError("these shards hold continuous latents; the autoregressive model needs discrete "
                              "token indices (wfm data latents --tokenizer dv4x8x8-s)")
        tok = self.tokenizer(batch["video"].device)
        with torch.no_grad():
            return tok.encode(batch["video"])[0]

    def actions(self, batch: dict, tokens: torch.Tensor) -> torch.Tensor | None:
        """(B, T', action_dim) actions into each latent frame, for an action-conditioned model."""
        if not self.cfg.model.action_dim:
            return None
        if "video" not in batch:
            raise ConfigError("an action-conditioned model trains on video shards of robot rollouts (their "
                              "actions are in the sample metadata), not on precomputed tokens")
        from openwfm.posttrain.train import latent_frame_actions, scale_actions

        tc = self.tokenizer("cpu").cfg.temporal_compression
        a = torch.stack([latent_frame_actions(m, int(s), self.cfg.data.frame_stride, batch["video"].shape[2], tc)
                         for m, s in zip(batch["meta"], batch["start_frame"])])
        if a.shape[-1] != self.cfg.model.action_dim:
            raise ConfigError(f"model.action_dim={self.cfg.model.action_dim}, but actions per latent frame are "
                              f"{a.shape[-1]} (7 x temporal compression {tc})")
        return scale_actions(a, self.cfg.action_scale).to(tokens.device)

    def loss(self, model, batch: dict, env: DistEnv):
        tokens = self.token_grid(batch)
        context = None
        if self.cfg.model.cross_attn_every:
            if self._text is None:
                self._text = make_text_encoder(self.cfg.text)
            emb, _ = self._text.encode(list(batch["caption"]))
            context = drop_text(emb, self.cfg.text.dropout, self._gen).to(tokens.device)
        return model(tokens, context, self._gen, self.actions(batch, tokens))

    def tokens(self, batch: dict) -> int:
        t = batch.get("tokens")
        return int(t.numel()) if t is not None else 0


def load_ar_model(run: str | os.PathLike, ema: bool = True) -> tuple[ARWorldModel, ARRunConfig]:
    """A trained autoregressive world model (EMA weights by default) and its run config."""
    from openwfm.train.task import load_trained

    return load_trained(run, ("ar",), "an autoregressive world model", ema)
