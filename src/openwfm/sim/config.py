"""Simulator configs: one dataclass per scenario, gathered in ``SimConfig``; presets ``default``,
``tiny`` (tests) and ``demo``."""

from __future__ import annotations

from dataclasses import dataclass, field

from openwfm.config import ConfigError, register_preset


@dataclass
class FallingConfig:
    min_objects: int = 1
    max_objects: int = 4
    table_prob: float = 0.3  # drop onto a table instead of the floor
    throw_prob: float = 0.4  # per object: thrown with a random velocity instead of dropped
    texture_prob: float = 0.3  # per object / floor: a procedural texture


@dataclass
class PushConfig:
    min_objects: int = 1
    max_objects: int = 3
    pick_prob: float = 0.3  # grasp and lift instead of push
    action_noise: float = 0.002  # std of the scripted policy's noise, metres per frame
    max_speed: float = 0.5  # end-effector speed bound, m/s


@dataclass
class OrbitConfig:
    min_objects: int = 3
    max_objects: int = 6
    min_sweep_deg: float = 40.0  # azimuth travelled over the clip
    max_sweep_deg: float = 140.0
    texture_prob: float = 0.6


@dataclass
class SimConfig:
    num_frames: int = 33  # 1 + 8k frames suit the causal tokenizers
    height: int = 128
    width: int = 128
    fps: float = 12.0
    physics_hz: int = 240
    shadows: bool = True
    camera_jitter: float = 1.0  # 0 = nominal camera, 1 = full randomization
    light_jitter: float = 1.0
    crf: int = 18  # H.264 quality of the written mp4
    falling: FallingConfig = field(default_factory=FallingConfig)
    push: PushConfig = field(default_factory=PushConfig)
    orbit: OrbitConfig = field(default_factory=OrbitConfig)

    @property
    def substeps(self) -> int:
        return max(1, round(self.physics_hz / self.fps))

    def validate(self) -> None:
        if self.num_frames < 2:
            raise ConfigError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            raise ConfigError(f"size must be even and >= 16 on each side, got {self.height}x{self.width}")
        if not 0 < self.fps <= self.physics_hz:
            raise ConfigError(f"fps must be in (0, physics_hz={self.physics_hz}], got {self.fps}")
        for name, sub in (("falling", self.falling), ("push", self.push), ("orbit", self.orbit)):
            if not 1 <= sub.min_objects <= sub.max_objects:
                raise ConfigError(f"{name}: need 1 <= min_objects <= max_objects, "
                                  f"got {sub.min_objects}..{sub.max_objects}")


@register_preset(SimConfig, "default")
def _default() -> SimConfig:
    return SimConfig()


@register_preset(SimConfig, "tiny")
def _tiny() -> SimConfig:
    return SimConfig(num_frames=17, height=48, width=48, shadows=False)


@register_preset(SimConfig, "demo")
def _demo() -> SimConfig:
    return SimConfig(num_frames=33, height=96, width=96)
