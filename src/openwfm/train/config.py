"""The trainer's settings (``TrainConfig`` and its parts) live in ``openwfm.training_config``, below the model
packages, whose run configs embed them; this name is kept for existing imports."""

from openwfm.training_config import CheckpointConfig, DistConfig, EMAConfig, OptimConfig, TrainConfig

__all__ = ["CheckpointConfig", "DistConfig", "EMAConfig", "OptimConfig", "TrainConfig"]
