"""The diffusion world model's run config and presets: what a run or export records, read by training and
by inference alike (``tasks/diffusion.py`` trains it, ``hub.py`` loads it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from openwfm.config import ConfigError, get_preset, register_preset
from openwfm.data import DataConfig, StageConfig
from openwfm.diffusion.dit import DiTConfig
from openwfm.diffusion.edm import EDMConfig
from openwfm.diffusion.model import Video2WorldConfig
from openwfm.text.encoder import TextEncoderConfig
from openwfm.training_config import TrainConfig


@dataclass
class DiffusionRunConfig:
    model: DiTConfig = field(default_factory=lambda: get_preset(DiTConfig, "tiny"))
    edm: EDMConfig = field(default_factory=EDMConfig)
    v2w: Video2WorldConfig = field(default_factory=Video2WorldConfig)
    tokenizer: str = "cv4x8x8-real"  # shipped tokenizer name, or a tokenizer run / checkpoint directory
    # warm start: a shipped world model's name, or a diffusion run / checkpoint / export of the same model
    # config, whose (EMA) weights start this run (the optimizer starts fresh); "" = random init
    init: str = ""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(resolution=64, num_frames=17, batch_size=4))
    stages: list[StageConfig] = field(default_factory=list)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, log_every=10))

    def validate(self) -> None:
        self.model.validate()
        self.edm.validate()
        self.data.validate()
        self.train.validate()
        self.text.validate()
        self.v2w.validate()
        for k in [self.v2w.num_input_frames] + list(self.v2w.input_frame_choices) if self.v2w.enabled else []:
            if k < 0:
                raise ConfigError(f"v2w: input frame counts must be >= 0 (0: Text2World), got {k}")
            if k >= self.data.num_frames:
                raise ConfigError(f"v2w: {k} input frames leave nothing to predict in clips of "
                                  f"data.num_frames={self.data.num_frames}")


def tiny(**kw) -> DiffusionRunConfig:
    cfg = DiffusionRunConfig(**kw)
    cfg.train.optim.lr, cfg.train.optim.warmup_steps, cfg.train.optim.weight_decay = 3e-4, 100, 0.0
    cfg.train.ema.kind, cfg.train.checkpoint.every = "power", 500
    return cfg


register_preset(DiffusionRunConfig, "tiny")(lambda: tiny())
register_preset(DiffusionRunConfig, "tiny-v2w")(lambda: tiny(v2w=Video2WorldConfig(enabled=True)))
for _name in ("cosmos-1.0-7b", "cosmos-1.0-14b"):
    def _paper(n=_name) -> DiffusionRunConfig:
        cfg = DiffusionRunConfig(model=get_preset(DiTConfig, n), tokenizer="", text=TextEncoderConfig("t5", "", 512))
        cfg.train.optim.lr, cfg.train.optim.weight_decay, cfg.train.precision = 2.0 ** -15, 0.1, "bf16"
        return cfg
    register_preset(DiffusionRunConfig, _name)(_paper)
