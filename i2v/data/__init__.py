"""Video datasets: synthetic generator, real-format readers, clip sampling."""

from i2v.data.base import VideoClip, VideoDataset
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset, generate_video

__all__ = ["VideoClip", "VideoDataset", "SyntheticConfig", "SyntheticVideoDataset", "generate_video"]
