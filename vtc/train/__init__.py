"""Training: dataclass configs from YAML + overrides, an `accelerate` trainer, resumable checkpoints."""

from vtc.train.config import TrainConfig, load_train_config
from vtc.train.trainer import Trainer, warmup_cosine

__all__ = ["TrainConfig", "Trainer", "load_train_config", "warmup_cosine"]
