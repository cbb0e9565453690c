"""The tokenizer's run config and presets (what a tokenizer run or export records), read by training and
by inference alike (``tasks/tokenizer.py`` trains it, ``tokenizer/api.py`` loads it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from openwfm.config import ConfigError, get_preset, register_preset
from openwfm.data import DataConfig, StageConfig
from openwfm.tokenizer.losses import TokenizerLossConfig
from openwfm.tokenizer.presets import TokenizerConfig
from openwfm.training_config import TrainConfig


@dataclass
class TokenizerRunConfig:
    model: TokenizerConfig = field(default_factory=lambda: get_preset(TokenizerConfig, "tiny-CV4x8x8"))
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    shortcut_init_clips: int = 64  # training clips whose PCA initializes a model.shortcut=true tokenizer
    stage2_start: int = -1  # optimizer step where stage 2 (Gram, flow) begins; -1: stage 1 only
    # a tokenizer (run, checkpoint, export or shipped name) of the same architecture whose (EMA) weights start
    # this run instead of a fresh or PCA initialization; "" = none
    init: str = ""
    # train the decoder only: the encoder (and its shortcut) stay as ``init`` made them, so the latents do
    # not change and models trained on them (world models) keep working with the better decoder
    freeze_encoder: bool = False
    data: DataConfig = field(default_factory=lambda: DataConfig(resolution=64, num_frames=17, batch_size=2))
    stages: list[StageConfig] = field(default_factory=list)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, log_every=10))

    def validate(self) -> None:
        self.model.validate()
        if self.freeze_encoder and not self.init:
            raise ConfigError("freeze_encoder=true keeps an encoder that init= names; init is empty")
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


def run_config_from_checkpoint(config: dict) -> TokenizerRunConfig:
    """The run config saved in a tokenizer checkpoint's config.json."""
    if config.get("task") != "tokenizer":
        raise ConfigError(f"checkpoint is a '{config.get('task')}' run, not a tokenizer")
    names = {f.name for f in dataclasses.fields(TokenizerConfig)}
    model = TokenizerConfig(**{k: v for k, v in config["model"].items() if k in names})
    return TokenizerRunConfig(model=model)
