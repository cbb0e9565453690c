"""The autoregressive world model's run configs and presets (what a run or export records): the AR model
with its Medusa heads, and its diffusion decoder. Read by training and by inference alike."""

from __future__ import annotations

from dataclasses import dataclass, field

from openwfm.autoregressive.model import ARConfig
from openwfm.config import ConfigError, get_preset, register_preset
from openwfm.data import DataConfig, StageConfig
from openwfm.diffusion.config import DiffusionRunConfig
from openwfm.diffusion.dit import DiTConfig
from openwfm.text.encoder import TextEncoderConfig
from openwfm.training_config import TrainConfig


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
    # discrete tokenizer: shipped name, or a tokenizer run / checkpoint. No default: no shipped discrete
    # tokenizer meets the real-footage floor (docs/tokenizer.md), so a run names the one it was made for
    tokenizer: str = ""
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


@dataclass
class DecoderRunConfig(DiffusionRunConfig):
    dv_tokenizer: str = ""  # the discrete tokenizer whose tokens are decoded (no default, as ARRunConfig.tokenizer)
    token_dim: int = 32
    vocab_size: int = 64000
    data: DataConfig = field(default_factory=lambda: DataConfig(resolution=64, num_frames=17, batch_size=4))


def _tiny_decoder() -> DecoderRunConfig:
    cfg = DecoderRunConfig(model=get_preset(DiTConfig, "tiny"))
    cfg.train.optim.lr, cfg.train.optim.warmup_steps, cfg.train.optim.weight_decay = 3e-4, 100, 0.0
    cfg.train.ema.kind, cfg.train.checkpoint.every = "power", 500
    return cfg


register_preset(DecoderRunConfig, "tiny")(_tiny_decoder)
