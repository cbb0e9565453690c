"""Training the diffusion world model through the shared trainer: the ``diffusion`` task.

Clips from shards are tokenized on the fly by a frozen tokenizer (a shipped one by name, or a run),
normalized to EDM's data scale, and denoised at log-normal noise levels (times sqrt(T') for video);
captions go through a frozen, cached text encoder and are dropped (zeroed) with probability
``text.dropout`` for classifier-free guidance. Images in the shards train as one-latent-frame videos
(joint image/video batches). With ``v2w.enabled`` the first latent frames condition (Video2World).

    wfm train diffusion --preset tiny --out runs/dit data.shards=shards tokenizer=cv4x8x8-real
"""

from __future__ import annotations

import torch

from openwfm.config import ConfigError
from openwfm.diffusion.codec import LatentCodec
from openwfm.diffusion.config import DiffusionRunConfig
from openwfm.diffusion.loss import EDMLoss
from openwfm.diffusion.model import WorldModel, hold_last_frame
from openwfm.text.encoder import make_text_encoder, stored_states
from openwfm.train.distributed import DistEnv
from openwfm.train.task import Task, register_task


@register_task
class DiffusionTask(Task):
    name = "diffusion"
    config_cls = DiffusionRunConfig

    def __init__(self, cfg: DiffusionRunConfig):
        super().__init__(cfg)
        self._codec = self._text = self._loss = None
        self._gen = torch.Generator().manual_seed(cfg.train.seed + 1)

    def build_model(self) -> torch.nn.Module:
        cfg = self.cfg
        if cfg.text.encoder == "minilm" and cfg.model.crossattn_emb_channels != 384:
            raise ConfigError(f"model.crossattn_emb_channels={cfg.model.crossattn_emb_channels} but MiniLM "
                              "gives 384-wide text states")
        return WorldModel(cfg.model, cfg.edm, cfg.v2w)

    def init_weights(self, model: torch.nn.Module) -> None:
        """Warm start from ``init`` (its weights must fit this run's model config exactly, or differ only by a
        coarser spatial patch that this run's divides: ``dit.repatch_state``; the EDM uncertainty head, which
        exports leave out, keeps its fresh initialization)."""
        if not self.cfg.init:
            return
        from dataclasses import replace

        from openwfm.diffusion.dit import repatch_state
        from openwfm.hub import load_world_model

        start, start_cfg = load_world_model(self.cfg.init)
        state, patch, old = start.state_dict(), self.cfg.model.patch_spatial, start_cfg.model.patch_spatial
        finer = patch != old and old % patch == 0 and replace(start_cfg.model, patch_spatial=patch) == self.cfg.model
        if (start_cfg.model != self.cfg.model and not finer) or start_cfg.v2w.residual != self.cfg.v2w.residual:
            raise ConfigError(f"init={self.cfg.init}: its model config or residual setting differs from this "
                              "run's; a warm start needs the same network (or one whose patch this run's divides)")
        if finer:
            state = repatch_state(state, start_cfg.model, patch, prefix="net.")
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("uncertainty")]
        if unexpected or bad:
            raise ConfigError(f"init={self.cfg.init} does not fit: missing {bad[:3]}, unexpected {unexpected[:3]}")

    def blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return list(model.net.blocks)

    def codec(self, device) -> LatentCodec:
        if self._codec is None:
            self._codec = LatentCodec(self.cfg.tokenizer, self.cfg.edm.sigma_data, str(device))
        return self._codec

    def text(self):
        if self._text is None:
            self._text = make_text_encoder(self.cfg.text)
        return self._text

    def make_loader(self, data_cfg, env: DistEnv, epoch: int, position: int):
        from openwfm.diffusion.latents import precomputed_loader

        return precomputed_loader(self, data_cfg, env, epoch, position) or \
            super().make_loader(data_cfg, env, epoch, position)

    def latents(self, batch: dict) -> torch.Tensor:
        """EDM-scale latents of a batch: tokenized on the fly, or precomputed (checked against the run's
        tokenizer)."""
        if "latent" not in batch:
            return self.codec(batch["video"].device).encode(batch["video"])
        codec = self.codec(batch["latent"].device)
        mine = codec.fingerprint
        other = {t for t in batch.get("tokenizer", []) if t}
        if other and other != {mine}:
            raise ConfigError(f"the precomputed latents were made by another tokenizer (fingerprint "
                              f"{', '.join(sorted(other))}) than tokenizer={self.cfg.tokenizer} ({mine}); "
                              "precompute them again or set tokenizer to the one that made them")
        return codec.normalize(batch["latent"])

    def loss(self, model, batch: dict, env: DistEnv):
        return self.diffusion_loss(model, batch, self.latents(batch), env)

    def diffusion_loss(self, model, batch: dict, x0: torch.Tensor, env: DistEnv | None = None, **net_kw):
        """The EDM loss (``diffusion.loss.EDMLoss``) of clean latents x0 with the batch's captions; ``net_kw`` go
        to the network (post-training conditions: ``extra`` channels, ``action``)."""
        if self._loss is None:
            self._loss = EDMLoss(self.cfg.edm, self.cfg.v2w, self.cfg.text.dropout, self._gen)
        emb, _ = self.caption_states(batch)
        t_lat = x0.shape[2]
        fps = float(batch["fps"][0]) if t_lat > 1 and "fps" in batch else None
        losses, stats = self._loss(model, x0, emb, temporal_compression=self.codec(x0.device).model.cfg.temporal_compression,
                                   held=lambda k: self.held_prior(batch, k, x0), fps=fps or None,
                                   cp_group=env.cp_group if env is not None else None, **net_kw)
        return losses.mean(), stats

    def held_prior(self, batch: dict, num_input_frames: int, x0: torch.Tensor) -> torch.Tensor:
        """EDM-scale latents of the clips' first ``num_input_frames`` frames with the last held (the "hold"
        residual prior): precomputed (``prior<k>``), or encoded from the batch's video."""
        codec = self.codec(x0.device)
        if f"prior{num_input_frames}" in batch:
            return codec.normalize(batch[f"prior{num_input_frames}"].to(x0.device))
        if "video" in batch:
            return codec.encode(hold_last_frame(batch["video"], num_input_frames))
        raise ConfigError(f"v2w.residual_prior=hold: the precomputed latents have no prior{num_input_frames} "
                          f"(precompute them with --priors {num_input_frames}, or set v2w.residual_prior=last)")

    def caption_states(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The captions' text-encoder states: those the curator stored in the shards when they come from
        this run's encoder (``text.stored_states``), else encoded (and cached) now."""
        captions = list(batch["caption"])
        stored = stored_states(batch.get("caption_embedding"), captions, self.text())
        if stored is not None:
            return stored
        return self.text().encode(captions)

    def tokens(self, batch: dict) -> int:
        p = self.cfg.model.patch_spatial
        if "latent" in batch:
            b, _, t, h, w = batch["latent"].shape
            return b * t * (h // p) * (w // p)
        b, _, t, h, w = batch["video"].shape
        c = self._codec.model.cfg if self._codec else None
        if c is None:
            return 0
        return b * (1 + (t - 1) // c.temporal_compression) * (h // c.spatial_compression // p) * (w // c.spatial_compression // p)
