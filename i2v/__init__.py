"""sam-i2v: upgrade a frozen Segment Anything (SAM) into a promptable video segmenter.

    import i2v
    predictor = i2v.build_i2v_video_predictor("tiny")

    config = i2v.load_train_config("my_train.yaml", ["optim.max_steps=500"])
    result = i2v.train(config)              # result.output_dir, result.metrics

The library logs through :mod:`logging` (loggers under ``"i2v"``); it never prints.
"""

# i2v.train is the training package, callable as i2v.train(config) (see i2v.train.api.train).
from i2v import train
from i2v.build import build_i2v_video_predictor, build_sam_i2v
from i2v.config import ModelConfig, load_model_config
from i2v.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    FrameIndexError,
    I2VError,
    PromptError,
    StateError,
    UnknownObjectError,
    VideoError,
    VideoNotFoundError,
)
from i2v.inference_state import InferenceState
from i2v.model import SamI2V
from i2v.pretrained import save_pretrained
from i2v.train.api import TrainConfig, load_train_config
from i2v.version import __version__
from i2v.video_predictor import I2VVideoPredictor

__all__ = [
    "build_i2v_video_predictor",
    "build_sam_i2v",
    "ModelConfig",
    "load_model_config",
    "SamI2V",
    "I2VVideoPredictor",
    "InferenceState",
    "save_pretrained",
    "TrainConfig",
    "load_train_config",
    "train",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "FrameIndexError",
    "I2VError",
    "PromptError",
    "StateError",
    "UnknownObjectError",
    "VideoError",
    "VideoNotFoundError",
    "__version__",
]
