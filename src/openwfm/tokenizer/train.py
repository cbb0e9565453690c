"""Training the tokenizers through the shared trainer: the ``tokenizer`` task.

Two stages as in the Cosmos paper (sec. 4, "training strategy"): stage 1 optimizes L1 + perceptual loss;
from ``stage2_start`` on, the Gram-matrix term (and the optical-flow term, when enabled) are added.
Video clips and images share one model (images are the T = 1 case of the causal tokenizer).

    wfm train tokenizer --preset tiny-CV4x8x8 --out runs/tok data.shards=shards/falling
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from openwfm.config import ConfigError, get_preset, register_preset
from openwfm.data import DataConfig, StageConfig
from openwfm.tokenizer.losses import TokenizerLossConfig, tokenizer_loss
from openwfm.tokenizer.model import Tokenizer
from openwfm.tokenizer.presets import TokenizerConfig
from openwfm.train.config import TrainConfig
from openwfm.train.distributed import DistEnv
from openwfm.train.task import Task, register_task


@dataclass
class TokenizerRunConfig:
    model: TokenizerConfig = field(default_factory=lambda: get_preset(TokenizerConfig, "tiny-CV4x8x8"))
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    shortcut_init_clips: int = 64  # training clips whose PCA initializes a model.shortcut=true tokenizer
    stage2_start: int = -1  # optimizer step where stage 2 (Gram, flow) begins; -1: stage 1 only
    data: DataConfig = field(default_factory=lambda: DataConfig(resolution=64, num_frames=17, batch_size=2))
    stages: list[StageConfig] = field(default_factory=list)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, log_every=10))

    def validate(self) -> None:
        self.model.validate()
        self.train.validate()
        self.data.validate()
        t, s = self.model.temporal_compression, self.model.spatial_compression
        for where, d in [("data", self.data)] + [(f"stages[{i}]", st) for i, st in enumerate(self.stages)]:
            if (d.num_frames - 1) % t:
                lo = 1 + t * max(0, (d.num_frames - 1) // t)
                raise ConfigError(f"{where}.num_frames={d.num_frames}: the {self.model.kind} tokenizer takes "
                                  f"1 + k·{t} frames, e.g. {lo} or {lo + t}")
            if d.resolution % s:
                raise ConfigError(f"{where}.resolution={d.resolution} must be a multiple of the spatial "
                                  f"compression {s}")
        if self.data.multiple % s:
            raise ConfigError(f"data.multiple={self.data.multiple} must be a multiple of the spatial "
                              f"compression {s} (bucket sides are multiples of data.multiple)")


def _run(preset: str, **train) -> TokenizerRunConfig:
    cfg = TokenizerRunConfig(model=get_preset(TokenizerConfig, preset))
    s = cfg.model.spatial_compression
    cfg.data = DataConfig(resolution=max(64, 4 * s), num_frames=1 + 2 * cfg.model.temporal_compression,
                          batch_size=2, multiple=max(16, s))
    cfg.train.optim.lr, cfg.train.optim.warmup_steps, cfg.train.ema.kind = 1e-3, 100, "power"
    cfg.train.optim.weight_decay = 0.0  # an autoencoder has no reason to shrink its weights
    cfg.train.checkpoint.every = 500
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def _small_run(preset: str) -> TokenizerRunConfig:
    """The recipe of the shipped tokenizers (docs/tokenizer.md): 5500 steps on one CPU thread, 17-frame
    clips at 64 px (batch 2), then at 128 px (batch 1) from step 3500; Gram loss (stage 2) from 4500."""
    cfg = _run(preset, steps=5500)
    cfg.data.resolution, cfg.data.num_frames = 64, 1 if cfg.model.is_image else 17
    cfg.stages = [StageConfig(start_step=3500, resolution=128, num_frames=cfg.data.num_frames, batch_size=1)]
    cfg.stage2_start = 4500
    cfg.train.optim.warmup_steps, cfg.train.optim.schedule, cfg.train.optim.min_lr_ratio = 200, "cosine", 0.1
    return cfg


for _name in ("CV4x8x8", "CV8x8x8", "CV8x16x16", "DV4x8x8", "DV8x8x8", "DV8x16x16", "CI8x8", "CI16x16",
              "DI8x8", "DI16x16"):
    register_preset(TokenizerRunConfig, _name)(lambda n=_name: _run(n))
    register_preset(TokenizerRunConfig, f"tiny-{_name}")(lambda n=_name: _run(f"tiny-{n}"))
    register_preset(TokenizerRunConfig, f"small-{_name}")(lambda n=_name: _small_run(f"small-{n}"))


@register_task
class TokenizerTask(Task):
    name = "tokenizer"
    config_cls = TokenizerRunConfig

    def build_model(self) -> torch.nn.Module:
        return Tokenizer(self.cfg.model)

    def init_weights(self, model: torch.nn.Module) -> None:
        """A ``shortcut`` tokenizer starts as the PCA of ``shortcut_init_clips`` training clips (evenly spaced
        over the data, first stage's size)."""
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


def run_config_from_checkpoint(config: dict) -> TokenizerRunConfig:
    """The run config saved in a tokenizer checkpoint's config.json."""
    if config.get("task") != "tokenizer":
        raise ConfigError(f"checkpoint is a '{config.get('task')}' run, not a tokenizer")
    names = {f.name for f in dataclasses.fields(TokenizerConfig)}
    model = TokenizerConfig(**{k: v for k, v in config["model"].items() if k in names})
    return TokenizerRunConfig(model=model)
