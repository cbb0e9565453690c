"""Training the autoregressive model's diffusion decoder (``autoregressive/decoder.py``): the ``ar-decoder``
task.

    wfm train ar-decoder --preset tiny --out runs/ar-decoder data.shards=SHARDS
"""

from __future__ import annotations

import torch
from torch import nn

from openwfm.autoregressive.config import DecoderRunConfig
from openwfm.autoregressive.decoder import DecoderModel
from openwfm.tasks.diffusion import DiffusionTask
from openwfm.train.distributed import DistEnv
from openwfm.train.task import register_task


@register_task
class DecoderTask(DiffusionTask):
    """Training pairs made on the fly: the same clip through the DV and the continuous tokenizer."""

    name = "ar-decoder"
    config_cls = DecoderRunConfig

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        return DecoderModel(cfg.model, cfg.edm, cfg.vocab_size, cfg.token_dim)

    def discrete(self, device):
        if getattr(self, "_dv", None) is None:
            from openwfm.config import ConfigError
            from openwfm.tokenizer.api import load_tokenizer

            if not self.cfg.dv_tokenizer:
                raise ConfigError("dv_tokenizer is empty: name the discrete tokenizer whose tokens are decoded, "
                                  "e.g. dv_tokenizer=dv4x8x8-s, or a tokenizer run (docs/tokenizer.md: none is a default)")
            self._dv = load_tokenizer(self.cfg.dv_tokenizer, device=str(device))
            if not self._dv.cfg.discrete:
                raise ConfigError(f"dv_tokenizer={self.cfg.dv_tokenizer} is not a discrete tokenizer")
        return self._dv

    def loss(self, model, batch: dict, env: DistEnv):
        video = batch["video"]
        x0 = self.codec(video.device).encode(video)
        with torch.no_grad():
            tokens = self.discrete(video.device).encode(video)[0]
        net = getattr(model, "module", model)  # under DDP the model is wrapped
        return self.diffusion_loss(model, batch, x0, env, extra=net.token_features(tokens, tuple(x0.shape[2:])))
