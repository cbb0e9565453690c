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

import torch
from torch import nn

from openwfm.autoregressive.config import ARRunConfig
from openwfm.autoregressive.world import ARWorldModel
from openwfm.config import ConfigError
from openwfm.text import drop_text
from openwfm.text.encoder import make_text_encoder
from openwfm.train.distributed import DistEnv
from openwfm.train.task import Task, register_task


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
                raise ConfigError("tokenizer is empty: name the discrete tokenizer of the token shards, e.g. "
                                  "tokenizer=dv4x8x8-s, or a tokenizer run (docs/tokenizer.md: none is a default)")
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
        from openwfm.posttrain.conditions import latent_frame_actions, scale_actions

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
