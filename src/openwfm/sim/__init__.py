"""Simulated physical worlds with ground truth, on pybullet: ``falling``, ``push``, ``orbit``."""

from openwfm.sim.config import FallingConfig, OrbitConfig, PushConfig, SimConfig
from openwfm.sim.dataset import SCENARIOS, generate, load_sample, sample_name, simulate, write_sample
from openwfm.sim.rollout import Rollout
from openwfm.sim.world import SimError

__all__ = ["SimConfig", "FallingConfig", "PushConfig", "OrbitConfig", "SCENARIOS", "generate", "simulate",
           "load_sample", "write_sample", "sample_name", "Rollout", "SimError"]
