"""Training the tokenizers through the shared trainer: the ``tokenizer`` task.

Two stages as in the Cosmos paper (sec. 4, "training strategy"): stage 1 optimizes L1 + perceptual loss;
from ``stage2_start`` on, the Gram-matrix term (and the optical-flow term, when enabled) are added.
Video clips and images share one model (images are the T = 1 case of the causal tokenizer).

    wfm train tokenizer --preset tiny-CV4x8x8 --out runs/tok data.shards=shards/falling
"""

from __future__ import annotations

import dataclasses

import torch

from openwfm.config import ConfigError
from openwfm.tokenizer.config import TokenizerRunConfig
from openwfm.tokenizer.losses import tokenizer_loss
from openwfm.tokenizer.model import Tokenizer
from openwfm.train.distributed import DistEnv
from openwfm.train.task import Task, register_task


@register_task
class TokenizerTask(Task):
    name = "tokenizer"
    config_cls = TokenizerRunConfig

    def build_model(self) -> torch.nn.Module:
        model = Tokenizer(self.cfg.model)
        if self.cfg.freeze_encoder:
            model.freeze_encoder()
        return model

    def init_weights(self, model: torch.nn.Module) -> None:
        """``init``: the weights of that tokenizer (same architecture; with ``freeze_encoder`` its latent
        statistics too, as the latents stay its own). Otherwise a ``shortcut`` tokenizer starts as the PCA of
        ``shortcut_init_clips`` training clips (evenly spaced over the data, first stage's size)."""
        if self.cfg.init:
            self._init_from(model)
            return
        if not self.cfg.model.shortcut:
            return
        from openwfm.data import load_index
        from openwfm.data.dataset import ClipDataset

        if not self.cfg.data.shards:
            raise ConfigError("model.shortcut=true initializes from the training data; data.shards is empty")
        data = dataclasses.replace(self.cfg.data, images=False)
        ds = ClipDataset(load_index(data.shards), data)
        if len(ds) == 0:
            raise ConfigError(f"data.shards={data.shards}: no video clips to initialize the shortcut from")
        n = min(len(ds), self.cfg.shortcut_init_clips)
        idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(n)]
        model.init_shortcut(torch.stack([ds[i]["video"] for i in idx]))

    def _init_from(self, model: Tokenizer) -> None:
        from openwfm.tokenizer.api import load_tokenizer

        start = load_tokenizer(self.cfg.init)
        stats = {"latents_mean": None, "latents_std": None, "scaling_factor": 1.0}
        if dataclasses.replace(start.cfg, **stats) != dataclasses.replace(self.cfg.model, **stats):
            diff = [f.name for f in dataclasses.fields(start.cfg) if f.name not in stats
                    and getattr(start.cfg, f.name) != getattr(self.cfg.model, f.name)]
            raise ConfigError(f"init={self.cfg.init}: its architecture differs from this run's model config in "
                              f"{', '.join(diff)}; give the same model.* settings")
        model.load_state_dict(start.state_dict())
        if self.cfg.freeze_encoder:  # the latents are init's: so are their statistics (saved with the run;
            for k in stats:          # the model holds this same config object)
                setattr(self.cfg.model, k, getattr(start.cfg, k))

    def blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return list(model.fsdp_units)

    def stage(self) -> int:
        start = self.cfg.stage2_start
        return 2 if 0 <= start <= self.step else 1

    def loss(self, model, batch: dict, env: DistEnv):
        x = batch["video"]
        x_hat, _ = model(x)
        total, parts = tokenizer_loss(x, x_hat.float(), self.cfg.loss, self.stage())
        return total, {k: float(v) for k, v in parts.items()}

    def tokens(self, batch: dict) -> int:
        b, _, t, h, w = batch["video"].shape
        m = self.cfg.model
        t_lat = 1 + (t - 1) // m.temporal_compression
        return b * t_lat * (h // m.spatial_compression) * (w // m.spatial_compression)
