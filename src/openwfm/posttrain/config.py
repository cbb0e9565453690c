"""Post-trained world models' run configs and presets (camera, action, multi-view; Cosmos paper sec. 6), and
what each adds to the base network (``dit_changes``): read by training and by inference alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from openwfm.config import ConfigError, register_preset
from openwfm.diffusion.config import DiffusionRunConfig
from openwfm.diffusion.config import tiny as tiny_diffusion
from openwfm.diffusion.model import Video2WorldConfig
from openwfm.posttrain.conditions import (NUM_VIEWS, PATH_CHANNELS, RAY_CHANNELS, TRAJECTORY_DIM, clip_actions,
                                          displacements, latent_frame_actions, path_maps, scale_actions)


@dataclass
class PosttrainRunConfig(DiffusionRunConfig):
    base: str = ""  # the diffusion run or checkpoint to start from ("" = random init, for tests)
    lora_rank: int = 0  # > 0: freeze the base, train LoRA adapters (+ the new input / action layers)
    lora_alpha: float = 16.0
    v2w: Video2WorldConfig = field(default_factory=lambda: Video2WorldConfig(enabled=True))


@dataclass
class CameraRunConfig(PosttrainRunConfig):
    pass


def _tiny(cls: type) -> PosttrainRunConfig:
    """The tiny diffusion preset's settings, as Video2World."""
    d = tiny_diffusion()
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(DiffusionRunConfig) if f.name != "v2w"}
    return cls(**fields, v2w=Video2WorldConfig(enabled=True))


@dataclass
class ActionRunConfig(PosttrainRunConfig):
    action_scale: float = 100.0  # motion is metres / radians per frame (~0.01): scaled to ~1; gripper stays 0/1
    blind: bool = False  # the control model for evaluation: trained the same way, its actions zeroed
    per_frame: bool = False  # each latent frame's tokens get the actions leading into that frame
    cumulative: bool = False  # per frame, also the displacement since the clip's first frame (7 more values)
    cumulative_scale: float = 10.0  # that displacement (metres / radians, up to ~0.5) scaled to ~1
    path: bool = False  # also draw the commanded end-effector path into the input (conditions.path_maps)
    path_sigma: float = 0.75  # its spot's Gaussian width, in latent pixels

    def validate(self) -> None:
        super().validate()
        if self.cumulative and not self.per_frame:
            raise ConfigError("cumulative=true adds per-frame features: set per_frame=true as well")

    def action_dim(self, temporal_compression: int = 4) -> int:
        if self.per_frame:
            return 7 * temporal_compression + 7 * int(self.cumulative)
        return 7 * (self.data.num_frames - 1)

    def action_input(self, meta: dict, start: int, stride: int, num_frames: int, temporal_compression: int
                     ) -> torch.Tensor:
        """The model's action input for one clip, scaled: (action_dim,) or, per frame, (T', action_dim)."""
        if self.per_frame:
            a = scale_actions(latent_frame_actions(meta, start, stride, num_frames, temporal_compression),
                              self.action_scale)
            if self.cumulative:
                a = torch.cat([a, scale_actions(displacements(meta, start, stride, num_frames, temporal_compression),
                                                self.cumulative_scale)], -1)
        else:
            a = scale_actions(clip_actions(meta, start, stride, num_frames), self.action_scale)
        return a * (0.0 if self.blind else 1.0)

    def path_input(self, meta: dict, start: int, stride: int, num_frames: int, frame_size: tuple[int, int],
                   latent_grid: tuple[int, int, int], temporal_compression: int) -> torch.Tensor:
        """The model's extra input channels for one clip when ``path``: (3, T', H', W') path maps."""
        maps = path_maps(meta, start, stride, num_frames, frame_size, latent_grid, temporal_compression,
                         self.path_sigma)
        return maps * (0.0 if self.blind else 1.0)


@dataclass
class MultiviewRunConfig(PosttrainRunConfig):
    trajectory: bool = False  # condition on the ego's future trajectory (64 points at 0.1 s) as well
    trajectory_scale: float = 1.0  # metres of the 1:10 scene: already ~1


for _cls in (CameraRunConfig, ActionRunConfig, MultiviewRunConfig):
    register_preset(_cls, "tiny")(lambda c=_cls: _tiny(c))

# the conditioning a post-trained run config stands for (the pipeline switches on this, not on classes)
CONDITIONING = {CameraRunConfig: "camera", ActionRunConfig: "action", MultiviewRunConfig: "multiview"}


def conditioning(cfg) -> str:
    """'camera', 'action', 'multiview', or '' (a plain diffusion run config)."""
    return CONDITIONING.get(type(cfg), "")


def dit_changes(cfg, temporal_compression: int) -> dict:
    """What a post-trained model's network adds to its base's DiT config: extra input channels, an action
    (or trajectory) embedding."""
    kind = conditioning(cfg)
    if kind == "camera":
        return {"extra_channels": RAY_CHANNELS}
    if kind == "action":
        return {"action_dim": cfg.action_dim(temporal_compression)} | ({"extra_channels": PATH_CHANNELS}
                                                                       if cfg.path else {})
    if kind == "multiview":
        return {"extra_channels": NUM_VIEWS} | ({"action_dim": TRAJECTORY_DIM} if cfg.trajectory else {})
    return {}
